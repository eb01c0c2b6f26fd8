"""Exhaustive enumeration speed: points per second over the default Tender space (cost model only: 9,676,800 points,
the constrained exact front kept by moocore), with one process and with more, in this one invocation.

    python benchmarks/bench_exhaustive.py [--workers 1,2] [OVERRIDES...]

Prints, per process count, the points enumerated, the wall time, points/s and the ratio to the one-process run, and
checks that every run found the same front.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from dse.config import compose_raw, to_config
from dse.coupling import problem_for
from dse.exhaustive import enumerate_front
from dse.systems import make_system


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of the problem (default: system=tender)")
    parser.add_argument("--workers", default="1,2", help="process counts to time, e.g. 1,2")
    parser.add_argument("--chunk-points", type=int, default=1 << 17)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    overrides = ["system=tender", "accuracy.objective=none", "accuracy.max_ppl_increase=null", *args.overrides]
    cfg = to_config(compose_raw(overrides))
    system = make_system(cfg)
    problem, _ = problem_for(cfg, system)
    base: float | None = None
    fronts = []
    for workers in (int(w) for w in args.workers.split(",")):
        start = time.perf_counter()
        found = enumerate_front(system, problem, cfg.system.space, chunk_points=args.chunk_points, workers=workers,
                                progress=False)
        wall = time.perf_counter() - start
        rate = found.counts["enumerated"] / wall
        base = base or rate
        fronts.append(np.asarray(found.values))
        print(f"{workers} process(es): {found.counts['enumerated']:,} points in {wall:.1f} s = {rate:,.0f} points/s "
              f"(ratio to 1 process {rate / base:.2f}); front {found.counts['pareto']} designs", flush=True)
    same = all(f.shape == fronts[0].shape and np.array_equal(f, fronts[0]) for f in fronts)
    print(f"the same front in every run: {same}")


if __name__ == "__main__":
    main()
