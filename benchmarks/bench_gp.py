"""What a Gaussian-process sampler costs per trial once a study holds many trials, and what it finds.

A study of the system's space is filled with ``--trials`` random designs by the search loop, then the loop runs
``--asks`` more trials with each sampler (its proposal, then the evaluation: milliseconds cost-only, accuracy from
the cache); prints the median seconds per trial and its ratio to ParEGO's in the same run. ``--quality N`` also runs
each sampler for N trials from an empty study (same seeds) and prints the hypervolume of its feasible front in the
system's fixed box beside random sampling's.

    python benchmarks/bench_gp.py [--trials 200] [--asks 3] [--samplers gp,parego] [--quality 0] [OVERRIDES...]

Default overrides: ``system=tender`` (with measured accuracy: 4 objectives; the first run measures the space's 24
accuracy keys, later runs read them from the cache). ``accuracy.objective=none`` times the cost-only problem.
"""

from __future__ import annotations

import argparse

import numpy as np
import optuna

from dse.config import Config, compose_raw, to_config
from dse.coupling import problem_for
from dse.pareto import Box, hypervolume, non_dominated
from dse.samplers import make_sampler
from dse.study import optimise
from dse.systems import make_system

DEFAULTS = ["system=tender"]


def seconds_per_trial(overrides: list[str], sampler: str, trials: int, asks: int) -> float:
    """Median duration of the ``asks`` trials a search with ``sampler`` runs on a study that holds ``trials`` random
    ones (the sampler's proposal plus the evaluation: milliseconds cost-only, and accuracy served from the cache
    once the random trials have measured the space's keys)."""
    def config(name: str, n: int) -> Config:
        return to_config(compose_raw([*overrides, f"search/sampler={name}", f"search.n_trials={n}",
                                      "search.progress=false", "accuracy.progress=false"]))

    cfg = config("random", trials)
    system = make_system(cfg)
    problem, _ = problem_for(cfg, system)
    study = optuna.create_study(directions=list(problem.objectives.values()),
                                sampler=make_sampler(cfg.search.sampler, 0, cfg.system.space))
    optimise(study, cfg, system, problem)
    cfg = config(sampler, trials + asks)
    study.sampler = make_sampler(cfg.search.sampler, 0, cfg.system.space)
    optimise(study, cfg, system, problem)
    later = study.get_trials(deepcopy=False)[trials:]
    return float(np.median([(t.datetime_complete - t.datetime_start).total_seconds() for t in later]))


def front_hypervolume(overrides: list[str], sampler: str, trials: int, seed: int) -> float:
    cfg = to_config(compose_raw([*overrides, f"search/sampler={sampler}", f"search.seed={seed}",
                                 f"search.n_trials={trials}", "search.progress=false"]))
    system = make_system(cfg)
    problem, _ = problem_for(cfg, system)
    study = optuna.create_study(directions=list(problem.objectives.values()),
                                sampler=make_sampler(cfg.search.sampler, seed, cfg.system.space))
    optimise(study, cfg, system, problem)
    done = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE
            and all(c <= 0 for c in t.constraints.values()) and np.all(np.isfinite(t.values))]
    directions = list(problem.objectives.values())
    if not done:
        return 0.0
    v = np.array([t.values for t in done])
    box = Box.of(problem.objectives, {**cfg.system.reference, **cfg.accuracy.reference})
    return hypervolume(v[non_dominated(v, directions)], box)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*")
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--asks", type=int, default=3)
    parser.add_argument("--samplers", default="gp,parego")
    parser.add_argument("--quality", type=int, default=0, help="trials per quality run (0: skip)")
    parser.add_argument("--seeds", type=int, default=3)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    overrides = [*DEFAULTS, *args.overrides]
    samplers = args.samplers.split(",")
    cost = {s: seconds_per_trial(overrides, s, args.trials, args.asks) for s in samplers}
    ref = cost.get("parego") or next(iter(cost.values()))
    for s, c in cost.items():
        print(f"{s}: {c:.2f} s per trial after {args.trials} trials (ratio to parego {c / ref:.1f})")
    if args.quality:
        for s in ["random", *[s for s in samplers if s != "random"]]:
            hv = [front_hypervolume(overrides, s, args.quality, seed) for seed in range(args.seeds)]
            print(f"{s}: hypervolume after {args.quality} trials, seeds 0..{args.seeds - 1}: "
                  + " ".join(f"{h:.4f}" for h in hv) + f" (median {np.median(hv):.4f})")


if __name__ == "__main__":
    main()
