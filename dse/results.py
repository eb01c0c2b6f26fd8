"""Run-directory artefacts: trials.csv, pareto.csv and summary.json (written by the search, read by the loop, the
exports and the report)."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna

from dse.config import ConfigError
from dse.pareto import Box, epsilon_additive, hypervolume, hypervolume_history, igd_plus, non_dominated


@dataclass(frozen=True)
class StudyTable:
    """The study's trials flattened for reporting. ``pareto`` lists each distinct design once (its first
    trial); ``hits`` maps that trial's number to every trial that evaluated the same design."""

    objectives: list[str]
    directions: list[str]
    trials: list[optuna.trial.FrozenTrial]
    complete: list[optuna.trial.FrozenTrial]
    feasible: list[optuna.trial.FrozenTrial]
    pareto: list[optuna.trial.FrozenTrial]
    hits: dict[int, list[int]] = field(default_factory=dict)

    def values(self, trials: Sequence[optuna.trial.FrozenTrial]) -> np.ndarray:
        return np.array([t.values for t in trials], dtype=np.float64).reshape(len(trials), len(self.objectives))


def is_feasible(trial: optuna.trial.FrozenTrial, constraints: dict[str, float] | None = None) -> bool:
    """COMPLETE, every constraint met and every objective finite (``constraints``: the trial's, when the caller
    has them already: Optuna rebuilds them on every access)."""
    return (trial.state == optuna.trial.TrialState.COMPLETE
            and all(v <= 0 for v in (trial.constraints if constraints is None else constraints).values())
            and all(math.isfinite(v) for v in trial.values))


#: user attributes that are not metrics (studies written before metrics were one ``metrics`` record kept each
#: metric as its own attribute)
NOT_METRICS = ("error", "invalid_reason", "feasible", "worker", "repeat_of", "metrics")


def trial_metrics(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """Every metric a trial recorded (non-finite ones as text)."""
    attrs = trial.user_attrs
    legacy = {k: v for k, v in attrs.items() if k not in NOT_METRICS}
    return {**legacy, **(attrs.get("metrics") or {})}


def design_key(params: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    """What makes two trials the same design: their knob values."""
    return tuple(sorted((k, repr(v)) for k, v in params.items()))


def study_table(study: optuna.Study, objectives: Sequence[str], directions: Sequence[str]) -> StudyTable:
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    feasible = [t for t in complete if is_feasible(t)]
    table = StudyTable(list(objectives), list(directions), trials, complete, feasible, [])
    first: dict[tuple[tuple[str, str], ...], optuna.trial.FrozenTrial] = {}
    hits: dict[int, list[int]] = {}
    if feasible:
        mask = non_dominated(table.values(feasible), directions)
        for t in sorted((t for t, m in zip(feasible, mask, strict=True) if m), key=lambda t: t.number):
            rep = first.setdefault(design_key(t.params), t)
            hits.setdefault(rep.number, []).append(t.number)
    return StudyTable(list(objectives), list(directions), trials, complete, feasible, list(first.values()), hits)


def _row(trial: optuna.trial.FrozenTrial, table: StudyTable, pareto_ids: set[int]) -> dict[str, Any]:
    constraints = trial.constraints
    row: dict[str, Any] = {
        "number": trial.number,
        "state": trial.state.name,
        "feasible": is_feasible(trial, constraints),
        "pareto": trial.number in pareto_ids,
    }
    row.update({f"param.{k}": v for k, v in trial.params.items()})
    values = trial.values or [math.nan] * len(table.objectives)
    row.update({f"objective.{k}": v for k, v in zip(table.objectives, values, strict=True)})
    row.update({f"constraint.{k}": v for k, v in constraints.items()})
    row.update({f"metric.{k}": v for k, v in trial_metrics(trial).items()})
    row["repeat_of"] = trial.user_attrs.get("repeat_of", "")
    row["retry_of"] = trial.user_attrs.get("retry_of", "")  # the trial of a dead worker this one runs again
    row["worker"] = trial.user_attrs.get("worker", "")
    row["invalid_reason"] = trial.user_attrs.get("invalid_reason", "")
    row["error"] = trial.user_attrs.get("error", "")
    duration = trial.duration.total_seconds() if trial.duration is not None else math.nan
    row["duration_s"] = duration
    return row


@contextlib.contextmanager
def written_whole(path: Path) -> Iterator[Path]:
    """A file beside ``path`` to write in the block, renamed onto ``path`` when the block ends: an error, a signal
    or a kill mid-write leaves the previous file (or none), never a cut one. The file beside is removed on
    error."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    shapes = dict.fromkeys(tuple(r) for r in rows)  # the distinct key sequences, in order: rows mostly share one
    columns = list(dict.fromkeys(k for s in shapes for k in s))  # every row's keys, in order of first appearance
    with written_whole(path) as tmp, tmp.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        writer.writerows([r.get(c, "") for c in columns] for r in rows)


def write_tables(table: StudyTable, run_dir: Path) -> None:
    """trials.csv: every trial (``pareto`` true for each trial of a Pareto design); pareto.csv: each distinct
    Pareto design once, with the trials that evaluated it."""
    ids = {n for numbers in table.hits.values() for n in numbers}
    write_csv(run_dir / "trials.csv", [_row(t, table, ids) for t in table.trials])
    write_csv(run_dir / "pareto.csv", [{**_row(t, table, ids), "trials": ";".join(map(str, table.hits[t.number]))}
                                       for t in table.pareto])


class DamagedResults(ValueError):
    """A results file that is not what a search writes (cut mid-write, edited, of another format): the message
    names the file and the line."""


#: the trials.csv / pareto.csv columns that hold numbers whenever they are filled
NUMERIC_PREFIXES = ("objective.", "constraint.")


def read_results_csv(path: Path, convert: Callable[[str], Any] | None = None
                     ) -> tuple[list[str], list[dict[str, Any]]]:
    """The header and rows of a trials.csv or pareto.csv, checked: the file ends with a whole line, every row has
    the header's width, ``number`` is an integer and every filled objective and constraint value a number. A
    :class:`DamagedResults` names the first bad line. ``convert``: applied to each field as its row is read (the
    text rows are not all kept at once)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DamagedResults(f"{path}: cannot read it ({exc.strerror or exc})") from None
    if data and not data.endswith(b"\n"):
        lines = data.count(b"\n") + 1
        raise DamagedResults(f"{path}: line {lines} is cut (the file does not end with a whole line: a write that "
                             "stopped midway?)")
    try:
        reader = csv.reader(io.StringIO(data.decode("utf-8"), newline=""))
        header = next(reader, [])
        numeric = [(i, name) for i, name in enumerate(header) if name.startswith(NUMERIC_PREFIXES)]
        number = header.index("number") if "number" in header else None
        rows = []
        for row in reader:
            line = reader.line_num
            if len(row) != len(header):
                raise DamagedResults(f"{path}: line {line} has {len(row)} fields, the header {len(header)}")
            if number is not None and not row[number].lstrip("-").isdigit():
                raise DamagedResults(f"{path}: line {line}: number {row[number]!r} is not an integer")
            for i, name in numeric:
                if row[i]:
                    try:
                        float(row[i])
                    except ValueError:
                        raise DamagedResults(f"{path}: line {line}: {name} {row[i]!r} is not a number") from None
            rows.append(dict(zip(header, row, strict=True)) if convert is None else
                        {k: convert(v) for k, v in zip(header, row, strict=True)})
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DamagedResults(f"{path}: not readable CSV ({exc})") from None
    return header, rows


def read_summary(path: Path) -> dict[str, Any]:
    """summary.json, checked to be a JSON object (a :class:`DamagedResults` names the line of a damage)."""
    try:
        summary = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DamagedResults(f"{path}: line {exc.lineno}: not valid JSON ({exc.msg}: cut or edited?)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DamagedResults(f"{path}: not readable ({exc})") from None
    if not isinstance(summary, dict):
        raise DamagedResults(f"{path}: a JSON object is expected, found {type(summary).__name__}")
    return summary


def check_counts(summary: dict[str, Any], trials: int, pareto: int | None, where: Path) -> None:
    """The tables hold what summary.json counts (a table of another run, or one cut at a line end, does not)."""
    for name, count, key in (("trials.csv", trials, "n_trials"), ("pareto.csv", pareto, "pareto_size")):
        expected = summary.get(key)
        if count is not None and isinstance(expected, int) and count != expected:
            raise DamagedResults(f"{where / name}: {count} rows, but summary.json counts {expected} ({key}): the "
                                 "files are of different runs, or one was cut")


def load_reference_front(path: Path, objectives: Sequence[str]) -> np.ndarray:
    """The objective values of another run's ``pareto.csv`` (``search.reference_front``): it must exist and
    hold exactly this run's objectives (refused before any work otherwise)."""
    key = "search.reference_front"
    if not path.is_file():
        raise ConfigError(f"{key}: {path} is not a file (give another run's pareto.csv)")
    try:
        _, rows = read_results_csv(path)
    except DamagedResults as exc:
        raise ConfigError(f"{key}: {exc}") from None
    columns = [c.removeprefix("objective.") for c in (rows[0] if rows else {}) if c.startswith("objective.")]
    if not rows or sorted(columns) != sorted(objectives):
        raise ConfigError(f"{key}: {path} has objectives {sorted(columns) or 'none'}; this run optimises "
                          f"{sorted(objectives)}: compare runs of the same problem")
    try:
        values = np.array([[float(r[f"objective.{m}"]) for m in objectives] for r in rows])
    except ValueError as exc:
        raise ConfigError(f"{key}: {path} has a non-numeric objective value ({exc})") from None
    return values[np.all(np.isfinite(values), axis=1)]


def indicators(table: StudyTable, box: Box, reference_front: np.ndarray | None = None,
               reference_path: str | None = None) -> dict[str, Any]:
    """Hypervolume in the fixed box, and IGD+ / additive epsilon to a reference front when one is given."""
    front = table.values(table.pareto)
    out: dict[str, Any] = {"hypervolume": hypervolume(front, box), "box": box.describe(),
                           "pareto_outside_box": int(np.sum(np.any(box.scale(front) >= 1.0, axis=1)))}
    if reference_front is not None:
        out["reference_front"] = {
            "path": reference_path, "size": len(reference_front),
            "hypervolume": hypervolume(reference_front, box),
            "hypervolume_ratio": (out["hypervolume"] / hypervolume(reference_front, box)
                                  if hypervolume(reference_front, box) > 0 else None),
            "igd_plus": igd_plus(front, reference_front, box),
            "epsilon_additive": epsilon_additive(front, reference_front, box)}
    return out


def history(table: StudyTable, box: Box) -> tuple[np.ndarray, np.ndarray]:
    """Trial numbers and the hypervolume of the feasible front after each (COMPLETE trials in order)."""
    trials = sorted(table.complete, key=lambda t: t.number)
    values = table.values(trials)
    feasible = np.array([is_feasible(t) for t in trials], dtype=bool)
    return np.array([t.number for t in trials]), hypervolume_history(values, feasible, box)


def summarise(table: StudyTable, wall_s: float, quality: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    states: dict[str, int] = {}
    for t in table.trials:
        states[t.state.name] = states.get(t.state.name, 0) + 1
    return {
        "n_trials": len(table.trials),
        "n_complete": len(table.complete),
        "n_feasible": len(table.feasible),
        "n_failed": states.get("FAIL", 0),
        "states": states,
        "pareto_size": len(table.pareto),
        "objectives": dict(zip(table.objectives, table.directions, strict=True)),
        **quality,
        "wall_time_s": wall_s,
        **extra,
    }


def write_summary(summary: dict[str, Any], run_dir: Path) -> None:
    with written_whole(run_dir / "summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2, default=str) + "\n")
