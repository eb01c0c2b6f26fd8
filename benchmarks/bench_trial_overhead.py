"""Per-trial overhead of the search loop: sampler + storage + bookkeeping, the cost model excluded.

Runs ``--trials`` trials of the same ask/tell loop as ``python -m dse`` (system=systolic, cost model only) for
each sampler with each storage (the journal file, SQLite), times the cost-model calls and prints the rest
per trial. Target: at most 5 ms per trial for NSGA-II on the journal file at 1,000 trials.

    python benchmarks/bench_trial_overhead.py --trials 1000 --samplers nsga2,random,tpe
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import optuna

from dse.config import CONF_DIR, Config, register_schema, to_config
from dse.coupling import problem_for
from dse.storage import storage_target
from dse.study import open_study, optimise
from dse.systems import System, make_system


def compose(overrides: list[str]) -> Config:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    register_schema()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return to_config(hydra_compose(config_name="config", overrides=overrides))


class Timed:
    """The system with its cost-model calls timed (what the overhead figure excludes)."""

    def __init__(self, system: System) -> None:
        self.system = system
        self.seconds = 0.0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.system, name)

    def evaluate(self, *args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return self.system.evaluate(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - t0


def overhead(sampler: str, storage: str, trials: int, work: Path) -> tuple[float, float]:
    """(ms per trial without the cost model, ms per trial of the cost model)."""
    run_dir = work / f"{sampler}-{storage}"
    target = "null" if storage == "journal" else f"sqlite:///{run_dir}/study.db"
    cfg = compose(["system=systolic", "accuracy.objective=none", f"search/sampler={sampler}",
                   f"search.n_trials={trials}", "search.progress=false", f"search.storage={target}"])
    system = make_system(cfg)
    problem, _ = problem_for(cfg, system)
    run_dir.mkdir(parents=True)
    study = open_study(cfg, run_dir, problem)
    timed = Timed(system)
    t0 = time.perf_counter()
    result = optimise(study, cfg, timed, problem, storage_target(cfg.search, run_dir))  # type: ignore[arg-type]
    wall = time.perf_counter() - t0
    n = result.n_asked
    return 1e3 * (wall - timed.seconds) / n, 1e3 * timed.seconds / n


def build_parser() -> argparse.ArgumentParser:
    """The command line (also what the docs' command test parses every documented command with)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--samplers", default="random,nsga2,nsga3,qmc,tpe")
    parser.add_argument("--storages", default="journal,sqlite")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("dse").setLevel(logging.WARNING)
    print(f"per-trial overhead at {args.trials} trials (sampler + storage + bookkeeping; cost model excluded)")
    print(f"{'sampler':8s} {'storage':8s} {'overhead ms/trial':>18s} {'cost model ms/trial':>20s}")
    with tempfile.TemporaryDirectory() as tmp:
        for sampler in args.samplers.split(","):
            for storage in args.storages.split(","):
                over, model = overhead(sampler, storage, args.trials, Path(tmp))
                print(f"{sampler:8s} {storage:8s} {over:18.2f} {model:20.2f}", flush=True)


if __name__ == "__main__":
    main()
