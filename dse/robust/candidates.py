"""A finished run's candidate designs, ready for the joint draws.

A sampled run's candidates are its completed trials (from its study); an exhaustive run records only the exact
Pareto set as trials, so its candidates are found again: every accuracy group is read from the accuracy store (no
measurement is repeated) and the cost model runs over the whole hardware grid at the configured values. Either way
a candidate is a feasible design, or one that misses only bounds the draws move (area, power: not a measured
accuracy bound) by at most ``slack`` of the bound: in a draw where it becomes feasible it competes for the front
(the default Tender space: about 1.4 x 10^6 feasible points of 9.7 x 10^6).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from tqdm import tqdm

from dse.accuracy_store import store_for
from dse.config import Config, ConfigError
from dse.coupling import problem_for
from dse.exhaustive import accuracy_knobs, measure_groups
from dse.objectives import Observed, Problem
from dse.robust.montecarlo import CHUNK, Block, within_slack
from dse.run_config import read_config
from dse.space import grid_space
from dse.storage import RUN_RECORD, make_storage
from dse.systems import System, make_system


@dataclass(frozen=True)
class Run:
    """A run directory's config, system, problem and candidates (with their objective values as configured)."""

    cfg: Config
    system: System
    problem: Problem
    blocks: tuple[Block, ...]
    nominal: np.ndarray
    feasible: np.ndarray  # which candidates are feasible as configured (the others are within the slack)
    source: str  # where the candidates come from (for the summary)


def _storage_target(run_dir: Path) -> str:
    path = run_dir / RUN_RECORD
    if not path.is_file():
        raise ConfigError(f"{run_dir}: no {RUN_RECORD}: not a run directory")
    return str(json.loads(path.read_text())["storage"])


#: candidates of one accuracy group, with their objective values and feasibility as configured
Found = tuple[Block, np.ndarray, np.ndarray]


def _kept(system: System, problem: Problem, block: Block, slack: float) -> Found | None:
    """The candidates among ``block``'s points (:func:`within_slack`), or None when there are none."""
    values, feasible, near = within_slack(system, block, problem.objectives, problem.constraints, slack)
    idx = np.flatnonzero(near)
    return (block.take(idx), values[idx], feasible[idx]) if len(idx) else None


def _trial_blocks(cfg: Config, system: System, problem: Problem, run_dir: Path, slack: float) -> list[Found]:
    """A sampled run's completed trials that are candidates, grouped by accuracy spec (one stored measurement per
    group)."""
    study = optuna.load_study(study_name=cfg.search.study_name, storage=make_storage(cfg.search, run_dir))
    seen: set[tuple[tuple[str, str], ...]] = set()
    groups: dict[str, list[dict[str, Any]]] = {}
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        key = tuple(sorted((k, repr(v)) for k, v in t.params.items()))
        if key in seen:
            continue
        seen.add(key)
        groups.setdefault(repr(system.accuracy_spec(system.complete(t.params))), []).append(t.params)
    found = []
    for trials in groups.values():
        observed = problem.extra(system.complete(trials[0])) if problem.providers else Observed()
        kept = _kept(system, problem, Block({k: np.array([p[k] for p in trials]) for k in trials[0]}, observed),
                     slack)
        if kept is not None:
            found.append(kept)
    return found


def _grid_blocks(cfg: Config, system: System, problem: Problem, progress: bool, slack: float) -> list[Found]:
    """An exhaustive run's candidate points, one block per accuracy group (evaluated in chunks of the grid)."""
    grid = grid_space(dict(cfg.system.space))
    knobs = accuracy_knobs(system, grid, bool(problem.providers))
    groups = measure_groups(system, problem, grid, knobs, progress)
    hw = [k for k in grid if k not in knobs]
    shape = tuple(len(grid[k]) for k in hw)
    size = int(np.prod(shape, dtype=np.int64))
    found = []
    bar = tqdm(total=size * len(groups), desc="candidates", unit="pt", unit_scale=True, disable=not progress)
    for g in groups:
        parts = []
        for lo in range(0, size, CHUNK):
            flat = np.arange(lo, min(lo + CHUNK, size), dtype=np.int64)
            params = {k: np.asarray(grid[k])[c] for k, c in zip(hw, np.unravel_index(flat, shape), strict=True)}
            params.update({k: np.full(len(flat), v) for k, v in g.params.items()})
            kept = _kept(system, problem, Block(params, g.observed), slack)
            if kept is not None:
                parts.append(kept)
            bar.update(len(flat))
        if parts:
            found.append((Block({k: np.concatenate([b.params[k] for b, _v, _f in parts]) for k in parts[0][0].params},
                                g.observed),
                          np.vstack([v for _b, v, _f in parts]), np.concatenate([f for _b, _v, f in parts])))
    bar.close()
    return found


def load_run(run_dir: Path, progress: bool = True, slack: float = 0.0) -> Run:
    """The run in ``run_dir`` with its candidates (feasible, or missing a bound the draws move by at most ``slack``
    of it) and their objective values at the configured inputs."""
    cfg = read_config(run_dir)
    system = make_system(cfg)
    problem, _provider = problem_for(cfg, system, store_for(_storage_target(run_dir), cfg.search.accuracy_lease_s))
    if cfg.search.exhaustive:
        found, source = _grid_blocks(cfg, system, problem, progress, slack), "the exhaustive space"
    else:
        found, source = _trial_blocks(cfg, system, problem, run_dir, slack), "the run's trials"
    k = len(problem.objectives)
    nominal = np.vstack([v for _b, v, _f in found]) if found else np.zeros((0, k))
    feasible = np.concatenate([f for _b, _v, f in found]) if found else np.zeros(0, dtype=bool)
    return Run(cfg, system, problem, tuple(b for b, _v, _f in found), nominal, feasible, source)
