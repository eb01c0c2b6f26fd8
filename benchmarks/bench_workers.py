"""Many workers, one study: what N worker processes buy on this machine, and what limits them.

1. Coupled search (the default: Tender, four objectives, perplexity measured on SmolLM2 at 4 x 1024 tokens) of
   ``--coupled-trials`` trials with an empty accuracy store, 1 vs 2 workers: wall time of ``python -m dse``
   and its ratio. The model files (dequantised weights) are copied into each fresh cache so that both runs
   start equal: only the measurements are missing.
2. Cost-model-only search (``accuracy.objective=none``) of ``--cost-trials`` trials with 1 / 2 / 4 workers on
   the journal file, SQLite and PostgreSQL (a server started by scripts/postgres.sh): trials per second.

Every run is the real command line (``python -m dse ...``) in a fresh run directory and a fresh study; the
wall time includes process start-up and writing the run's tables and plots; the CPU time is that of the search's
processes (a PostgreSQL server's is not in it): CPU / wall near the core count means the cores are the limit.
Prints each result and writes ``--out`` (JSON).

    python benchmarks/bench_workers.py --coupled-trials 200 --cost-trials 2000 --out docs/bench/workers.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PG = ROOT / "scripts" / "postgres.sh"


def run(args: list[str], run_dir: Path) -> tuple[float, float]:
    """Wall time and CPU time (user + system, of the search's processes; a database server's are not in it)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "dse", *args, "search.progress=false", "accuracy.progress=false",
                           f"hydra.run.dir={run_dir}"], cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        raise RuntimeError(f"python -m dse {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["n_trials"] >= int(next(a for a in args if a.startswith("search.n_trials=")).split("=")[1])
    return wall, cpu


def fresh_cache(work: Path, name: str) -> Path:
    """A cache directory with the model files of the user's cache and no measurements."""
    from workloads.accuracy.real_model import default_cache_dir

    cache = work / name
    cache.mkdir()
    source = default_cache_dir()
    for sub in ("models", "sha256"):
        if (source / sub).is_dir():
            shutil.copytree(source / sub, cache / sub)
    return cache


def coupled(work: Path, trials: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for workers in (1, 2):
        cache = fresh_cache(work, f"cache-{workers}")
        wall, cpu = run([f"search.n_trials={trials}", f"search.workers={workers}", f"accuracy.cache_dir={cache}"],
                        work / f"coupled-{workers}")
        summary = json.loads((work / f"coupled-{workers}" / "summary.json").read_text())
        out[str(workers)] = {"wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
                             "keys_measured": summary["accuracy"]["measurements_this_run"]}
        print(f"coupled, {trials} trials, empty store, {workers} worker(s): {wall:.1f} s (cpu {cpu:.0f} s), "
              f"{out[str(workers)]['keys_measured']} accuracy keys measured", flush=True)
    out["speedup_2_over_1"] = round(out["1"]["wall_s"] / out["2"]["wall_s"], 3)
    return out


def database(url: str, name: str) -> str:
    import sqlalchemy as sa

    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return url.rsplit("/", 1)[0] + "/" + name


def cost_only(work: Path, trials: int, workers: list[int], storages: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    pg_dir = tempfile.mkdtemp(prefix="tide-bench-pg-")  # /tmp: reachable by the postgres user when root
    try:
        pg_url = None
        if "postgresql" in storages:
            pg_url = subprocess.run(["bash", str(PG), "start", pg_dir], check=True, capture_output=True,
                                    text=True).stdout.strip().splitlines()[-1]
        for storage in storages:
            for n in workers:
                run_dir = work / f"cost-{storage}-{n}"
                target = (None if storage == "journal" else f"sqlite:///{work}/cost-{storage}-{n}.db"
                          if storage == "sqlite" else database(str(pg_url), f"bench_{n}"))
                args = ["accuracy.objective=none", f"search.n_trials={trials}", f"search.workers={n}",
                        *([f"search.storage={target}"] if target else [])]
                wall, cpu = run(args, run_dir)
                out.setdefault(storage, {})[str(n)] = {"wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
                                                       "trials_per_s": round(trials / wall, 2)}
                print(f"cost only, {trials} trials, {storage}, {n} worker(s): {wall:.1f} s (cpu {cpu:.0f} s), "
                      f"{trials / wall:.1f} trials/s", flush=True)
    finally:
        subprocess.run(["bash", str(PG), "stop", pg_dir], capture_output=True)
        shutil.rmtree(pg_dir, ignore_errors=True)
    return out


def build_parser() -> argparse.ArgumentParser:
    """The command line (also what the docs' command test parses every documented command with)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--coupled-trials", type=int, default=200)
    parser.add_argument("--cost-trials", type=int, default=2000)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--storages", default="journal,sqlite,postgresql")
    parser.add_argument("--skip-coupled", action="store_true")
    parser.add_argument("--skip-cost", action="store_true")
    parser.add_argument("--out", type=Path)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    result: dict[str, Any] = {"cores": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="tide-bench-") as tmp:
        work = Path(tmp)
        if not args.skip_coupled:
            result["coupled"] = {"trials": args.coupled_trials, **coupled(work, args.coupled_trials)}
        if not args.skip_cost:
            result["cost_only"] = {"trials": args.cost_trials,
                                   **cost_only(work, args.cost_trials, [int(w) for w in args.workers.split(",")],
                                               args.storages.split(","))}
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
