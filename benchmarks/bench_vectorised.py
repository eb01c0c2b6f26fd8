"""Vectorised vs one-by-one evaluation of a system's cost model (default: the plain systolic array, and the joint
Tender + InfiniGen design).

Evaluates 10^5 random design points (drawn from the system's default search space) on each model's workload (default
workload config) through the vectorised path, then a sample of points one at a time, and prints design points per
second and the speed ratio (both measured in this process, so slow spells of the machine affect both alike).

    python benchmarks/bench_vectorised.py [--systems systolic,tender_infinigen] [--models smollm2_135m,llama2_7b]
                                          [--points 100000] [--one-by-one 500]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import optuna
from hydra import compose, initialize_config_dir

from dse.config import CONF_DIR, register_schema, to_config
from dse.space import suggest
from dse.systems import make_system


def random_points(cfg_space: dict, hw: dict, n: int, seed: int) -> dict[str, np.ndarray]:
    """n points from the configured space, sampled by Optuna's RandomSampler (no study overhead)."""
    sampler = optuna.samplers.RandomSampler(seed=seed)
    study = optuna.create_study(sampler=sampler)
    cols: dict[str, list] = {k: [] for k in cfg_space}
    for _ in range(n):
        trial = study.ask()
        for k, v in suggest(trial, cfg_space).items():
            cols[k].append(v)
    return {**hw, **{k: np.asarray(v) for k, v in cols.items()}}


def build_parser() -> argparse.ArgumentParser:
    """The command line (also what the docs' command test parses every documented command with)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--systems", default="systolic,tender_infinigen", help="conf/system/ names, comma-separated")
    parser.add_argument("--models", default="smollm2_135m,llama2_7b", help="conf/model/ names, comma-separated")
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--one-by-one", type=int, default=500)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    register_schema()
    for name, model in ((s, m) for s in args.systems.split(",") for m in args.models.split(",")):
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = to_config(compose(config_name="config", overrides=[f"system={name}", f"model={model}"]))
        system = make_system(cfg)
        pts = system.complete(random_points(cfg.system.space, dict(cfg.system.hw), min(args.points, 20_000), seed=0))
        # tile the sampled points up to the requested count (sampling itself is not what is measured)
        reps = int(np.ceil(args.points / len(next(iter(pts.values())))))
        big = {k: (np.tile(v, reps)[: args.points] if isinstance(v, np.ndarray) else v) for k, v in pts.items()}
        system.evaluate({k: (v[:10] if isinstance(v, np.ndarray) else v) for k, v in big.items()})  # warm-up
        t0 = time.perf_counter()
        result = system.evaluate(big)
        vec_s = time.perf_counter() - t0
        assert np.isfinite(result.metrics["latency_s"]).all()
        n1 = args.one_by_one
        t0 = time.perf_counter()
        for i in range(n1):
            system.evaluate({k: (v[i] if isinstance(v, np.ndarray) else v) for k, v in big.items()})
        one_s = (time.perf_counter() - t0) / n1
        vec_rate = args.points / vec_s
        print(f"{name:>16} {cfg.model.name:>12}: vectorised {args.points} points in "
              f"{vec_s:.3f} s = {vec_rate:,.0f} points/s | one-by-one {1 / one_s:,.0f} points/s "
              f"({one_s * 1e3:.3f} ms/point, {n1} sampled) | speed-up x{vec_rate * one_s:,.0f}")


if __name__ == "__main__":
    main()
