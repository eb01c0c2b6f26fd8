"""Pareto plots: every pair of objectives, the Pareto set highlighted over all feasible trials."""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from dse.results import StudyTable, written_whole  # noqa: E402


def axis_label(metric: str, descriptions: Mapping[str, str], direction: str) -> str:
    desc = descriptions.get(metric, metric)
    unit = re.search(r"\[([^\]]+)\]\s*$", desc)
    arrow = "lower is better" if direction == "minimize" else "higher is better"
    return f"{metric} [{unit.group(1)}] ({arrow})" if unit else f"{metric} ({arrow})"


def axis_scale(values: np.ndarray) -> tuple[str, dict]:
    """log where positive values span > 30x; symlog where they also reach zero or below (e.g. a
    perplexity increase from -0.1 to 10^5); linear otherwise."""
    v = values[np.isfinite(values)]
    if not v.size:
        return "linear", {}
    if v.min() > 0:
        return ("log", {}) if v.max() / v.min() > 30 else ("linear", {})
    mags = np.abs(v[v != 0])
    if mags.size and mags.max() / max(np.percentile(mags, 10), 1e-12) > 100:
        return "symlog", {"linthresh": float(max(np.percentile(mags, 10), 1e-12))}
    return "linear", {}


def _pair_front(x: np.ndarray, y: np.ndarray, dx: str, dy: str) -> np.ndarray:
    """The 2-D staircase of the Pareto set's projection (for a guide line)."""
    sx = 1 if dx == "minimize" else -1
    sy = 1 if dy == "minimize" else -1
    order = np.lexsort((sy * y, sx * x))
    best = np.inf
    keep = []
    for i in order:
        if sy * y[i] < best:
            best = sy * y[i]
            keep.append(i)
    return np.array(keep, dtype=int)


def pareto_figure(table: StudyTable, descriptions: Mapping[str, str], title: str) -> plt.Figure:
    objs = table.objectives
    pairs = list(itertools.combinations(range(len(objs)), 2)) or [(0, 0)]
    ncols = min(3, len(pairs))
    nrows = int(np.ceil(len(pairs) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.2 * ncols, 4.4 * nrows), squeeze=False)
    feas = table.values(table.feasible)
    front = table.values(table.pareto)
    feasible_numbers = {t.number for t in table.feasible}
    infeasible = [t for t in table.complete if t.number not in feasible_numbers]
    infeas = table.values(infeasible) if infeasible else np.empty((0, len(objs)))
    infeas = infeas[np.all(np.isfinite(infeas), axis=1)] if infeas.size else infeas
    for ax, (i, j) in zip(axes.flat, pairs, strict=False):
        if infeas.size:
            ax.scatter(infeas[:, i], infeas[:, j], s=10, marker="x", c="#e8a0a0", label="infeasible", alpha=0.6)
        if feas.size:
            ax.scatter(feas[:, i], feas[:, j], s=12, c="#9a9a9a", label="feasible", alpha=0.7)
        if front.size:
            ax.scatter(front[:, i], front[:, j], s=30, c="#d62728", edgecolors="k", linewidths=0.4,
                       label=f"Pareto set ({len(front)})", zorder=3)
            stair = _pair_front(front[:, i], front[:, j], table.directions[i], table.directions[j])
            ax.step(front[stair, i], front[stair, j], where="post", c="#d62728", lw=0.8, alpha=0.7)
        allx = np.concatenate([feas[:, i] if feas.size else [], infeas[:, i] if infeas.size else []])
        ally = np.concatenate([feas[:, j] if feas.size else [], infeas[:, j] if infeas.size else []])
        xs, xkw = axis_scale(np.asarray(allx, dtype=float))
        ys, ykw = axis_scale(np.asarray(ally, dtype=float))
        ax.set_xscale(xs, **xkw)
        ax.set_yscale(ys, **ykw)
        ax.set_xlabel(axis_label(objs[i], descriptions, table.directions[i]))
        ax.set_ylabel(axis_label(objs[j], descriptions, table.directions[j]))
        ax.grid(True, which="both", alpha=0.25)
        if ax.get_legend_handles_labels()[0]:  # a study with no complete trial has nothing to label
            ax.legend(fontsize=8, loc="best")
    for ax in list(axes.flat)[len(pairs):]:
        ax.set_visible(False)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def save_pareto_plots(table: StudyTable, descriptions: Mapping[str, str], title: str, run_dir: Path,
                      formats: Sequence[str]) -> list[Path]:
    return save_figure(pareto_figure(table, descriptions, title), run_dir / "pareto", formats)


def save_figure(fig: plt.Figure, stem: Path, formats: Sequence[str]) -> list[Path]:
    """The figure as ``stem.<fmt>`` for every format, then closed."""
    paths = []
    for fmt in formats:
        path = stem.with_suffix(f".{fmt}")
        with written_whole(path) as tmp:
            fig.savefig(tmp, dpi=130, format=fmt)
        paths.append(path)
    plt.close(fig)
    return paths


def save_history_plot(numbers: np.ndarray, hv: np.ndarray, title: str, run_dir: Path, formats: Sequence[str],
                      reference: float | None = None) -> list[Path]:
    """hypervolume.png: the feasible front's hypervolume (fixed box) after each trial; with a reference
    front, its hypervolume as a line."""
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    ax.step(numbers, hv, where="post", c="#1f77b4", label="this run")
    if reference is not None:
        ax.axhline(reference, c="k", ls="--", lw=0.8, label="reference front")
    ax.set_xlabel("trial")
    ax.set_ylabel("hypervolume (fixed box, see summary.json)")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.25)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, run_dir / "hypervolume", formats)
