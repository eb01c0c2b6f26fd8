"""Joint Monte Carlo speed (``python -m dse.robust``): candidate points x draws per second over a run's candidates,
one draw against many, in this one invocation.

    python benchmarks/bench_robust.py RUN_DIR [--draws 20] [--workers 2]

RUN_DIR is a finished run (an exhaustive one gives every point of its space that is feasible or within the slack of
a cost bound as candidates). Prints the candidates, the time of one draw (one process), the time of ``--draws``
draws on ``--workers`` processes, points x draws per second of each, their ratio, and the time 1,000 draws would
take at the measured rate.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from dse.robust.__main__ import SLACK
from dse.robust.candidates import load_run
from dse.robust.montecarlo import Job, run_draws
from dse.robust.ranges import draw, run_ranges


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--draws", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--slack", type=float, default=SLACK, help="as python -m dse.robust --slack")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    t0 = time.perf_counter()
    run = load_run(args.run_dir, progress=False, slack=args.slack)
    load_s = time.perf_counter() - t0
    params = tuple(run_ranges(run.cfg))
    job = Job(run.cfg, params, run.blocks, dict(run.problem.objectives), dict(run.problem.constraints))
    draws = draw(params, args.draws, 0)
    t0 = time.perf_counter()
    run_draws(job, draws[:1], (0, 1), workers=1, progress=False)
    one = time.perf_counter() - t0
    t0 = time.perf_counter()
    run_draws(job, draws, (0, 1), workers=args.workers, progress=False)
    many = time.perf_counter() - t0
    rate_one, rate_many = job.n / one, job.n * args.draws / many
    print(f"{job.n:,} candidates ({run.source}), {len(params)} inputs drawn; loading the run {load_s:.1f} s")
    print(f"1 draw, 1 process: {one:.2f} s, {rate_one:,.0f} points x draws / s")
    print(f"{args.draws} draws, {args.workers} processes: {many:.2f} s, {rate_many:,.0f} points x draws / s "
          f"(ratio to one draw {rate_many / rate_one:.2f})")
    print(f"1,000 draws at this rate: {1000 * many / args.draws:.0f} s")


if __name__ == "__main__":
    main()
