"""``python -m dse.robust RUN_DIR [--draws 1000] [--seed 0]``: which designs stay on the front when the model's
inputs are wrong within their stated ranges.

Every stated range that applies to the run (``dse/robust/ranges.py``) is sampled jointly; the run's candidate
designs (``dse/robust/candidates.py``) are evaluated again under each draw, vectorised over the candidates, and each
draw's constrained front is taken (``dse/robust/montecarlo.py``). Written in RUN_DIR:

* ``robust.csv``: per candidate its knobs, its objectives as configured, whether it is on the configured front,
  P(Pareto), P(feasible) and the 5th/50th/95th percentile of every objective over the draws (every candidate of a
  run with up to ``--rows`` of them; otherwise those on some draw's front and those on the configured front);
* ``robust_front.csv`` (the rows with P(Pareto) >= ``--threshold``) and ``robust_designs/``: those designs
  exported as the Pareto designs are (``designs/``), with their P(Pareto) and percentiles;
* ``attainment.csv`` / ``attainment.png``: the empirical attainment surfaces of the draws' fronts on the first two
  objectives (or ``--pair``): where the front lies in 10 / 50 / 90 % of the draws;
* ``robust.json``: the parameters drawn (with their ranges and distributions), the counts, the timing;
* ``report.html`` again, with the robustness section (``python -m dse.report`` shows it whenever ``robust.csv`` is
  there).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from dse.config import ConfigError
from dse.pareto import to_minimisation
from dse.results import write_csv
from dse.robust.candidates import Run, load_run
from dse.robust.montecarlo import (
    Job,
    attainment,
    draw_front,
    run_draws,
    spread,
    staircase,
    subset,
    summary_counts,
)
from dse.robust.ranges import draw, run_ranges

log = logging.getLogger("dse.robust")

PERCENTILES = (5.0, 50.0, 95.0)
ATTAINMENT = (10.0, 50.0, 90.0)
THRESHOLDS = (0.5, 0.9)
SLACK = 0.2  # a design 20 % over a cost bound as configured can meet it in a draw (the energy ranges are about +-25 %)


def build_parser() -> argparse.ArgumentParser:
    """The command line (also what the docs' command test parses every documented command with)."""
    parser = argparse.ArgumentParser(prog="python -m dse.robust", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--draws", type=int, default=1000, help="joint draws of every stated range")
    parser.add_argument("--seed", type=int, default=0, help="the draws are reproducible by this seed")
    parser.add_argument("--threshold", type=float, default=0.5, help="robust front: P(Pareto) at least this")
    parser.add_argument("--pair", nargs=2, metavar=("A", "B"), help="the two objectives of the attainment surfaces")
    parser.add_argument("--slack", type=float, default=SLACK,
                        help="candidates also the designs that miss a bound the draws move (area, power) by at most "
                             "this share of it (0: the feasible ones only)")
    parser.add_argument("--rows", type=int, default=100_000,
                        help="robust.csv lists every candidate up to this many, else the ones that were on a front")
    parser.add_argument("--workers", type=int, default=0, help="processes that evaluate draws (0: one per core)")
    parser.add_argument("--no-progress", dest="progress", action="store_false")
    return parser


def _label(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def rows_of(run: Run, idx: np.ndarray, p_pareto: np.ndarray, p_feasible: np.ndarray, nominal_front: np.ndarray,
            pct: np.ndarray) -> list[dict[str, Any]]:
    """robust.csv's rows for the candidates ``idx`` (``pct``: [percentiles, len(idx), objectives])."""
    objectives = list(run.problem.objectives)
    params = subset(run.blocks, idx)
    flat = {k: np.concatenate([b.params[k] for b in params]) for k in params[0].params} if params else {}
    rows = []
    for j, i in enumerate(idx):
        row: dict[str, Any] = {"candidate": int(i)}
        row.update({f"param.{k}": _label(v[j]) for k, v in flat.items()})
        row.update({f"objective.{m}": float(run.nominal[i, c]) for c, m in enumerate(objectives)})
        row.update({"feasible": bool(run.feasible[i]), "nominal_pareto": bool(nominal_front[i]),
                    "p_pareto": float(p_pareto[i]),
                    "p_feasible": float(p_feasible[i])})
        for c, m in enumerate(objectives):
            for q, level in enumerate(PERCENTILES):
                row[f"{m}.p{level:g}"] = float(pct[q, j, c])
        rows.append(row)
    return sorted(rows, key=lambda r: (-r["p_pareto"], r["candidate"]))


def export_front(run: Run, rows: list[dict[str, Any]], out: Path) -> list[Path]:
    """``robust_designs/``: each robust design as a design file (as ``designs/``), with its robustness."""
    from dse.exhaustive import frozen_trial
    from dse.export import RunParts, design_document, hardware_files
    from dse.space import distributions

    out.mkdir(exist_ok=True)
    for old in out.glob("*.yaml"):
        old.unlink()
    dists = distributions(dict(run.cfg.system.space))
    common = RunParts.of(run.cfg, run.problem)
    written = []
    for rank, row in enumerate(rows):
        params = {k.removeprefix("param."): v for k, v in row.items() if k.startswith("param.")}
        trial = frozen_trial(run.system, run.problem, params, dists)
        doc = design_document(run.cfg, run.problem, trial, out.parent, common)
        doc["provenance"]["trial"] = None
        doc["robust"] = {k: row[k] for k in row if k in ("p_pareto", "p_feasible") or ".p" in k}
        stem = out / f"{run.cfg.system.name}_robust{rank:04d}"
        stem.with_suffix(".yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
        hardware_files(run.system, doc["system"]["hw"], stem)
        written.append(stem.with_suffix(".yaml"))
    return written


def attainment_plot(surfaces: np.ndarray, pair: tuple[str, str], directions: tuple[str, str], nominal: np.ndarray,
                    path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    both = np.vstack([surfaces[:, :2], to_minimisation(nominal, directions)])
    upper = tuple(both.max(axis=0) + 0.05 * np.ptp(both, axis=0))
    for level, colour in zip(ATTAINMENT, ("#9dc3e6", "#1f4e79", "#c55a11"), strict=True):
        line = to_minimisation(np.column_stack(staircase(surfaces[surfaces[:, 2] == level][:, :2], upper)),
                               directions)
        if len(line):
            ax.plot(line[:, 0], line[:, 1], color=colour, label=f"attained in {level:g} % of draws")
    ax.scatter(nominal[:, 0], nominal[:, 1], s=8, color="black", label="configured front", zorder=3)
    ax.set_xlabel(pair[0])
    ax.set_ylabel(pair[1])
    ax.legend(fontsize=8)
    ax.set_title("Where the front lies across the joint draws", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    try:
        if args.draws < 1:
            raise ConfigError(f"--draws: must be >= 1, got {args.draws}")
        if not 0 < args.threshold <= 1:
            raise ConfigError(f"--threshold: must be in (0, 1], got {args.threshold}")
        if args.slack < 0:
            raise ConfigError(f"--slack: must be >= 0, got {args.slack}")
        run = load_run(args.run_dir, args.progress, args.slack)
        objectives = list(run.problem.objectives)
        pair = tuple(args.pair or objectives[:2])
        for m in pair:
            if m not in objectives:
                raise ConfigError(f"--pair: {m} is not an objective of the run; objectives: {objectives}")
        params = tuple(run_ranges(run.cfg))
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    directions = list(run.problem.objectives.values())
    job = Job(run.cfg, params, run.blocks, dict(run.problem.objectives), dict(run.problem.constraints))
    draws = draw(params, args.draws, args.seed)
    workers = args.workers or (os.cpu_count() or 1)
    log.info("%d candidates from %s (%d feasible as configured, the others within %g of a bound), %d inputs with "
             "stated ranges, %d draws on %d processes", job.n, run.source, int(run.feasible.sum()), args.slack,
             len(params), args.draws, workers)
    t0 = time.perf_counter()
    ipair = (objectives.index(pair[0]), objectives.index(pair[1]))
    tally = run_draws(job, draws, ipair, workers, args.progress)
    draws_s = time.perf_counter() - t0
    nominal_front = np.zeros(job.n, dtype=bool)
    nominal_front[draw_front(run.nominal, run.feasible, directions, job.edges)] = True
    p_pareto, p_feasible = tally.pareto / tally.draws, tally.feasible / tally.draws
    idx = np.arange(job.n) if job.n <= args.rows else np.flatnonzero((tally.pareto > 0) | nominal_front)
    pct = spread(job, draws, idx, PERCENTILES)
    rows = rows_of(run, idx, p_pareto, p_feasible, nominal_front, pct)
    out = args.run_dir
    write_csv(out / "robust.csv", rows)
    front = [r for r in rows if r["p_pareto"] >= args.threshold]
    write_csv(out / "robust_front.csv", front)
    export_front(run, front, out / "robust_designs")
    surfaces = attainment(tally.fronts, ATTAINMENT)
    pair_dirs = (directions[ipair[0]], directions[ipair[1]])
    write_csv(out / "attainment.csv", [{pair[0]: a, pair[1]: b, "percent_of_draws": level} for (a, b), level in
                                       zip(to_minimisation(surfaces[:, :2], pair_dirs), surfaces[:, 2], strict=True)])
    attainment_plot(surfaces, pair, pair_dirs, run.nominal[nominal_front][:, list(ipair)], out / "attainment.png")
    counts = summary_counts(tally, nominal_front, sorted({*THRESHOLDS, args.threshold}))
    record = {"draws": args.draws, "seed": args.seed, "threshold": args.threshold, "candidates_from": run.source,
              "slack": args.slack, "feasible_as_configured": int(run.feasible.sum()),
              "pair": list(pair), "draws_s": draws_s, "workers": workers,
              "points_x_draws_per_s": job.n * args.draws / draws_s if draws_s > 0 else None,
              **counts, "robust_front": len(front),
              "inputs": [{"name": p.name, "nominal": p.nominal, "range": [p.low, p.high], "dist": p.dist,
                          "moves_with": p.moves_with, "source": p.source} for p in params]}
    (out / "robust.json").write_text(json.dumps(record, indent=1) + "\n")
    from dse.app import write_run_report

    write_run_report(out)  # report.html gains the robustness section
    print(f"{job.n} candidates x {args.draws} draws in {draws_s:.1f} s; configured front {counts['nominal_front']}, "
          f"on some draw's front {counts['ever_pareto']}; P(Pareto) >= 0.5: {counts['robust_at_0.5']} "
          f"({counts['nominal_front_robust_at_0.5']} of the configured front), >= 0.9: {counts['robust_at_0.9']} "
          f"({counts['nominal_front_robust_at_0.9']})")
    print(f"wrote {out / 'robust.csv'}, robust_front.csv ({len(front)} designs, robust_designs/), attainment.csv/png, "
          "robust.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
