"""Run-directory artefacts: trials.csv, pareto.csv and summary.json."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna

from dse.pareto import Hypervolume, hypervolume, non_dominated


@dataclass(frozen=True)
class StudyTable:
    """The study's trials flattened for reporting."""

    objectives: list[str]
    directions: list[str]
    trials: list[optuna.trial.FrozenTrial]
    complete: list[optuna.trial.FrozenTrial]
    feasible: list[optuna.trial.FrozenTrial]
    pareto: list[optuna.trial.FrozenTrial]

    def values(self, trials: Sequence[optuna.trial.FrozenTrial]) -> np.ndarray:
        return np.array([t.values for t in trials], dtype=np.float64).reshape(len(trials), len(self.objectives))


def is_feasible(trial: optuna.trial.FrozenTrial) -> bool:
    return (trial.state == optuna.trial.TrialState.COMPLETE
            and all(v <= 0 for v in trial.constraints.values())
            and all(math.isfinite(v) for v in trial.values))


def study_table(study: optuna.Study, objectives: Sequence[str], directions: Sequence[str]) -> StudyTable:
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    feasible = [t for t in complete if is_feasible(t)]
    table = StudyTable(list(objectives), list(directions), trials, complete, feasible, [])
    if feasible:
        mask = non_dominated(table.values(feasible), directions)
        pareto = [t for t, m in zip(feasible, mask, strict=True) if m]
    else:
        pareto = []
    return StudyTable(list(objectives), list(directions), trials, complete, feasible, pareto)


def _row(trial: optuna.trial.FrozenTrial, table: StudyTable, pareto_ids: set[int]) -> dict[str, Any]:
    row: dict[str, Any] = {
        "number": trial.number,
        "state": trial.state.name,
        "feasible": is_feasible(trial),
        "pareto": trial.number in pareto_ids,
    }
    row.update({f"param.{k}": v for k, v in trial.params.items()})
    values = trial.values or [math.nan] * len(table.objectives)
    row.update({f"objective.{k}": v for k, v in zip(table.objectives, values, strict=True)})
    row.update({f"constraint.{k}": v for k, v in trial.constraints.items()})
    row.update({f"metric.{k}": v for k, v in trial.user_attrs.items()
                if k not in ("error", "invalid_reason", "feasible")})
    row["invalid_reason"] = trial.user_attrs.get("invalid_reason", "")
    row["error"] = trial.user_attrs.get("error", "")
    duration = trial.duration.total_seconds() if trial.duration is not None else math.nan
    row["duration_s"] = duration
    return row


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    columns: list[str] = []
    for r in rows:
        columns.extend(k for k in r if k not in columns)
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def write_tables(table: StudyTable, run_dir: Path) -> None:
    ids = {t.number for t in table.pareto}
    write_csv(run_dir / "trials.csv", [_row(t, table, ids) for t in table.trials])
    write_csv(run_dir / "pareto.csv", [_row(t, table, ids) for t in table.pareto])


def summarise(table: StudyTable, wall_s: float, extra: dict[str, Any]) -> dict[str, Any]:
    hv: Hypervolume = hypervolume(table.values(table.pareto), table.values(table.feasible), table.directions)
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
        "hypervolume": hv.value,
        "hypervolume_normalisation": hv.describe(),
        "hypervolume_bounds": {"ideal": hv.ideal, "nadir": hv.nadir, "reference": hv.reference},
        "wall_time_s": wall_s,
        **extra,
    }


def write_summary(summary: dict[str, Any], run_dir: Path) -> None:
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
