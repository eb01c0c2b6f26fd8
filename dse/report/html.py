"""The interactive HTML report of one or more runs: one self-contained file (plotly.js embedded, no network
at view time).

Sections: run overview and notes; the Pareto view (any two or three objectives, chosen in the page; hover shows
a trial's knobs, objectives and metrics; Pareto / feasible / infeasible told apart as in pareto.png, or one
colour per run when several are overlaid); parallel coordinates of each Pareto set; hypervolume history;
Optuna's fANOVA parameter importances per objective; the latency and energy breakdown of a chosen Pareto design
(default: the knee) by operator and phase; with several runs, their indicators against each other in one box.
"""

from __future__ import annotations

import html
import json
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio

from dse.pareto import Box, epsilon_additive, hypervolume, hypervolume_history, igd_plus, non_dominated
from dse.report.robust import overlay
from dse.report.runs import (
    ReportError,
    Run,
    common_box,
    design_file,
    knee,
    load_runs,
    shared_objectives,
)
from dse.results import written_whole

log = logging.getLogger(__name__)

#: one colour per overlaid run (plotly's default qualitative sequence)
RUN_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
#: knob / objective / metric values shown on hover
_FMT = "{:.4g}"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return _FMT.format(value) if math.isfinite(value) else str(value)
    return str(value)


def _hover(run: Run, row: dict[str, Any]) -> str:
    lines = [f"<b>{html.escape(run.label)}</b> trial {row.get('number')}"
             + (" (Pareto)" if row.get("pareto") is True else "" if row.get("feasible") is True else " (infeasible)")]
    lines.append("<i>knobs</i> " + ", ".join(f"{p}={_fmt(row.get(f'param.{p}'))}" for p in run.params))
    lines.append("<i>objectives</i> " + ", ".join(f"{m}={_fmt(row.get(f'objective.{m}'))}" for m in run.objectives))
    shown = [m for m in run.metrics if m not in run.directions and row.get(f"metric.{m}") is not None]
    for i in range(0, len(shown), 4):
        lines.append(("<i>metrics</i> " if i == 0 else "") + ", ".join(
            f"{m}={_fmt(row.get(f'metric.{m}'))}" for m in shown[i:i + 4]))
    reason = row.get("invalid_reason") or row.get("error")
    if reason:
        lines.append(f"<i>why</i> {html.escape(str(reason))[:120]}")
    return "<br>".join(lines)


def _finite_list(values: np.ndarray) -> list[float | None]:
    return [float(v) if math.isfinite(v) else None for v in values]


def _log_axis(values: np.ndarray) -> bool:
    """Log where positive values span more than 30x (as pareto.png)."""
    v = values[np.isfinite(values)]
    return bool(v.size and v.min() > 0 and v.max() / v.min() > 30)


#: the most dominated-feasible and the most infeasible points of a run the Pareto view draws (each class; the Pareto
#: set is always drawn whole): beyond it a uniform sample (seeded) is drawn and the page states the counts
MAX_SHOWN = 4000
#: the most feasible trials the fANOVA importances are fitted on (a seeded uniform sample beyond it)
MAX_IMPORTANCE_TRIALS = 200


def sample(rows: Sequence[dict[str, Any]], cap: int | None, seed: int = 0) -> list[dict[str, Any]]:
    """``rows`` when there are at most ``cap`` (None: no cap); else a uniform sample of ``cap`` of them, in their
    order, the same for the same rows and seed."""
    if cap is None or len(rows) <= cap:
        return list(rows)
    keep = np.sort(np.random.default_rng(seed).choice(len(rows), size=cap, replace=False))
    return [rows[i] for i in keep]


def pareto_view_data(runs: Sequence[Run], directions: dict[str, str], max_shown: int | None = MAX_SHOWN
                     ) -> dict[str, Any]:
    """What the page's Pareto view draws: per run and class (pareto / feasible / infeasible) the objective
    values and hover texts of the points drawn (every Pareto design; at most ``max_shown`` of each other class,
    a uniform sample), the class's count and the count drawn; per objective its axis label and scale (from every
    point, drawn or not)."""
    objectives = list(directions)
    out_runs = []
    all_values = []
    for i, run in enumerate(runs):
        pareto_numbers = {r.get("number") for r in run.pareto}
        classes = {"pareto": [r for r in run.rows if r.get("number") in pareto_numbers],
                   "feasible": [r for r in run.feasible if r.get("number") not in pareto_numbers],
                   "infeasible": [r for r in run.complete if r.get("feasible") is not True]}
        out_classes = []
        for kind, rows in classes.items():
            shown = rows if kind == "pareto" else sample(rows, max_shown)
            all_values.append(run.values(rows, objectives))
            values = run.values(shown, objectives)
            entry = {"kind": kind, "count": len(rows), "shown": len(shown),
                     "values": {m: _finite_list(values[:, j]) for j, m in enumerate(objectives)},
                     "text": [_hover(run, r) for r in shown]}
            robust = overlay(run.path, shown, objectives) if kind == "pareto" else None
            if robust is not None:  # python -m dse.robust ran: error bars and P(Pareto) on the Pareto designs
                entry["robust"] = robust
            out_classes.append(entry)
        out_runs.append({"label": run.label, "colour": RUN_COLOURS[i % len(RUN_COLOURS)], "classes": out_classes})
    stacked = np.vstack(all_values) if all_values else np.zeros((0, len(objectives)))
    return {"objectives": objectives,
            "labels": {m: f"{m} ({'lower' if d == 'minimize' else 'higher'} is better)" for m, d in directions.items()},
            "log": {m: _log_axis(stacked[:, j]) for j, m in enumerate(objectives)},
            "max_shown": max_shown,
            "runs": out_runs}


def _parcoords(run: Run, colour_by: str) -> go.Figure:
    """Parallel coordinates of the run's Pareto set: every knob (categorical ones as labelled codes), then
    every objective; lines coloured by ``colour_by``."""
    dims = []
    rows = run.pareto
    for p in run.params:
        vals = [r.get(f"param.{p}") for r in rows]
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in vals):
            dims.append({"label": p, "values": [float(v) for v in vals]})
        else:
            cats = sorted({str(v) for v in vals})
            dims.append({"label": p, "values": [cats.index(str(v)) for v in vals],
                         "tickvals": list(range(len(cats))), "ticktext": cats})
    values = run.values(rows, run.objectives)
    for j, m in enumerate(run.objectives):
        dims.append({"label": m, "values": _finite_list(values[:, j])})
    colour = values[:, run.objectives.index(colour_by)]
    fig = go.Figure(go.Parcoords(dimensions=dims, line={"color": _finite_list(colour), "colorscale": "Viridis",
                                                         "showscale": True, "colorbar": {"title": colour_by}}))
    fig.update_layout(title=f"{run.label}: the {len(rows)} Pareto designs (colour: {colour_by})",
                      margin={"l": 60, "r": 60, "t": 80, "b": 30}, height=420)
    return fig


def _history(runs: Sequence[Run], box: Box) -> tuple[go.Figure | None, list[str]]:
    fig = go.Figure()
    notes = []
    objectives = list(box.objectives)
    for i, run in enumerate(runs):
        if run.exhaustive:
            notes.append(f"run '{run.label}' is an exhaustive enumeration: no order of discovery, no history")
            continue
        rows = sorted(run.complete, key=lambda r: r.get("number") or 0)
        values = run.values(rows, objectives)
        feasible = np.array([r.get("feasible") is True for r in rows], dtype=bool) & np.all(np.isfinite(values), 1)
        hv = hypervolume_history(values, feasible, box)
        numbers = np.array([r.get("number") or 0 for r in rows])
        steps = step_points(hv)  # the same staircase from the trials where it moves (and the last)
        fig.add_trace(go.Scatter(x=numbers[steps].tolist(), y=hv[steps].tolist(), mode="lines", name=run.label,
                                 line={"color": RUN_COLOURS[i % len(RUN_COLOURS)], "shape": "hv"}))
    if not fig.data:
        return None, notes
    fig.update_layout(title="hypervolume of the feasible front after each trial (fixed box)",
                      xaxis_title="trial", yaxis_title="hypervolume", height=380)
    return fig, notes


def step_points(y: np.ndarray) -> np.ndarray:
    """The indices where a step function (drawn with ``shape: hv``) changes value, with the first and the last:
    the same staircase from far fewer points."""
    if len(y) == 0:
        return np.zeros(0, dtype=int)
    change = np.flatnonzero(np.diff(y) != 0) + 1
    return np.unique(np.concatenate([[0], change, [len(y) - 1]]))


def importances(run: Run, seed: int = 0, max_trials: int | None = MAX_IMPORTANCE_TRIALS
                ) -> dict[str, dict[str, float]]:
    """fANOVA importances (Optuna's ``FanovaImportanceEvaluator``) of every knob for each objective, over the
    run's feasible trials. The knobs' distributions are those the trials show (numeric knobs as ranges,
    the others as categories): the report needs only the run directory. Over at most ``max_trials`` feasible
    trials (a seeded uniform sample beyond: fANOVA's forests grow with the trials, the ranking does not need them
    all)."""
    import optuna

    if run.exhaustive:
        raise ReportError("an exhaustive enumeration records only the exact front in trials.csv, not a sample of "
                          "the space")
    rows = [r for r in run.feasible if all(r.get(f"param.{p}") is not None for p in run.params)]
    values = run.values(rows, run.objectives)
    keep = np.all(np.isfinite(values), axis=1)
    rows = sample([r for r, k in zip(rows, keep, strict=True) if k], max_trials, seed)
    values = run.values(rows, run.objectives)
    if len(rows) < 3:
        raise ReportError(f"{len(rows)} feasible trial(s): too few for importances")
    dists: dict[str, Any] = {}
    for p in run.params:
        vals = [r[f"param.{p}"] for r in rows]
        if all(isinstance(v, int) and not isinstance(v, bool) for v in vals):
            dists[p] = optuna.distributions.IntDistribution(min(vals), max(vals))
        elif all(isinstance(v, int | float) and not isinstance(v, bool) for v in vals):
            dists[p] = optuna.distributions.FloatDistribution(min(vals), max(vals))
        else:
            dists[p] = optuna.distributions.CategoricalDistribution(sorted({str(v) for v in vals}))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=list(run.directions.values()))
    study.add_trials([optuna.trial.create_trial(
        params={p: (str(r[f"param.{p}"]) if isinstance(dists[p], optuna.distributions.CategoricalDistribution)
                    else r[f"param.{p}"]) for p in run.params},
        distributions=dists, values=v.tolist()) for r, v in zip(rows, values, strict=True)])
    out = {}
    for j, m in enumerate(run.objectives):
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=seed)
        out[m] = optuna.importance.get_param_importances(study, evaluator=evaluator, params=run.params,
                                                         target=lambda t, j=j: t.values[j])
    return out


def _importance_figure(run: Run, imp: dict[str, dict[str, float]]) -> go.Figure:
    fig = go.Figure()
    for m, by_param in imp.items():
        fig.add_trace(go.Bar(name=m, x=run.params, y=[by_param.get(p, 0.0) for p in run.params]))
    used = min(len(run.feasible), MAX_IMPORTANCE_TRIALS)
    over = f"{len(run.feasible)}" if used == len(run.feasible) else f"a sample of {used:,} of {len(run.feasible):,}"
    fig.update_layout(barmode="group", title=f"{run.label}: knob importances per objective (fANOVA over "
                      f"{over} feasible trials)", yaxis_title="importance (sums to 1 per objective)",
                      height=380)
    return fig


def _op_group(op: str) -> str:
    """An operator's name without its phase prefix and bin index (prefill.q_proj -> q_proj, attn_score[3] ->
    attn_score)."""
    return re.sub(r"\[\d+\]$", "", op.split(".", 1)[-1])


def breakdown_figure(title: str, rows: Sequence[dict[str, Any]]) -> go.Figure:
    """Latency and energy by phase (bars) stacked by operator (the per-operator rows of the cost model)."""
    from plotly.subplots import make_subplots

    seen = list(dict.fromkeys(r["phase"] for r in rows))  # prefill, decode, then e.g. leakage's "all"
    phases = [p for p in ("prefill", "decode") if p in seen] + [p for p in seen if p not in ("prefill", "decode")]
    groups = list(dict.fromkeys(_op_group(r["op"]) for r in rows))
    fig = make_subplots(rows=1, cols=2, subplot_titles=("latency [s]", "energy [J]"))
    for g_i, group in enumerate(groups):
        for col, key in ((1, "latency_s"), (2, "energy_j")):
            y = [sum(r[key] for r in rows if r["phase"] == ph and _op_group(r["op"]) == group) for ph in phases]
            fig.add_trace(go.Bar(name=group, x=phases, y=y, legendgroup=group, showlegend=col == 1,
                                 marker_color=_palette(g_i)), row=1, col=col)
    fig.update_layout(barmode="stack", title=title, height=420)
    return fig


def _palette(i: int) -> str:
    base = ("#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#eeca3b", "#b279a2", "#ff9da6", "#9d755d",
            "#bab0ac", "#1b9e77", "#d95f02", "#7570b3", "#e7298a")
    return base[i % len(base)]


@dataclass(frozen=True)
class Section:
    title: str
    intro: str
    figures: list[tuple[str, str]]  # (div id, plotly JSON)
    table: str = ""


def _breakdown_section(runs: Sequence[Run], design: int | None) -> tuple[Section, list[str]]:
    from dse.designs import DesignFileError, design_breakdown, load_design

    figures, notes = [], []
    for i, run in enumerate(runs):
        if design is not None and i == 0:
            chosen = next((r for r in run.rows if r.get("number") == design), None)
            if chosen is None:
                raise ReportError(f"--design {design}: {run.path} has no trial {design}")
            how = f"trial {design} (chosen)"
        else:
            if not run.pareto:
                notes.append(f"run '{run.label}': no Pareto design, no breakdown")
                continue
            chosen = knee(run)
            how = f"the knee of the front, trial {chosen.get('number')}"
        number = int(chosen.get("number") or 0)
        path = design_file(run, number)
        if path is None:
            notes.append(f"run '{run.label}': trial {number} has no exported design file in designs/ (exported: "
                         "the Pareto set, up to output.max_exported_designs), no breakdown")
            continue
        try:
            rows = design_breakdown(load_design(path))
        except (DesignFileError, ValueError, TypeError, KeyError) as exc:
            notes.append(f"run '{run.label}': {path.name}: {exc}; no breakdown")
            continue
        if not rows:
            notes.append(f"run '{run.label}': system {run.summary.get('system')} has no per-operator model; "
                         "no breakdown")
            continue
        knobs = ", ".join(f"{p}={_fmt(chosen.get(f'param.{p}'))}" for p in run.params)
        fig = breakdown_figure(f"{run.label}: {how}<br><sup>{knobs}</sup>", rows)
        figures.append((f"breakdown{i}", pio.to_json(fig)))
    return Section("Where a design's time and energy go",
                   "Per phase, stacked by operator (every GEMM of the operator list, the vector unit's non-GEMM "
                   "work and leakage), from the cost model's per-operator breakdown; the same rows as "
                   "<code>python -m dse.evaluate DESIGN.yaml --breakdown --format csv</code>. The knee is the "
                   "Pareto design closest to the ideal point with each objective normalised over the front.",
                   figures), notes


def _robust_sections(runs: Sequence[Run]) -> list[Section]:
    """Per run with robust.csv (``python -m dse.robust``): its designs over the joint draws."""
    from dse.report.robust import section_parts

    out = []
    for i, run in enumerate(runs):
        parts = section_parts(run.label, run.path, run.directions, i)
        if parts is not None:
            figures, table, intro = parts
            out.append(Section("How robust the front is", intro, figures, table))
    return out


def _indicator_table(runs: Sequence[Run], box: Box) -> str:
    """Per run: hypervolume in the common box; IGD+ and additive epsilon to every other run's front and to
    the front of all runs together (0 = as good as the reference; lower is better)."""
    objectives = list(box.objectives)
    fronts = [r.front(objectives) for r in runs]
    union = np.vstack([f for f in fronts if len(f)]) if any(len(f) for f in fronts) else np.zeros((0, len(box.best)))
    combined = union[non_dominated(union, list(box.directions))] if len(union) else union
    head = ["run", "Pareto (shared objectives)", "hypervolume"] + \
        [f"IGD+ / &epsilon;+ to {html.escape(r.label)}" for r in runs] + ["IGD+ / &epsilon;+ to all runs"]
    body = []
    for i, (run, front) in enumerate(zip(runs, fronts, strict=True)):
        cells = [html.escape(run.label), str(len(front)), f"{hypervolume(front, box):.4f}"]
        for j, other in enumerate(fronts):
            cells.append("&mdash;" if i == j or not len(other) else
                         f"{igd_plus(front, other, box):.4f} / {epsilon_additive(front, other, box):.4f}")
        cells.append(f"{igd_plus(front, combined, box):.4f} / {epsilon_additive(front, combined, box):.4f}"
                     if len(combined) else "&mdash;")
        body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return ("<table class='ind'><thead><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr></thead><tbody>"
            + "".join(body) + "</tbody></table>")


def _overview_table(runs: Sequence[Run]) -> str:
    keys = ("system", "model", "tech", "sampler", "seed", "n_trials", "n_feasible", "pareto_size", "hypervolume")
    head = "".join(f"<th>{k}</th>" for k in ("run", "directory", *keys))
    body = "".join(
        "<tr>" + f"<td>{html.escape(r.label)}</td><td><code>{html.escape(str(r.path))}</code></td>"
        + "".join(f"<td>{html.escape(_fmt(r.summary.get(k, '')))}</td>" for k in keys) + "</tr>" for r in runs)
    return f"<table class='ind'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def build_report(paths: Sequence[Path], *, labels: Sequence[str] | None = None, design: int | None = None,
                 importance_seed: int = 0, max_shown: int | None = MAX_SHOWN) -> str:
    """The report's HTML text for the run directories ``paths`` (the first run's trial ``design`` broken
    down instead of the knee, if given; at most ``max_shown`` dominated-feasible and infeasible points of each
    run drawn in the Pareto view, None: all)."""
    from plotly.offline import get_plotlyjs

    runs = load_runs(paths, labels)
    directions, notes = shared_objectives(runs)
    for r in runs:
        notes.extend(f"run '{r.label}': {n}" for n in r.notes)
    if len(runs) > 1:
        box, box_notes = common_box(runs, directions)
        notes.extend(box_notes)
    else:
        box = runs[0].box
    sections: list[Section] = []
    view = pareto_view_data(runs, directions, max_shown)
    for run in view["runs"]:
        sampled = [f"{c['shown']:,} of {c['count']:,} {c['kind']}" for c in run["classes"] if c["shown"] < c["count"]]
        if sampled:
            notes.append(f"run '{run['label']}': the Pareto view draws {' and '.join(sampled)} trials (a uniform "
                         f"sample, at most {max_shown:,} a class; every Pareto design is drawn; --max-shown)")
    colour_by = list(directions)[-1]
    sections.append(Section(
        "Parallel coordinates of the Pareto set",
        "Each line is one Pareto design: its knobs, then its objectives. Drag along an axis to filter.",
        [(f"parcoords{i}", pio.to_json(_parcoords(r, colour_by if colour_by in r.directions else r.objectives[0])))
         for i, r in enumerate(runs) if r.pareto]))
    hist, hist_notes = _history(runs, box)
    notes.extend(hist_notes)
    if hist is not None:
        sections.append(Section("Hypervolume history", "In the fixed box of summary.json"
                                + (" common to all runs (the widest best and worst per shared objective)"
                                   if len(runs) > 1 else "") + "; higher is better.", [("history", pio.to_json(hist))]))
    imp_figs = []
    for i, run in enumerate(runs):
        try:
            imp_figs.append((f"importance{i}", pio.to_json(_importance_figure(run, importances(run, importance_seed)))))
        except (ReportError, ValueError, RuntimeError) as exc:
            notes.append(f"run '{run.label}': no importances ({exc})")
    if imp_figs:
        sections.append(Section("What drives each objective",
                                "fANOVA importances (Optuna's <code>FanovaImportanceEvaluator</code>, seed "
                                f"{importance_seed}) of every knob per objective, over the feasible trials.",
                                imp_figs))
    bd, bd_notes = _breakdown_section(runs, design)
    notes.extend(bd_notes)
    if bd.figures:
        sections.append(bd)
    sections.extend(_robust_sections(runs))
    if len(runs) > 1:
        sections.append(Section(
            "Runs against each other",
            f"On the shared objectives {list(directions)}, in one box. Hypervolume: higher is better. IGD+ and "
            "additive &epsilon; (in box units) of the row's front to the column's: 0 means the row's front is as "
            "good as the column's everywhere, lower is better.", [], _indicator_table(runs, box)))
    return _page(runs, view, sections, notes, get_plotlyjs())


def _json_for_script(obj: Any) -> str:
    """JSON safe inside a <script> element."""
    return json.dumps(obj, allow_nan=False).replace("</", "<\\/")


_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1280px;color:#222}
h1{font-size:1.5em} h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd}
.plot{width:100%;min-height:360px} .controls label{margin-right:1.2em}
table.ind{border-collapse:collapse;font-size:.9em;margin:.5em 0} table.ind td,table.ind th{border:1px solid #ccc;
padding:3px 8px;text-align:left} .notes li{color:#8a4b00} code{font-size:.9em}
"""

_SCRIPT = """
(function(){
  const P = DATA.pareto;
  const sel = id => document.getElementById(id);
  function fill(id, withNone, value){
    const s = sel(id);
    if (withNone) s.add(new Option('(none: 2-D view)', ''));
    for (const m of P.objectives) s.add(new Option(m, m));
    s.value = value;
  }
  const n = P.objectives.length;
  fill('px', false, P.objectives[0]);
  fill('py', false, P.objectives[Math.min(1, n - 1)]);
  fill('pz', true, '');
  function marker(kind, run, multi){
    if (kind === 'infeasible') return {symbol: 'x', size: 6, color: multi ? run.colour : '#d62728', opacity: 0.6};
    if (kind === 'feasible') return {size: 6, color: multi ? run.colour : '#9e9e9e', opacity: multi ? 0.25 : 0.6};
    return {size: 10, color: multi ? run.colour : '#1f77b4', line: {width: 1, color: '#000'}};
  }
  function axis(m){ return {title: {text: P.labels[m]}, type: P.log[m] ? 'log' : 'linear'}; }
  function draw(){
    const x = sel('px').value, y = sel('py').value, z = sel('pz').value;
    const multi = P.runs.length > 1, traces = [];
    for (const run of P.runs) for (const c of run.classes) {
      if (!c.count) continue;
      const t = {x: c.values[x], y: c.values[y], text: c.text, hovertemplate: '%{text}<extra></extra>',
                 mode: 'markers', marker: marker(c.kind, run, multi), type: z ? 'scatter3d' : 'scattergl',
                 name: (multi ? run.label + ': ' : '') + c.kind + ' (' + (c.shown < c.count ? c.shown
                       .toLocaleString('en') + ' of ' + c.count.toLocaleString('en') + ' shown' : c.count) + ')'};
      if (c.robust && !z) {  // tide robust: 5-95 % bars over the joint draws, P(Pareto) as colour
        const r = c.robust;
        const bar = m => ({type: 'data', symmetric: false, thickness: 0.8, color: '#aaaaaa',
                           array: c.values[m].map((v, i) => r.hi[m][i] === null ? 0 : r.hi[m][i] - v),
                           arrayminus: c.values[m].map((v, i) => r.lo[m][i] === null ? 0 : v - r.lo[m][i])});
        t.error_x = bar(x);
        t.error_y = bar(y);
        const scale = {colorscale: 'Viridis', cmin: 0, cmax: 1,
                       colorbar: multi ? undefined : {title: {text: 'P(Pareto)'}}};
        t.marker = Object.assign({}, t.marker, scale, {color: r.p.map(p => p === null ? 0 : p)});
        t.text = c.text.map((s, i) => s + (r.p[i] === null ? '' : '<br>P(Pareto) ' + r.p[i].toFixed(3)));
      }
      if (z) { t.z = c.values[z]; t.marker = Object.assign({}, t.marker, {size: t.marker.size / 2}); }
      if (multi && c.kind === 'infeasible') t.visible = 'legendonly';
      traces.push(t);
    }
    const layout = {height: 620, hovermode: 'closest', legend: {orientation: 'h'},
                    title: {text: z ? x + ' / ' + y + ' / ' + z : y + ' against ' + x}};
    if (z) layout.scene = {xaxis: axis(x), yaxis: axis(y), zaxis: axis(z)};
    else { layout.xaxis = axis(x); layout.yaxis = axis(y); }
    Plotly.react('pareto', traces, layout, {responsive: true});
  }
  for (const id of ['px', 'py', 'pz']) sel(id).addEventListener('change', draw);
  draw();
  for (const f of DATA.figures) Plotly.newPlot(f.id, f.spec.data, f.spec.layout, {responsive: true});
})();
"""


def _page(runs: Sequence[Run], view: dict[str, Any], sections: Sequence[Section], notes: Sequence[str],
          plotly_js: str) -> str:
    title = "TIDE report: " + ", ".join(r.label for r in runs)
    figures = [{"id": fid, "spec": json.loads(spec)} for s in sections for fid, spec in s.figures]
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{_STYLE}</style><script>{plotly_js}</script></head><body>",
             f"<h1>{html.escape(title)}</h1>", _overview_table(runs)]
    if notes:
        parts.append("<h2>Notes</h2><ul class='notes'>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes)
                     + "</ul>")
    parts.append(
        "<h2>Pareto view</h2><p>Choose two objectives (or a third for a 3-D view). Hover a point for its knobs, "
        "objectives and metrics. " + ("Each run in its own colour: Pareto designs large, other feasible "
                                      "trials faint, infeasible ones (x) hidden until clicked in the legend."
                                      if len(runs) > 1 else
                                      "Pareto designs blue, other feasible trials grey, infeasible ones red x.")
        + "</p><div class='controls'><label>x <select id='px'></select></label><label>y <select id='py'></select>"
        "</label><label>z <select id='pz'></select></label></div><div id='pareto' class='plot'></div>")
    for s in sections:
        parts.append(f"<h2>{html.escape(s.title)}</h2><p>{s.intro}</p>")
        parts.extend(f"<div id='{fid}' class='plot'></div>" for fid, _ in s.figures)
        parts.append(s.table)
    data = {"pareto": view, "figures": figures}
    parts.append(f"<script>const DATA = {_json_for_script(data)};{_SCRIPT}</script></body></html>")
    return "\n".join(parts)


def write_report(paths: Sequence[Path], out: Path, **kwargs: Any) -> Path:
    """Build the report of ``paths`` and write it to ``out``."""
    text = build_report(paths, **kwargs)
    out.parent.mkdir(parents=True, exist_ok=True)
    with written_whole(out) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return out
