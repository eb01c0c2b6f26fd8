#!/bin/bash
# The reproducibility check of docs/install.md ("Identical runs"): two fresh clones of this checkout's HEAD, side by
# side, each runs `make search` from nothing (its own .venv from constraints.txt, its own empty TIDE_CACHE_DIR), then
# trials.csv and pareto.csv are compared without the columns that may differ (worker, duration_s).
#   bash scripts/two_clones.sh [WORKDIR]      (default /tmp/tide-two-clones; about 20 min on 2 cores)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-/tmp/tide-two-clones}
rm -rf "$work" && mkdir -p "$work"
ln -s "$(cd "$repo/.." && pwd)/shared" "$work/shared"  # the evaluation text at ../shared, as beside the checkout
for c in a b; do git clone -q "$repo" "$work/$c"; done
for c in a b; do
  (cd "$work/$c" && TIDE_CACHE_DIR="$work/cache_$c" make search ARGS="hydra.run.dir=outputs/default" \
     > "$work/$c.log" 2>&1) &
done
wait
"$work/a/.venv/bin/python" - "$work" <<'PY'
import csv, sys
work = sys.argv[1]
same = True
for name in ("trials.csv", "pareto.csv"):
    tables = []
    for c in "ab":
        rows = list(csv.reader(open(f"{work}/{c}/outputs/default/{name}", newline="")))
        keep = [i for i, h in enumerate(rows[0]) if h not in ("worker", "duration_s")]
        tables.append([[r[i] for i in keep] for r in rows])
    print(f"{name}: {len(tables[0]) - 1} rows; identical: {tables[0] == tables[1]}")
    same &= tables[0] == tables[1]
sys.exit(0 if same else 1)
PY
