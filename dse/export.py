"""Exported designs: one reloadable YAML per Pareto design (plus Timeloop/Accelergy and SCALE-Sim inputs for
array systems).

A design file holds everything needed to re-evaluate it: the complete hardware configuration, the
model shape, the workload, the whole technology table with sources, the objectives, and the metric
values recorded by the search (``python -m dse.evaluate FILE`` recomputes and compares them).
"""

from __future__ import annotations

import copy
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import yaml

from dse.config import Config, plain
from dse.designs import FORMAT_VERSION
from dse.environment import packages
from dse.objectives import Problem
from dse.results import StudyTable, trial_metrics
from dse.systems import System

#: libyaml's safe emitter where PyYAML has it (the same text as ``yaml.safe_dump``, ~10x faster)
SAFE_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def system_point(cfg: Config, params: dict[str, Any]) -> dict[str, Any]:
    """The complete hardware of a trial: defaults, its knobs, catalog parts expanded (buildable values)."""
    from dse.catalog import Catalog, complete

    return complete(cfg.system.hw, params, {n: Catalog.from_config(n, k) for n, k in cfg.system.catalog.items()})


@dataclass(frozen=True)
class RunParts:
    """What every design file of one run shares (the config's parts as plain data, made once per export: at a
    few milliseconds each they would otherwise cost seconds for a large front)."""

    mechanism: dict[str, Any]
    model: dict[str, Any]
    workload: dict[str, Any]
    tech: dict[str, Any]
    accuracy: dict[str, Any] | None
    packages: dict[str, str | None]

    @classmethod
    def of(cls, cfg: Config, problem: Problem) -> RunParts:
        return cls({k: plain(q) for k, q in cfg.system.mechanism.items()}, plain(cfg.model), plain(cfg.workload),
                   plain(cfg.tech), plain(cfg.accuracy) if problem.providers else None, dict(packages()))


def design_document(cfg: Config, problem: Problem, trial: optuna.trial.FrozenTrial, run_dir: Path,
                    parts_of_run: RunParts | None = None) -> dict[str, Any]:
    common = parts_of_run or RunParts.of(cfg, problem)
    hw = {k: v for k, v in system_point(cfg, trial.params).items() if k not in cfg.system.catalog}
    parts = {name: {"choice": trial.params[name], "sets": dict(knob.sets),
                    "entry": {f: plain(q) for f, q in knob.entries[str(trial.params[name])].items()}}
             for name, knob in cfg.system.catalog.items() if name in trial.params}
    metrics = {k: v for k, v in trial_metrics(trial).items() if isinstance(v, int | float) and not isinstance(v, bool)}
    return copy.deepcopy({
        "tide_design": FORMAT_VERSION,
        "system": {"name": cfg.system.name, "family": cfg.system.family, "kv_method": cfg.system.kv_method, "hw": hw,
                   "mechanism": common.mechanism, **({"parts": parts} if parts else {})},
        "model": common.model,
        "workload": common.workload,
        "tech": common.tech,
        "objectives": dict(cfg.system.objectives),
        "accuracy": common.accuracy,
        "recorded": {
            "objectives": dict(zip(problem.objectives, trial.values, strict=True)),
            "metrics": metrics,
        },
        "provenance": {"study": cfg.search.study_name, "trial": trial.number, "run_dir": str(run_dir),
                       "packages": common.packages},
    })


def hardware_files(system: System, hw_point: dict[str, Any], folder: Path) -> list[Path]:
    """For a design with a PE array, in ``folder``: the Timeloop/Accelergy v0.4 input (``timeloop.yaml``:
    architecture, ERT, ART) and the SCALE-Sim 3 inputs of each array view (dse/hardware.py); nothing (and no
    folder) for other systems."""
    from dse.hardware import scalesim_files, timeloop_text

    hw = system.hardware(dict(hw_point))
    if hw is None:
        return []
    folder.mkdir(parents=True, exist_ok=True)
    timeloop = folder / "timeloop.yaml"
    timeloop.write_text(timeloop_text(hw))
    return [timeloop, *scalesim_files(hw, folder)]


def export_designs(cfg: Config, system: System, problem: Problem, table: StudyTable, run_dir: Path,
                   limit: int) -> list[Path]:
    """One file per distinct Pareto design (``table.pareto``), named by its first trial; the file lists
    every trial that evaluated the design."""
    out = run_dir / "designs"
    out.mkdir(exist_ok=True)
    for old in out.iterdir():  # designs/ holds the current Pareto set only: earlier exports go
        if old.is_file():
            old.unlink()
        elif old.is_dir() and old.name.startswith(f"{cfg.system.name}_trial"):
            shutil.rmtree(old)
    written = []
    common = RunParts.of(cfg, problem)
    for trial in sorted(table.pareto, key=lambda t: t.number)[:limit]:
        doc = design_document(cfg, problem, trial, run_dir, common)
        doc["provenance"]["trials"] = table.hits.get(trial.number, [trial.number])
        stem = out / f"{cfg.system.name}_trial{trial.number:05d}"
        path = stem.with_suffix(".yaml")
        path.write_text(yaml.dump(doc, Dumper=SAFE_DUMPER, sort_keys=False))
        written.append(path)
        hardware_files(system, doc["system"]["hw"], stem)  # designs/<stem>/: the next tools' inputs
    return written
