"""The fidelity studies' headline ratios as intervals: every stated range drawn jointly
(``python -m dse.fidelity tender|infinigen --draws 1000 [--seed 0]``).

Where ``--sensitivity`` moves one input at a time, this draws all of them together (``dse/robust/ranges.py``:
uniform unless a range names another distribution; inputs that move together share one quantile) and recomputes
every headline at each draw. It reports per headline the median and the 90 % interval (5th-95th percentile), and
how often the systems keep the order they have at the configured values. Writes ``intervals_<study>.csv`` (one row
per headline) and ``draws_<study>.csv`` (every draw: the inputs' values and the headlines).
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from dse.robust.ranges import draw
from dse.uncertainty import Uncertain


def at_draw(p: Sequence[Uncertain], values: np.ndarray) -> dict[str, Any]:
    """The keyword arguments of a headline function that set every parameter of ``p`` to its drawn value."""
    out: dict[str, Any] = {}
    for u, v in zip(p, values, strict=True):
        for kind, entries in u.override(float(v)).items():
            if kind == "mechanism":
                for system, keys in entries.items():
                    out.setdefault("mechanism", {}).setdefault(system, {}).update(keys)
            else:
                out.setdefault(kind, {}).update(entries)
    return out


def joint(params: Sequence[Uncertain], headlines: Callable[..., dict[str, float]],
          ranking: Callable[[dict[str, float]], Any], n: int, seed: int, progress: bool = True
          ) -> tuple[dict[str, float], Any, np.ndarray, list[dict[str, float]], list[bool]]:
    """(nominal headlines, nominal order, the draws, the headlines at each draw, whether the order held)."""
    nominal = headlines()
    order = ranking(nominal)
    draws = draw(params, n, seed)
    got, orders = [], []
    for row in tqdm(draws, desc="draws", unit="draw", disable=not progress):
        h = headlines(**at_draw(params, row))
        got.append(h)
        orders.append(ranking(h))
    return nominal, order, draws, got, orders


def orders_of(order: Any) -> list[tuple[str, ...]]:
    """A ranking as a list of orders (a study ranks by one metric, or by several: a tuple of orders)."""
    return list(order) if order and isinstance(order[0], tuple) else [tuple(order)]


def order_lines(order: Any, orders: Sequence[Any]) -> list[str]:
    """How often the configured order holds, and how often each configured order's best system stays best."""
    n = len(orders)
    lines = [f"the systems keep their configured order in {sum(o == order for o in orders) / n:.1%} of the draws"]
    for i, mine in enumerate(orders_of(order)):
        best = sum(orders_of(o)[i][-1] == mine[-1] for o in orders) / n
        lines.append(f"order {i + 1} {' < '.join(mine)}: {mine[-1]} stays first in {best:.1%} of the draws")
    return lines


def intervals(nominal: dict[str, float], got: Sequence[dict[str, float]]) -> list[dict[str, Any]]:
    rows = []
    for h, value in nominal.items():
        v = np.array([g[h] for g in got])
        p5, p50, p95 = np.percentile(v, [5, 50, 95])
        rows.append({"headline": h, "nominal": value, "median": p50, "p5": p5, "p95": p95})
    return rows


def write(out: Path, study: str, params: Sequence[Uncertain], draws: np.ndarray, got: Sequence[dict[str, float]],
          held: Sequence[bool], rows: Sequence[dict[str, Any]]) -> tuple[Path, Path]:
    """``intervals_<study>.csv`` (``rows``) and ``draws_<study>.csv`` (every draw, ``held``: its order is the
    configured one)."""
    summary, per_draw = out / f"intervals_{study}.csv", out / f"draws_{study}.csv"
    with summary.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["headline", "nominal", "median", "p5", "p95"])
        w.writeheader()
        w.writerows({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in r.items()} for r in rows)
    with per_draw.open("w", newline="") as fh:
        w = csv.writer(fh)
        heads = list(got[0]) if got else []
        w.writerow(["draw", *(p.name for p in params), *heads, "order_holds"])
        for i, (row, g, ok) in enumerate(zip(draws, got, held, strict=True)):
            w.writerow([i, *(f"{x:.6g}" for x in row), *(f"{g[h]:.4f}" for h in heads), ok])
    return summary, per_draw


def lines(rows: Sequence[dict[str, Any]], orders: Sequence[Any], order: Any) -> list[str]:
    out = [f"{r['headline']:<28} configured {r['nominal']:.3f}; median {r['median']:.3f}, 90 % interval "
           f"{r['p5']:.3f}-{r['p95']:.3f}" for r in rows]
    return out + order_lines(order, orders)
