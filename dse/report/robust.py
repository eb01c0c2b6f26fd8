"""The report's robustness section, for a run where ``python -m dse.robust`` has written ``robust.csv``: the
designs on the Pareto view's first two objectives with 5-95 % error bars over the joint draws and P(Pareto) as
colour, the attainment surfaces of the draws' fronts, and the designs most and least robust."""

from __future__ import annotations

import csv
import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio

from dse.pareto import to_minimisation
from dse.robust.montecarlo import staircase

MAX_POINTS = 5000  # the designs drawn (those most often on a front first)
TABLE_ROWS = 10


def read_robust(run_dir: Path) -> tuple[list[dict[str, Any]], dict[str, Any], list[list[float]]] | None:
    """robust.csv rows (numbers as floats), robust.json and attainment.csv rows of a run; None without them."""
    path = run_dir / "robust.csv"
    if not path.is_file() or not (run_dir / "robust.json").is_file():
        return None
    with path.open() as fh:
        rows = [{k: _num(v) for k, v in r.items()} for r in csv.DictReader(fh)]
    record = json.loads((run_dir / "robust.json").read_text())
    surfaces: list[list[float]] = []
    if (run_dir / "attainment.csv").is_file():
        with (run_dir / "attainment.csv").open() as fh:
            surfaces = [[float(x) for x in r] for r in list(csv.reader(fh))[1:]]
    return rows, record, surfaces


def _key(row: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted((k, float(v) if isinstance(v, int | float) and not isinstance(v, bool) else str(v))
                        for k, v in row.items() if k.startswith("param.")))


def overlay(run_dir: Path, rows: Sequence[dict[str, Any]], objectives: Sequence[str]) -> dict[str, Any] | None:
    """For the trials ``rows`` of a run with robust.csv, aligned with them: P(Pareto) and the 5th / 95th percentile
    of every objective over the joint draws (None where a trial is not a candidate); None without robust.csv."""
    got = read_robust(run_dir)
    if got is None:
        return None
    by = {_key(r): r for r in got[0]}
    found = [by.get(_key(r)) for r in rows]
    return {"p": [None if f is None else f["p_pareto"] for f in found],
            "lo": {m: [None if f is None else f[f"{m}.p5"] for f in found] for m in objectives},
            "hi": {m: [None if f is None else f[f"{m}.p95"] for f in found] for m in objectives}}


def _num(text: str) -> Any:
    if text in ("True", "False"):
        return text == "True"
    try:
        return float(text)
    except ValueError:
        return text


def figure(label: str, rows: Sequence[dict[str, Any]], pair: Sequence[str], surfaces: Sequence[Sequence[float]],
           directions: Sequence[str]) -> go.Figure:
    a, b = pair
    shown = sorted(rows, key=lambda r: -r["p_pareto"])[:MAX_POINTS]
    x = [r[f"{a}.p50"] for r in shown]
    y = [r[f"{b}.p50"] for r in shown]
    fig = go.Figure(go.Scatter(
        x=x, y=y, mode="markers", name="designs (median over the draws)",
        error_x={"type": "data", "symmetric": False, "array": [r[f"{a}.p95"] - r[f"{a}.p50"] for r in shown],
                 "arrayminus": [r[f"{a}.p50"] - r[f"{a}.p5"] for r in shown], "thickness": 0.8, "color": "#bbbbbb"},
        error_y={"type": "data", "symmetric": False, "array": [r[f"{b}.p95"] - r[f"{b}.p50"] for r in shown],
                 "arrayminus": [r[f"{b}.p50"] - r[f"{b}.p5"] for r in shown], "thickness": 0.8, "color": "#bbbbbb"},
        marker={"color": [r["p_pareto"] for r in shown], "colorscale": "Viridis", "cmin": 0, "cmax": 1, "size": 7,
                "colorbar": {"title": "P(Pareto)"},
                "symbol": ["diamond" if r["nominal_pareto"] else "circle" for r in shown]},
        text=[f"candidate {int(r['candidate'])}<br>P(Pareto) {r['p_pareto']:.2f}, P(feasible) {r['p_feasible']:.2f}"
              + ("<br>on the configured front" if r["nominal_pareto"] else "") for r in shown],
        hoverinfo="text+x+y"))
    pts_all = to_minimisation(np.array([[p[0], p[1]] for p in surfaces] + [[u, v] for u, v in zip(x, y, strict=True)]
                                       ).reshape(-1, 2), directions)
    upper = tuple(pts_all.max(axis=0)) if len(pts_all) else (0.0, 0.0)
    for level, colour in ((10.0, "#9dc3e6"), (50.0, "#1f4e79"), (90.0, "#c55a11")):
        pts = to_minimisation(np.array([[p[0], p[1]] for p in surfaces if p[2] == level]).reshape(-1, 2), directions)
        line = to_minimisation(np.column_stack(staircase(pts, upper)), directions)
        if len(line):
            fig.add_trace(go.Scatter(x=line[:, 0].tolist(), y=line[:, 1].tolist(), mode="lines",
                                     line={"color": colour}, name=f"front attained in {level:g} % of draws"))
    fig.update_layout(title=f"{html.escape(label)}: designs over the joint draws (5-95 % bars; diamonds: the "
                            "configured front)", xaxis_title=a, yaxis_title=b, height=560,
                      legend={"orientation": "h", "y": -0.2})
    return fig


def table(rows: Sequence[dict[str, Any]], objectives: Sequence[str]) -> str:
    """The configured front's designs most and least often on a draw's front, and the designs off it that most
    often are."""
    params = [k for k in rows[0] if k.startswith("param.")] if rows else []
    front = sorted((r for r in rows if r["nominal_pareto"]), key=lambda r: (-r["p_pareto"], r["candidate"]))
    off = sorted((r for r in rows if not r["nominal_pareto"] and r["p_pareto"] > 0), key=lambda r: -r["p_pareto"])
    head = ["group", "candidate", "P(Pareto)", "P(feasible)", *(f"{m} (5-95 %)" for m in objectives),
            *(p.removeprefix("param.") for p in params)]
    body = []
    groups = (("most robust", front[:TABLE_ROWS]), ("least robust on the front", front[::-1][:TABLE_ROWS]),
              ("off the front, most often on one", off[:TABLE_ROWS]))
    for name, chosen in groups:
        for r in chosen:
            cells = [name, f"{int(r['candidate'])}", f"{r['p_pareto']:.3f}", f"{r['p_feasible']:.3f}",
                     *(f"{r[f'{m}.p5']:.4g}-{r[f'{m}.p95']:.4g}" for m in objectives),
                     *(html.escape(str(r[p])) for p in params)]
            body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return ("<table class='ind robust'><thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head)
            + "</tr></thead><tbody>" + "".join(body) + "</tbody></table>")


def section_parts(label: str, run_dir: Path, directions: dict[str, str], index: int
                  ) -> tuple[list[tuple[str, str]], str, str] | None:
    """(figures, table, intro text) of one run's robustness, or None when it has none."""
    got = read_robust(run_dir)
    if got is None:
        return None
    rows, record, surfaces = got
    objectives = list(directions)
    pair = record.get("pair") or objectives[:2]
    fig = figure(label, rows, pair, surfaces, [directions.get(m, "minimize") for m in pair])
    intro = (f"Run '{html.escape(label)}': {record['draws']} joint draws (seed {record['seed']}) of "
             f"{len(record['inputs'])} inputs with stated ranges over {record['candidates']:,} candidates "
             f"({html.escape(record['candidates_from'])}). Of the configured front's {record['nominal_front']} "
             f"designs, {record['nominal_front_robust_at_0.5']} stay on the front in at least half the draws and "
             f"{record['nominal_front_robust_at_0.9']} in 90 %; {record['ever_pareto']:,} designs are on some "
             "draw's front. <code>python -m dse.robust RUN_DIR</code> wrote these (robust.csv, robust_front.csv, "
             "attainment.csv).")
    return [(f"robust{index}", pio.to_json(fig))], table(rows, objectives), intro
