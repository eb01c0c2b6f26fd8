"""``python -m dse.evaluate DESIGN.yaml``: re-evaluate an exported design and compare.

Prints every metric next to the value the search recorded. Exit status: 0 when every recorded objective
is reproduced exactly, 1 when one is not (a genuine mismatch), 2 when the file cannot be evaluated at all
(missing, empty, damaged, not a design, a newer format, invalid values): one line on stderr naming the
file or key (``--debug`` shows the traceback). ``--breakdown`` also gives the per-operator table (every GEMM
with its phase, cycles, latency, energy and DRAM bytes, then the non-GEMM rows; they add up to the design's
latency and energy): as a table after the metrics, or with ``--format csv|json`` as data on stdout (or in
``--out FILE``), the metric comparison then going to stderr.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import sys
from pathlib import Path
from typing import Any

from dse.designs import DesignFileError, evaluated, load_design
from dse.environment import version_differences
from dse.systems._base import BREAKDOWN_COLUMNS


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def build_parser() -> argparse.ArgumentParser:
    """The command line (also what the docs' command test parses every documented command with)."""
    parser = argparse.ArgumentParser(prog="python -m dse.evaluate", description=__doc__)
    parser.add_argument("design", type=Path, help="a designs/*.yaml file written by a search")
    parser.add_argument("--breakdown", action="store_true", help="the per-operator breakdown")
    parser.add_argument("--format", choices=("table", "csv", "json"), default="table",
                        help="how the breakdown is written: a table after the metrics (default), or csv / json data")
    parser.add_argument("--out", type=Path, help="write the csv / json breakdown to this file instead of stdout")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        doc = load_design(args.design)
        system, point, metrics = evaluated(doc)
        recorded = doc.get("recorded") or {}
        recorded_metrics = recorded.get("metrics") or {} if isinstance(recorded, dict) else {}
        recorded_obj = recorded.get("objectives") or {} if isinstance(recorded, dict) else {}
        if not isinstance(recorded_obj, dict) or not isinstance(recorded_metrics, dict):
            raise DesignFileError("recorded: objectives and metrics must be mappings")
        expected = {k: float(v) for k, v in recorded_obj.items()}
        unknown = sorted(set(expected) - set(metrics))
        if unknown:
            raise DesignFileError(f"recorded.objectives: {unknown} are not metrics of this system")
    except (DesignFileError, ValueError, TypeError, KeyError, ArithmeticError, OSError) as exc:  # bad input
        if args.debug:
            raise
        print(f"error: {args.design}: {exc}", file=sys.stderr)
        return 2
    provenance = doc.get("provenance") if isinstance(doc.get("provenance"), dict) else {}
    differ = version_differences(provenance.get("packages")) if isinstance(provenance.get("packages"), dict) else []
    if differ:
        print(f"warning: {args.design} was written with other package versions ({'; '.join(differ)}): the recorded "
              "values may not be reproduced", file=sys.stderr)
    rows = system.breakdown(point) if args.breakdown else []
    return report(args, system.name, rows, metrics, recorded_metrics, expected)


def breakdown_text(rows: list[dict[str, Any]], fmt: str) -> str:
    """The rows as CSV (empty fields for what an operator does not have) or JSON (null for those)."""
    clean = [{k: (None if isinstance(r[k], float) and math.isnan(r[k]) else r[k]) for k in BREAKDOWN_COLUMNS}
             for r in rows]
    if fmt == "json":
        return json.dumps(clean, indent=2) + "\n"
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=BREAKDOWN_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(clean)
    return buf.getvalue()


def report(args: argparse.Namespace, name: str, rows: list[dict[str, Any]], metrics: dict[str, float],
           recorded_metrics: dict[str, Any], recorded_obj: dict[str, float]) -> int:
    """The metric comparison and, with ``--breakdown``, the per-operator ``rows`` (``BREAKDOWN_COLUMNS``;
    empty for a system without a per-GEMM model)."""
    data = args.breakdown and args.format != "table"
    out = sys.stderr if data and args.out is None else sys.stdout  # stdout carries the data
    print(f"{'metric':<22}{'evaluated':>16}{'recorded':>16}", file=out)
    for key, value in metrics.items():
        rec = recorded_metrics.get(key)
        rec = rec if isinstance(rec, int | float) and not isinstance(rec, bool) else float("nan")
        print(f"{key:<22}{value:>16.6g}{rec:>16.6g}", file=out)
    if args.breakdown:
        if not rows:
            print(f"note: system {name} has no per-operator model; no breakdown", file=sys.stderr)
        elif data:
            text = breakdown_text(rows, args.format)
            if args.out is None:
                sys.stdout.write(text)
            else:
                args.out.write_text(text)
                print(f"wrote {args.out}", file=out)
        else:
            print(file=out)
            head = f"{'op':<26}{'phase':>8}{'M':>8}{'K':>8}{'N':>8}{'count':>8}{'latency_s':>13}{'energy_j':>13}"
            print(head, file=out)
            for r in rows:
                print(f"{r['op']:<26}{r['phase']:>8}{r['M']:>8.0f}{r['K']:>8.0f}{r['N']:>8.0f}{r['count']:>8.0f}"
                      f"{r['latency_s']:>13.4g}{r['energy_j']:>13.4g}", file=out)
    mismatched = [k for k, v in recorded_obj.items() if not _same(v, metrics[k])]
    if mismatched:
        print(f"MISMATCH in objectives {mismatched}", file=sys.stderr)
        return 1
    print(f"objectives reproduced exactly: {list(recorded_obj)}", file=out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
