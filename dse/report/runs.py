"""Reading finished run directories back for the HTML report (trials.csv, pareto.csv, summary.json).

The report reads only these files, so it works for runs of any storage (journal or database) and on a machine
that did not run the search. Bad input is a :class:`ReportError` naming the directory and what is wrong.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dse.pareto import Box, non_dominated
from dse.results import DamagedResults, check_counts, read_results_csv, read_summary


class ReportError(ValueError):
    """A run directory (or a choice in it) the report cannot use; the message names it."""


def _value(text: str | None) -> Any:
    """A CSV field as Python: '' -> None, 'True'/'False' -> bool, numbers -> int/float, else the text."""
    if text is None or text == "":
        return None
    if text in ("True", "False"):
        return text == "True"
    try:  # an integer is all digits; anything else a float parses (1.5, 1e-05, nan, inf) or is text
        return int(text) if text.lstrip("-").isdigit() else float(text)
    except ValueError:
        return text


def _read_csv(path: Path) -> tuple[list[str], list[dict[str, Any]]]:
    """A results table, checked (:func:`dse.results.read_results_csv`), its fields as Python values."""
    try:
        return read_results_csv(path, _value)
    except DamagedResults as exc:
        raise ReportError(str(exc)) from None


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else math.nan


def feasible_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if r.get("feasible") is True]


def objective_values(rows: Sequence[dict[str, Any]], objectives: Sequence[str]) -> np.ndarray:
    """Objective values of trials.csv rows ([len(rows), len(objectives)]; NaN where a trial has none)."""
    return np.array([[_number(r.get(f"objective.{m}")) for m in objectives] for r in rows],
                    dtype=np.float64).reshape(len(rows), len(objectives))


@dataclass(frozen=True)
class Run:
    """One run directory as the report sees it. ``rows``: every trial of trials.csv; ``pareto``: each
    distinct Pareto design once (pareto.csv); ``notes``: what the report should say about this run."""

    path: Path
    label: str
    directions: dict[str, str]
    box: Box
    rows: list[dict[str, Any]]
    pareto: list[dict[str, Any]]
    params: list[str]
    metrics: list[str]
    summary: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    @property
    def objectives(self) -> list[str]:
        return list(self.directions)

    def values(self, rows: Sequence[dict[str, Any]], objectives: Sequence[str]) -> np.ndarray:
        """Objective values of ``rows`` (see :func:`objective_values`)."""
        return objective_values(rows, objectives)

    @property
    def complete(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r.get("state") == "COMPLETE"]

    @property
    def feasible(self) -> list[dict[str, Any]]:
        return feasible_rows(self.rows)

    def front(self, objectives: Sequence[str]) -> np.ndarray:
        """The non-dominated feasible values in ``objectives`` (a projection when they are a subset)."""
        values = self.values(self.feasible, objectives)
        values = values[np.all(np.isfinite(values), axis=1)]
        if not len(values):
            return values
        front = values[non_dominated(values, [self.directions[m] for m in objectives])]
        return np.unique(front, axis=0)

    @property
    def exhaustive(self) -> bool:
        return bool(self.summary.get("exhaustive"))


def _box_from_summary(summary: dict[str, Any], directions: dict[str, str]) -> Box | None:
    described = (summary.get("box") or {}).get("objectives") if isinstance(summary.get("box"), dict) else None
    if not isinstance(described, dict) or set(described) != set(directions):
        return None
    try:
        best = np.array([float(described[m]["best"]) for m in directions])
        worst = np.array([float(described[m]["worst"]) for m in directions])
    except (KeyError, TypeError, ValueError):
        return None
    return Box(tuple(directions), tuple(directions.values()), best, worst)


def _data_box(directions: dict[str, str], values: np.ndarray) -> Box:
    """A box around the data (10 % beyond the worst feasible value) for runs that recorded none."""
    best, worst = [], []
    for j, d in enumerate(directions.values()):
        v = values[:, j][np.isfinite(values[:, j])] if len(values) else np.zeros(0)
        lo, hi = (float(v.min()), float(v.max())) if v.size else (0.0, 1.0)
        span = (hi - lo) or max(abs(hi), 1.0)
        best.append(lo if d == "minimize" else hi)
        worst.append(hi + 0.1 * span if d == "minimize" else lo - 0.1 * span)
    return Box(tuple(directions), tuple(directions.values()), np.array(best), np.array(worst))


def load_run(path: Path, label: str | None = None) -> Run:
    """Read one run directory; a :class:`ReportError` when it is not one or is of a format this report
    cannot read."""
    path = Path(path)
    if not path.is_dir():
        raise ReportError(f"{path}: not a directory (give the run directory of a search: it holds trials.csv)")
    trials_path, summary_path = path / "trials.csv", path / "summary.json"
    if not trials_path.is_file():
        raise ReportError(f"{path}: no trials.csv: not the run directory of a finished TIDE search")
    if not summary_path.is_file():
        raise ReportError(f"{path}: no summary.json: the search did not finish, or it was written by an older TIDE")
    try:
        summary = read_summary(summary_path)
    except DamagedResults as exc:
        raise ReportError(str(exc)) from None
    objectives = summary.get("objectives") if isinstance(summary, dict) else None
    if not isinstance(objectives, dict) or not objectives or not all(
            d in ("minimize", "maximize") for d in objectives.values()):
        raise ReportError(f"{summary_path}: no 'objectives' mapping of objective -> minimize/maximize: written by "
                          "an older TIDE; re-run the search (or resume it) to rewrite it")
    directions = {str(k): str(v) for k, v in objectives.items()}
    columns, rows = _read_csv(trials_path)
    missing = [m for m in directions if f"objective.{m}" not in columns]
    if missing or "feasible" not in columns or "state" not in columns:
        lacking = [f"objective.{m}" for m in missing] + [c for c in ("feasible", "state") if c not in columns]
        raise ReportError(f"{trials_path}: no column(s) {lacking}: an older or foreign format")
    notes: list[str] = []
    params = [c.removeprefix("param.") for c in columns if c.startswith("param.")]
    metrics = [c.removeprefix("metric.") for c in columns if c.startswith("metric.")]
    pareto_path = path / "pareto.csv"
    if pareto_path.is_file():
        _, pareto = _read_csv(pareto_path)
    else:
        pareto = [r for r in rows if r.get("pareto") is True]
        notes.append("no pareto.csv: the Pareto set is read from trials.csv's 'pareto' column")
    try:
        check_counts(summary, len(rows), len(pareto) if pareto_path.is_file() else None, path)
    except DamagedResults as exc:
        raise ReportError(str(exc)) from None
    box = _box_from_summary(summary, directions)
    if box is None:
        box = _data_box(directions, objective_values(feasible_rows(rows), list(directions)))
        notes.append("summary.json has no hypervolume box (older format): the report uses a box around the data, "
                     "so its hypervolumes do not compare with other runs'")
    name = label or " / ".join(str(summary[k]) for k in ("system", "model", "tech", "sampler") if summary.get(k)) \
        or path.name
    return Run(path, name, directions, box, rows, pareto, params, metrics, summary, notes)


def load_runs(paths: Sequence[Path], labels: Sequence[str] | None = None) -> list[Run]:
    """Every run, with distinct labels (a run directory's name is appended where two would read the same)."""
    if labels and len(labels) != len(paths):
        raise ReportError(f"--label: {len(labels)} label(s) for {len(paths)} run(s); give one per run or none")
    runs = [load_run(p, labels[i] if labels else None) for i, p in enumerate(paths)]
    seen: dict[str, int] = {}
    for r in runs:
        seen[r.label] = seen.get(r.label, 0) + 1
    return [dataclasses.replace(r, label=f"{r.label} ({r.path.name})") if seen[r.label] > 1 else r for r in runs]


def shared_objectives(runs: Sequence[Run]) -> tuple[dict[str, str], list[str]]:
    """The objectives every run optimises (in the first run's order, with their directions) and notes on
    what is left out."""
    first = runs[0]
    shared = {m: d for m, d in first.directions.items() if all(m in r.directions for r in runs)}
    for m, d in shared.items():
        other = next((r for r in runs if r.directions[m] != d), None)
        if other is not None:
            raise ReportError(f"{other.path}: objective {m!r} is {other.directions[m]}d there but {d}d in "
                              f"{first.path}: these runs cannot be compared on it")
    if not shared:
        raise ReportError("the runs share no objective: "
                          + "; ".join(f"{r.path}: {r.objectives}" for r in runs))
    notes = []
    for r in runs:
        extra = [m for m in r.objectives if m not in shared]
        if extra:
            notes.append(f"run '{r.label}' also optimises {extra}: the comparison uses only the objectives all runs "
                         f"share, {list(shared)}")
    return shared, notes


def common_box(runs: Sequence[Run], directions: dict[str, str]) -> tuple[Box, list[str]]:
    """One box for the shared objectives that holds every run's box (the widest best and worst)."""
    best, worst = [], []
    for m, d in directions.items():
        bests = [float(r.box.best[r.objectives.index(m)]) for r in runs]
        worsts = [float(r.box.worst[r.objectives.index(m)]) for r in runs]
        best.append(min(bests) if d == "minimize" else max(bests))
        worst.append(max(worsts) if d == "minimize" else min(worsts))
    box = Box(tuple(directions), tuple(directions.values()), np.array(best), np.array(worst))
    notes = []
    for r in runs:
        own = np.array([[r.box.best[r.objectives.index(m)], r.box.worst[r.objectives.index(m)]] for m in directions])
        if not np.allclose(own, np.stack([box.best, box.worst], axis=1)):
            notes.append(f"run '{r.label}' recorded a different hypervolume box; the comparison uses one box that "
                         "holds every run's (the widest best and worst per objective)")
    return box, notes


def knee(run: Run) -> dict[str, Any]:
    """The knee of the run's Pareto set: the design closest (Euclidean) to the ideal point once each objective
    is normalised to [0, 1] over the front (0 = the front's best)."""
    if not run.pareto:
        raise ReportError(f"{run.path}: no Pareto design (no feasible trial): nothing to break down")
    values = run.box.scale(run.values(run.pareto, run.objectives))
    lo, hi = values.min(axis=0), values.max(axis=0)
    norm = (values - lo) / np.where(hi > lo, hi - lo, 1.0)
    return run.pareto[int(np.argmin(np.linalg.norm(norm, axis=1)))]


def design_file(run: Run, trial: int) -> Path | None:
    """The exported design file of a trial (designs/<system>_trial<N>.yaml), if there is one."""
    matches = sorted((run.path / "designs").glob(f"*_trial{trial:05d}.yaml"))
    return matches[0] if matches else None
