"""Sampler benchmark: how much of the exact front each Optuna sampler finds, and after how many trials.

For one system (default: Tender's space, coupled to measured accuracy served from the oracle's cache after
the exhaustive run's one measurement per key), the exact constrained Pareto front is enumerated first
(``dse.exhaustive``); then every sampler runs ``--trials`` trials for each of ``--seeds`` seeds (in memory, the
same ask/tell loop as ``python -m dse``), and the hypervolume (fixed box of the system's config) and IGD+ of
its feasible front are taken after 50 / 100 / 200 / 500 / 1000 trials (the first n trials of a longer run
are exactly a run of n trials: no sampler here looks at n_trials). Prints a table of median and IQR per
sampler and budget, and the trials each seed needs for 0.95 and 0.98 of the exact hypervolume; writes the
raw rows (CSV), the table (Markdown) and a plot to ``--out``.

    python benchmarks/bench_search.py system=tender --seeds 5 --trials 1000 --out docs/bench
    python benchmarks/bench_search.py system=infinigen --seeds 5 --trials 1000 --out docs/bench

``--samplers`` limits the list; ``--max-trials gp=200`` caps a slow sampler (it is reported as such).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import optuna

from dse.config import CONF_DIR, Config, register_schema, to_config
from dse.coupling import problem_for
from dse.exhaustive import enumerate_front
from dse.pareto import Box, hypervolume, igd_plus, non_dominated
from dse.samplers import make_sampler
from dse.study import optimise
from dse.systems import make_system

BUDGETS = (50, 100, 200, 500, 1000)
SAMPLERS = ("random", "qmc", "tpe", "nsga2", "nsga3", "gp", "parego")  # every shipped sampler with several objectives
TARGETS = (0.95, 0.98)


def compose(overrides: list[str]) -> Config:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    register_schema()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return to_config(hydra_compose(config_name="config", overrides=overrides))


def front_after(values: np.ndarray, feasible: np.ndarray, n: int, directions: list[str]) -> np.ndarray:
    v = values[:n][feasible[:n]]
    return v[non_dominated(v, directions)] if len(v) else v


def run_one(overrides: list[str], sampler: str, seed: int, trials: int, exact: np.ndarray, box: Box
            ) -> dict[str, Any]:
    cfg = compose([*overrides, f"search/sampler={sampler}", f"search.seed={seed}", f"search.n_trials={trials}",
                   "search.progress=false", "accuracy.progress=false"])
    system = make_system(cfg)
    problem, _ = problem_for(cfg, system)
    study = optuna.create_study(directions=list(problem.objectives.values()),
                                sampler=make_sampler(cfg.search.sampler, seed, cfg.system.space))
    t0 = time.perf_counter()
    optimise(study, cfg, system, problem)
    wall = time.perf_counter() - t0
    done = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    values = np.array([t.values for t in done], dtype=np.float64).reshape(len(done), len(problem.objectives))
    feasible = np.array([all(c <= 0 for c in t.constraints.values()) and np.all(np.isfinite(t.values))
                         for t in done], dtype=bool)
    directions = list(problem.objectives.values())
    hv_exact = hypervolume(exact, box)
    row: dict[str, Any] = {"sampler": sampler, "seed": seed, "trials": len(done), "wall_s": wall,
                           "ms_per_trial": 1e3 * wall / max(len(done), 1)}
    for n in BUDGETS:
        if n > len(done):
            continue
        front = front_after(values, feasible, n, directions)
        row[f"hv_ratio@{n}"] = hypervolume(front, box) / hv_exact
        row[f"igd_plus@{n}"] = igd_plus(front, exact, box)
    ratios = []
    front = np.zeros((0, len(directions)))
    for i in range(len(done)):  # hypervolume after every trial, for the trials-to-target figures
        if feasible[i]:
            cand = np.vstack([front, values[i:i + 1]])
            front = cand[non_dominated(cand, directions)]
        ratios.append(hypervolume(front, box) / hv_exact if feasible[i] or not ratios else ratios[-1])
    for target in TARGETS:
        hit = next((i + 1 for i, r in enumerate(ratios) if r >= target), None)
        row[f"trials_to_{target}"] = hit
    row["history"] = json.dumps([round(r, 5) for r in ratios])
    return row


def quartiles(xs: list[float]) -> str:
    if not xs:
        return "-"
    q1, med, q3 = np.percentile(xs, [25, 50, 75])
    return f"{med:.3f} [{q1:.3f}, {q3:.3f}]"


def table(rows: list[dict[str, Any]], samplers: list[str], space_size: int) -> str:
    head = ["sampler", *[f"HV ratio @{n}" for n in BUDGETS], *[f"IGD+ @{n}" for n in BUDGETS],
            *[f"trials to {t}" for t in TARGETS], "ms/trial"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in samplers:
        mine = [r for r in rows if r["sampler"] == s]
        if not mine:
            continue
        cells = [s]
        cells += [quartiles([r[f"hv_ratio@{n}"] for r in mine if f"hv_ratio@{n}" in r]) for n in BUDGETS]
        cells += [quartiles([r[f"igd_plus@{n}"] for r in mine if f"igd_plus@{n}" in r]) for n in BUDGETS]
        for t in TARGETS:
            hits = [r[f"trials_to_{t}"] for r in mine]
            reached = [h for h in hits if h is not None]
            cells.append(f"{int(np.median(reached))} ({len(reached)}/{len(hits)} seeds; "
                         f"{100 * np.median(reached) / space_size:.2g}% of space)" if reached
                         else f"not reached (0/{len(hits)} seeds)")
        cells.append(f"{np.median([r['ms_per_trial'] for r in mine]):.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], samplers: list[str], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for s in samplers:
        hist = [json.loads(r["history"]) for r in rows if r["sampler"] == s]
        if not hist:
            continue
        n = min(len(h) for h in hist)
        arr = np.array([h[:n] for h in hist])
        x = np.arange(1, n + 1)
        med = np.median(arr, axis=0)
        ax.plot(x, med, label=s)
        ax.fill_between(x, np.percentile(arr, 25, axis=0), np.percentile(arr, 75, axis=0), alpha=0.2)
    for t in TARGETS:
        ax.axhline(t, c="k", lw=0.6, ls=":")
    ax.set_xscale("log")
    ax.set_xlabel("trials")
    ax.set_ylabel("hypervolume / exact front's")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def render(path: Path, size: int, out: Path) -> None:
    """Table and plot from a CSV this script wrote (e.g. after stopping a slow sampler's seeds)."""
    rows: list[dict[str, Any]] = []
    for raw in csv.DictReader(path.open()):
        row: dict[str, Any] = {"sampler": raw["sampler"], "history": raw["history"]}
        for k, v in raw.items():
            if k not in row and v != "":
                row[k] = float(v)
            elif k.startswith("trials_to") and v == "":
                row[k] = None
        rows.append(row)
    samplers = [s for s in SAMPLERS if any(r["sampler"] == s for r in rows)]
    seeds = {s: sum(r["sampler"] == s for r in rows) for s in samplers}
    name = path.stem.removeprefix("bench_search_")
    caption = f"{name}: {size:,} points; median [IQR] over seeds {seeds}"
    md = table(rows, samplers, size)
    (out / f"bench_search_{name}.md").write_text(caption + "\n\n" + md + "\n")
    plot(rows, samplers, caption, out / f"bench_search_{name}.png")
    print(caption)
    print(md)


def build_parser() -> argparse.ArgumentParser:
    """The command line (also what the docs' command test parses every documented command with)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of the problem, e.g. system=infinigen")
    parser.add_argument("--samplers", default=",".join(SAMPLERS))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--max-trials", default="", help="per-sampler caps, e.g. gp=200")
    parser.add_argument("--out", type=Path, default=Path("docs/bench"))
    parser.add_argument("--from-csv", type=Path, help="only render the table and plot of an earlier run's CSV "
                        "(--size: the space's number of points)")
    parser.add_argument("--size", type=int, default=0)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.from_csv:
        render(args.from_csv, args.size, args.out)
        return
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("dse").setLevel(logging.WARNING)
    caps = {k: int(v) for k, v in (x.split("=") for x in args.max_trials.split(",") if x)}
    samplers = [s for s in args.samplers.split(",") if s]

    cfg = compose([*args.overrides, "search/sampler=exhaustive", "search.progress=false"])
    system = make_system(cfg)
    problem, _ = problem_for(cfg, system)
    box = Box.of(problem.objectives, {**cfg.system.reference, **cfg.accuracy.reference})
    t0 = time.perf_counter()
    enumeration = enumerate_front(system, problem, cfg.system.space, workers=2, progress=False)
    exact = enumeration.values
    size = enumeration.counts["enumerated"]
    name = cfg.system.name
    print(f"{name}: exact front {len(exact)} of {size:,} points, hypervolume {hypervolume(exact, box):.6f} "
          f"({time.perf_counter() - t0:.0f} s)", flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for sampler in samplers:
        for seed in range(args.seeds):
            row = run_one(list(args.overrides), sampler, seed, min(args.trials, caps.get(sampler, args.trials)),
                          exact, box)
            rows.append(row)
            print(f"{sampler} seed {seed}: " + ", ".join(f"{k} {v:.3f}" for k, v in row.items()
                                                      if k.startswith("hv_ratio")) + f" ({row['wall_s']:.0f} s)",
                  flush=True)
            with (args.out / f"bench_search_{name}.csv").open("w", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=sorted({k for r in rows for k in r}))
                writer.writeheader()
                writer.writerows(rows)
    md = table(rows, samplers, size)
    caption = (f"{name}: {size:,} points, exact front {len(exact)} designs; median [IQR] over {args.seeds} seeds"
               + (f"; capped: {caps}" if caps else ""))
    (args.out / f"bench_search_{name}.md").write_text(caption + "\n\n" + md + "\n")
    plot(rows, samplers, caption, args.out / f"bench_search_{name}.png")
    print(caption)
    print(md)


if __name__ == "__main__":
    main()
