"""``python -m dse.studies.baseline_fronts``: the fronts of Tender and the outlier-aware accelerators it is compared
with (ANT, OliVe, OLAccel), each with its **own** quantisation measured on the proxy, overlaid at iso-area.

One exhaustive search per system (``system=<name> search/sampler=exhaustive``) over the same model, workload and
technology, every design's accuracy measured with that system's method (``system.quant_method``: Tender's
decomposition from the design point; ANT, OliVe at the design's width with the 8-bit share their cost model charges;
OLAccel with its outlier ratio) and no accuracy bound, so that every system has a front to show. The target
model is a Llama-2 by default: the proxy (SmolLM2) stands for the Llama family, and the baselines' model inputs
(``conf/model/llama2_*.yaml`` ``baseline_inputs``, ``python -m dse.studies.baseline_inputs``) were measured on it.

Writes in ``--out``: one run directory per system, ``compare.html`` (``tide report`` of all runs: the fronts
overlaid on any two objectives, hypervolume, IGD+ and epsilon between the runs), ``fronts.csv`` and
``fronts.png``: per area budget (``--areas``), each system's front of latency against perplexity increase among its
designs within that area (the 2-D front of the 4-objective Pareto set: a design off the 4-D front is matched or
beaten in both by one on it).

    python -m dse.studies.baseline_fronts --out outputs/baseline_fronts --areas 2 5 20
"""

from __future__ import annotations

import argparse
import csv
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dse.config import ConfigError, compose_raw, to_config
from dse.pareto import non_dominated

log = logging.getLogger("dse.studies.baseline_fronts")

SYSTEMS = ("tender", "ant", "olive", "olaccel")
LABELS = {"tender": "Tender", "ant": "ANT", "olive": "OliVe", "olaccel": "OLAccel"}
#: pareto.csv's columns (dse/results.py)
X, Y, AREA, ENERGY = "objective.latency_s", "objective.ppl_increase", "objective.area_mm2", "objective.energy_j"


#: the bounds every system's search shares (Tender's, conf/system/tender.yaml), so the fronts compare at equal
#: constraints
BOUNDS = {"area_mm2": 50, "power_w": 15}


def run_overrides(system: str, overrides: Sequence[str]) -> list[str]:
    """One system's exhaustive search: the shared bounds, no accuracy bound (a system whose every design misses it
    still has a front), the study's model, and the user's overrides last."""
    return [f"system={system}", "search/sampler=exhaustive", "accuracy.max_ppl_increase=null", "model=llama2_7b",
            *(f"++system.constraints.{metric}.max={v}" for metric, v in BOUNDS.items()), *overrides]


def iso_area_front(rows: Sequence[dict[str, Any]], area: float) -> list[dict[str, Any]]:
    """The designs of ``rows`` within ``area`` that no other within it beats in both latency and perplexity
    increase, by latency (one of each tie)."""
    pts = [r for r in rows if float(r[AREA]) <= area]
    if not pts:
        return []
    values = np.array([[float(r[X]), float(r[Y])] for r in pts])
    keep = non_dominated(values, ["minimize", "minimize"])
    seen: dict[tuple[float, float], dict[str, Any]] = {}
    for i in np.flatnonzero(keep):
        seen.setdefault((values[i, 0], values[i, 1]), pts[i])
    return sorted(seen.values(), key=lambda r: (float(r[X]), float(r[Y])))


def read_pareto(run_dir: Path) -> list[dict[str, Any]]:
    with (run_dir / "pareto.csv").open() as fh:
        return list(csv.DictReader(fh))


def fronts_table(runs: dict[str, Path], areas: Sequence[float]) -> list[dict[str, Any]]:
    out = []
    for system, run_dir in runs.items():
        rows = read_pareto(run_dir)
        for area in areas:
            for r in iso_area_front(rows, area):
                out.append({"system": system, "area_budget_mm2": area, "latency_s": float(r[X]),
                            "ppl_increase": float(r[Y]), "area_mm2": float(r[AREA]),
                            "energy_j": float(r[ENERGY]), "bits": r.get("param.bits", ""),
                            "trial": r.get("number", "")})
    return out


def plot(table: Sequence[dict[str, Any]], areas: Sequence[float], bound: float | None, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(areas), figsize=(4.6 * len(areas), 4.2), squeeze=False, sharey=True)
    for ax, area in zip(axes[0], areas, strict=True):
        for system in dict.fromkeys(r["system"] for r in table):
            pts = [r for r in table if r["system"] == system and r["area_budget_mm2"] == area]
            if pts:
                lows = [max(r["ppl_increase"], 1e-3) for r in pts]  # an increase <= 0 is drawn at 1e-3
                ax.step([r["latency_s"] for r in pts], lows, where="post",
                        marker="o", ms=3, label=LABELS.get(system, system))
        if bound is not None:
            ax.axhline(bound, color="k", ls="--", lw=0.8, label=f"+{bound:g} bound")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_ylim(5e-4, 2e3)  # a diverged design (ppl increase up to 1e5) lies above: its step enters from the top
        ax.set_title(f"area <= {area:g} mm^2")
        ax.set_xlabel("latency [s]")
        ax.grid(alpha=0.3, which="both")
    axes[0][0].set_ylabel("perplexity increase on the proxy (own method)")
    axes[0][-1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    """The command line (also what the docs' command test parses every documented command with)."""
    parser = argparse.ArgumentParser(prog="python -m dse.studies.baseline_fronts", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("outputs/baseline_fronts"))
    parser.add_argument("--systems", nargs="+", default=list(SYSTEMS), help="files of conf/system/")
    parser.add_argument("--areas", nargs="+", type=float, default=[2.0, 5.0, 20.0],
                        help="area budgets [mm^2] of the iso-area fronts")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every search (model=..., accuracy.*)")
    return parser


def main(argv: list[str] | None = None) -> int:
    from dse.app import run_search
    from dse.report.html import write_report

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    runs: dict[str, Path] = {}
    try:
        bound = to_config(compose_raw(list(args.overrides))).accuracy.max_ppl_increase  # drawn, not applied
        for system in args.systems:
            run_dir = (args.out / system).resolve()
            if (run_dir / "pareto.csv").is_file():
                log.info("%s: %s has results, reused (delete it to search again)", system, run_dir)
            else:
                run_search(compose_raw(run_overrides(system, args.overrides)), run_dir)
            runs[system] = run_dir
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    table = fronts_table(runs, args.areas)
    args.out.mkdir(parents=True, exist_ok=True)
    with (args.out / "fronts.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(table[0]) if table else ["system"])
        writer.writeheader()
        writer.writerows(table)
    plot(table, args.areas, bound, args.out / "fronts.png")  # every run is at its shared bounds (BOUNDS)
    write_report(list(runs.values()), args.out / "compare.html", labels=[LABELS.get(s, s) for s in runs])
    for system in runs:
        best = [r for r in table if r["system"] == system and r["area_budget_mm2"] == max(args.areas)]
        lo = min((r["ppl_increase"] for r in best), default=float("nan"))
        fast = min(best, key=lambda r: r["latency_s"], default=None)
        speed = f", fastest {fast['latency_s']:.3g} s at +{fast['ppl_increase']:.3g}" if fast else ""
        print(f"{LABELS.get(system, system)}: iso-area front (<= {max(args.areas):g} mm^2) of {len(best)}: lowest ppl "
              f"increase {lo:.3f}{speed}")
    print(f"wrote {args.out / 'compare.html'}, {args.out / 'fronts.png'}, {args.out / 'fronts.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
