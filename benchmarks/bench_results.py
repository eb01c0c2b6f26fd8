"""How writing a run's results and its report grow with the study: 10^3, 10^4 and 10^5 trials in one invocation.

    python benchmarks/bench_results.py [--sizes 1000,10000,100000] [--profile N] [OVERRIDES...]

Each study is a cost-only search's trials (default: system=systolic, cost model only), made fast: random points of
the space evaluated by the vectorised cost model and added to a journal-file study as COMPLETE trials with the
constraints and metrics a search records (the search loop itself is not what is timed here). Then, per size:
writing trials.csv, pareto.csv, the plots, designs/ and summary.json (``dse.app.write_results`` without the
report); ``tide report`` on the run directory in a child process (its wall time, its peak resident memory from
/proc, the page's size); and a real search resuming the study, sent SIGTERM while it runs trials (the seconds from
the signal to its exit, the results written on the way). Printed with the ratio of each time to the smallest
size's. ``--profile N`` prints where the write of the N-trial study spends its time (cProfile, top functions).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import optuna

from dse.app import write_results
from dse.config import Config, compose_raw, to_config
from dse.coupling import problem_for
from dse.objectives import Problem, assess, attributes
from dse.pareto import Box
from dse.space import distributions, grid_space
from dse.storage import make_storage, storage_target
from dse.study import LoopResult, open_study
from dse.systems import System, make_system

ROOT = Path(__file__).resolve().parent.parent


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of the problem (default: system=systolic)")
    parser.add_argument("--sizes", default="1000,10000,100000", help="trial counts, e.g. 1000,10000,100000")
    parser.add_argument("--profile", type=int, default=0, help="profile the write of the study of this size")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def random_points(cfg: Config, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    grid = grid_space(dict(cfg.system.space))
    return {k: np.asarray(v, dtype=object)[rng.integers(0, len(v), size=n)] for k, v in grid.items()}


def fill_study(study: optuna.Study, cfg: Config, system: System, problem: Problem, n: int, seed: int) -> None:
    """``n`` COMPLETE trials of random points, recorded as a search records them."""
    points = random_points(cfg, n, np.random.default_rng(seed))
    dists = distributions(dict(cfg.system.space))
    params = [{k: points[k][i].item() if hasattr(points[k][i], "item") else points[k][i] for k in points}
              for i in range(n)]
    evaluation = system.evaluate(system.complete({k: np.asarray(list(v)) for k, v in points.items()}))
    trials = [optuna.trial.create_trial(params=p, distributions=dists, values=list(r.values),
                                        constraints=r.constraints, user_attrs=attributes(r))
              for p, r in zip(params, assess(evaluation, problem.objectives, problem.constraints), strict=True)]
    study.add_trials(trials)


def make_run(overrides: list[str], n: int, seed: int, run_dir: Path) -> tuple[Config, System, Problem, optuna.Study]:
    cfg = to_config(compose_raw([*overrides, "search.progress=false", "output.report=false"]))
    system = make_system(cfg)
    problem, _ = problem_for(cfg, system)
    run_dir.mkdir(parents=True)
    study = open_study(cfg, run_dir, problem, make_storage(cfg.search, run_dir))
    fill_study(study, cfg, system, problem, n, seed)
    return cfg, system, problem, study


def write(cfg: Config, system: System, problem: Problem, study: optuna.Study, run_dir: Path) -> dict[str, Any]:
    box = Box.of(problem.objectives, {**cfg.system.reference, **cfg.accuracy.reference})
    return write_results(cfg, system, problem, None, study, run_dir, storage_target(cfg.search, run_dir),
                         LoopResult(n_asked=0, n_failed=0, wall_s=0.0), box, None, None)


def _high_water_kib(pid: int) -> int:
    """The process's peak resident memory so far (VmHWM; its own, from its exec on: ``ru_maxrss`` of a child
    would count the pages of this large parent it was forked from)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    return next((int(ln.split()[1]) for ln in status.splitlines() if ln.startswith("VmHWM:")), 0)


def report(run_dir: Path) -> tuple[float, float, int]:
    """``tide report`` in a child process: wall seconds, peak memory (MiB) and the page's bytes."""
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "dse.report", str(run_dir), "--out", str(run_dir / "report.html")],
                             cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = 0
    while child.poll() is None:
        peak = max(peak, _high_water_kib(child.pid))
        time.sleep(0.02)
    wall = time.perf_counter() - start
    if child.returncode != 0:
        raise RuntimeError(f"tide report {run_dir} failed: {child.stderr.read() if child.stderr else ''}")
    return wall, peak / 1024, (run_dir / "report.html").stat().st_size


def _completed_since(journal: Path, offset: int) -> int:
    """Trials told COMPLETE in the journal's records after ``offset`` bytes."""
    with journal.open("rb") as fh:
        fh.seek(offset)
        return fh.read().count(b'"state":1')


def signal_to_exit(overrides: list[str], n: int, run_dir: Path) -> float:
    """A real search resuming the ``n``-trial study (one more trial at a time, random sampler) is sent SIGTERM once
    it runs trials: the seconds from the signal to its exit (the results of ``n`` trials written on the way)."""
    journal = run_dir / "study.journal"
    size = journal.stat().st_size
    child = subprocess.Popen([sys.executable, "-m", "dse", *overrides, "search/sampler=random", "search.resume=true",
                              f"search.n_trials={10 * n}", "search.progress=false", f"hydra.run.dir={run_dir}"],
                             cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    while _completed_since(journal, size) < 3 and child.poll() is None:  # loading the study, then its first trials
        time.sleep(0.05)
    start = time.perf_counter()
    child.send_signal(signal.SIGTERM)
    _, err = child.communicate()
    if child.returncode != 128 + signal.SIGTERM:
        raise RuntimeError(f"the search exited {child.returncode}, not 143: {err[-2000:]}")
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    overrides = ["system=systolic", "accuracy.objective=none", "accuracy.max_ppl_increase=null", *args.overrides]
    sizes = [int(s) for s in args.sizes.split(",")]
    base: tuple[float, float] | None = None
    print(f"{'trials':>8} {'write s':>8} {'x':>6} {'report s':>9} {'x':>6} {'report MiB':>11} {'page MB':>8} "
          f"{'pareto':>7} {'SIGTERM->exit s':>16}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            run_dir = Path(tmp) / f"run{n}"
            cfg, system, problem, study = make_run(overrides, n, args.seed, run_dir)
            profiler = cProfile.Profile() if n == args.profile else None
            start = time.perf_counter()
            if profiler is not None:
                profiler.enable()
            summary = write(cfg, system, problem, study, run_dir)
            if profiler is not None:
                profiler.disable()
            write_s = time.perf_counter() - start
            report_s, mib, size = report(run_dir)
            base = base or (write_s, report_s)
            del study
            exit_s = signal_to_exit(overrides, n, run_dir)
            print(f"{n:>8,} {write_s:>8.2f} {write_s / base[0]:>6.1f} {report_s:>9.2f} {report_s / base[1]:>6.1f} "
                  f"{mib:>11.0f} {size / 1e6:>8.2f} {summary['pareto_size']:>7} {exit_s:>16.2f}", flush=True)
            if profiler is not None:
                pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)


if __name__ == "__main__":
    main()
