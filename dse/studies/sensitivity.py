"""How each headline ratio of the fidelity studies moves across the stated plausible ranges.

Every calibrated constant and labelled assumption carries ``range: [low, high]`` next to its source: the
mechanism parameters of the compared systems (``conf/system/*.yaml``), the technology table
(``conf/tech/*.yaml``) and the undisclosed hardware and platform defaults (``conf/uncertainty/*.yaml``).
One at a time, each is set to its low and its high end with everything else as configured (nothing is
refitted: a calibrated constant moved to an end of its range shows what its fit decides), and the headline
ratios are recomputed. The result is a table (``sensitivity_<study>.csv``: one row per parameter and end) and
a tornado plot per headline (``sensitivity_<study>.png``), with whether the systems' ranking survives.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from dse.uncertainty import UNCERTAINTY_DIR, Uncertain, hw_ranges, mechanism_ranges, tech_ranges

__all__ = ["UNCERTAINTY_DIR", "Uncertain", "hw_ranges", "mechanism_ranges", "spans", "summary", "sweep", "tech_ranges",
           "tornado", "write_csv"]

COLUMNS = ["parameter", "kind", "end", "value", "nominal", "low", "high", "headline", "ratio", "nominal_ratio",
           "change", "ranking_holds", "source"]


def sweep(params: list[Uncertain], headlines: Callable[..., dict[str, float]],
          ranking: Callable[[dict[str, float]], Any]) -> list[dict[str, Any]]:
    """Rows of the sensitivity table: each parameter at its low and high end; ``ranking_holds``: the systems
    keep the order they have at the configured values (``ranking`` maps headlines to that order)."""
    nominal = headlines()
    order = ranking(nominal)
    rows = []
    for p in params:
        for end, value in (("low", p.low), ("high", p.high)):
            got = headlines(**p.override(value))
            holds = ranking(got) == order
            for h, ratio in got.items():
                rows.append({"parameter": p.name, "kind": p.kind, "end": end, "value": value, "nominal": p.nominal,
                             "low": p.low, "high": p.high, "headline": h, "ratio": ratio,
                             "nominal_ratio": nominal[h], "change": ratio / nominal[h] - 1, "ranking_holds": holds,
                             "source": p.source})
    return rows


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        for r in rows:
            writer.writerow({**r, "ratio": f"{r['ratio']:.4f}", "nominal_ratio": f"{r['nominal_ratio']:.4f}",
                             "change": f"{r['change']:+.4f}"})


def spans(rows: list[dict[str, Any]], headline: str) -> list[tuple[str, float, float]]:
    """(parameter, change at its low end, change at its high end) for one headline, widest first."""
    by: dict[str, dict[str, float]] = {}
    for r in rows:
        if r["headline"] == headline:
            by.setdefault(r["parameter"], {})[r["end"]] = r["change"]
    out = [(p, e["low"], e["high"]) for p, e in by.items()]
    return sorted(out, key=lambda t: -max(abs(t[1]), abs(t[2])))


def tornado(rows: list[dict[str, Any]], path: Path, title: str, top: int = 12) -> None:
    """One tornado panel per headline: the ``top`` parameters that move it most, bars from the nominal
    ratio to its value at each end of the parameter's range (low end dark, high end light)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    heads = list(dict.fromkeys(r["headline"] for r in rows))
    nominal = {r["headline"]: r["nominal_ratio"] for r in rows}
    cols = 2
    fig, axes = plt.subplots((len(heads) + cols - 1) // cols, cols, figsize=(13, 3.2 * ((len(heads) + 1) // cols)),
                             squeeze=False)
    for ax, h in zip(axes.ravel(), heads, strict=False):
        items = spans(rows, h)[:top][::-1]
        y = np.arange(len(items))
        lows = np.array([lo for _p, lo, _hi in items]) * 100
        highs = np.array([hi for _p, _lo, hi in items]) * 100
        ax.barh(y, lows, color="#1f4e79", label="low end")
        ax.barh(y, highs, color="#9dc3e6", alpha=0.85, label="high end")
        ax.axvline(0, color="black", lw=0.8)
        ax.set_yticks(y, [p for p, _lo, _hi in items], fontsize=7)
        ax.set_title(f"{h} (nominal {nominal[h]:.2f})", fontsize=9)
        ax.set_xlabel("change of the ratio [%]", fontsize=8)
        ax.tick_params(axis="x", labelsize=7)
    for ax in axes.ravel()[len(heads):]:
        ax.axis("off")
    axes.ravel()[0].legend(fontsize=7, loc="lower right")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def summary(rows: list[dict[str, Any]], top: int = 5) -> list[str]:
    """Text lines: per headline its nominal value, the extreme values over all ranges, the widest
    parameters; and whether the ranking of the systems held at every end of every range."""
    lines = []
    for h in dict.fromkeys(r["headline"] for r in rows):
        rs = [r for r in rows if r["headline"] == h]
        lo, hi = min(r["ratio"] for r in rs), max(r["ratio"] for r in rs)
        widest = ", ".join(f"{p} {a:+.1%}/{b:+.1%}" for p, a, b in spans(rows, h)[:top])
        lines.append(f"{h:<28} nominal {rs[0]['nominal_ratio']:.3f}, over all ranges {lo:.3f}-{hi:.3f}; "
                     f"widest: {widest}")
    broken = sorted({f"{r['parameter']} ({r['end']})" for r in rows if not r["ranking_holds"]})
    lines.append("the systems keep their configured order at every end of every range" if not broken else
                 "the systems' order changes at: " + ", ".join(broken))
    return lines
