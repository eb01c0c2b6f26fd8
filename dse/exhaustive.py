"""``search/sampler=exhaustive``: the exact constrained Pareto set of a discrete space, by enumeration.

Measured accuracy depends on a few algorithm knobs only (Tender: bits, groups, chunk; InfiniGen: budget,
alpha, r), while the hardware knobs cost microseconds per point in the vectorised cost models. So the space
is split into *accuracy groups* (every combination of the knobs that change the system's accuracy spec,
found by probing ``System.accuracy_spec``); each group's accuracy is measured once (the oracle's cache), then
the cost model runs over all of the group's hardware points in bounded chunks, on every core. Each chunk
keeps its feasible non-dominated points (moocore), the fronts are merged, and the last filter over all
objectives gives the exact constrained Pareto set. Only that set becomes trials of the study (plus counts in
``summary.json``): trials.csv of an exhaustive run holds the Pareto set, not every point.
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import os
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import moocore
import numpy as np
import optuna
from tqdm import tqdm

from dse.config import Bound, ConfigError, ParamSpec
from dse.objectives import Observed, Problem, assess, assess_arrays, attributes
from dse.pareto import to_minimisation
from dse.space import distributions, grid_size, grid_space
from dse.systems import System

log = logging.getLogger(__name__)

DEFAULT_CHUNK = 1 << 17


class ExhaustiveSampler(optuna.samplers.BaseSampler):
    """Marks a study as enumerated rather than sampled: the search enumerates the whole discrete space
    (:func:`enumerate_front`) and records the exact Pareto set; nothing is ever asked of this sampler.

    ``chunk_points``: design points per vectorised cost-model call (bounds memory); ``workers``: processes
    that evaluate chunks (0: one per core)."""

    def __init__(self, chunk_points: int = DEFAULT_CHUNK, workers: int = 0) -> None:
        if chunk_points < 1:
            raise ValueError(f"chunk_points must be >= 1, got {chunk_points}")
        if workers < 0:
            raise ValueError(f"workers must be >= 0 (0: one per core), got {workers}")
        self.chunk_points = int(chunk_points)
        self.workers = int(workers) or (os.cpu_count() or 1)

    def infer_relative_search_space(self, study: optuna.Study, trial: optuna.trial.FrozenTrial
                                    ) -> dict[str, optuna.distributions.BaseDistribution]:
        return {}

    def sample_relative(self, study: optuna.Study, trial: optuna.trial.FrozenTrial,
                        search_space: dict[str, optuna.distributions.BaseDistribution]) -> dict[str, Any]:
        return {}

    def sample_independent(self, study: optuna.Study, trial: optuna.trial.FrozenTrial, param_name: str,
                           param_distribution: optuna.distributions.BaseDistribution) -> Any:
        raise RuntimeError("the exhaustive sampler enumerates the space; it proposes no trials")


def check_enumerable(space: Mapping[str, ParamSpec], max_points: int) -> int:
    """The number of points of the space; a :class:`ConfigError` naming the key for a continuous knob or a
    space larger than ``max_points`` (before any work)."""
    for key, spec in space.items():
        if spec.type == "float" and spec.step is None:
            raise ConfigError(f"system.space.{key}: a continuous knob (float without step) cannot be enumerated; "
                              "give it a step or choices, or use another sampler")
    size = grid_size(dict(space))
    if size > max_points:
        sizes = {k: len(v) for k, v in grid_space(dict(space)).items()}
        raise ConfigError(f"search.max_points: the space has {size:,} points (knob sizes {sizes}), more than "
                          f"search.max_points={max_points:,}; narrow system.space or raise search.max_points")
    return size


@dataclass(frozen=True)
class Group:
    """One combination of the accuracy knobs, and what its measurement returned."""

    params: dict[str, Any]
    observed: Observed


@dataclass(frozen=True)
class Job:
    """What each worker needs to evaluate chunks of the hardware grid (pickled once per worker)."""

    system: System
    hw_names: tuple[str, ...]
    hw_values: tuple[np.ndarray, ...]
    groups: tuple[Group, ...]
    objectives: dict[str, str]
    constraints: dict[str, Bound]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(v) for v in self.hw_values)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1

    def params(self, group: int, flat: np.ndarray) -> dict[str, Any]:
        codes = np.unravel_index(flat, self.shape) if self.shape else ()
        out: dict[str, Any] = {n: v[c] for n, v, c in zip(self.hw_names, self.hw_values, codes, strict=True)}
        out.update(self.groups[group].params)
        return out


@dataclass
class Counts:
    enumerated: int = 0
    invalid: int = 0
    infeasible: int = 0
    feasible: int = 0

    def add(self, other: Counts) -> None:
        for k in ("enumerated", "invalid", "infeasible", "feasible"):
            setattr(self, k, getattr(self, k) + getattr(other, k))


@dataclass
class Front:
    """Non-dominated feasible points found so far: (group, flat hardware index) and objective values."""

    group: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    flat: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    values: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))

    def merged(self, other: Front, directions: Sequence[str]) -> Front:
        if len(self.flat) == 0:
            return other
        if len(other.flat) == 0:
            return self
        return _filtered(np.concatenate([self.group, other.group]), np.concatenate([self.flat, other.flat]),
                         np.vstack([self.values, other.values]), directions)


def _filtered(group: np.ndarray, flat: np.ndarray, values: np.ndarray, directions: Sequence[str]) -> Front:
    if len(flat) == 0:
        return Front(group, flat, values)
    keep = moocore.is_nondominated(to_minimisation(values, directions), keep_weakly=True)
    return Front(group[keep], flat[keep], values[keep])


def _metrics(job: Job, group: int, flat: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
    g = job.groups[group]
    point = job.system.complete(job.params(group, flat))
    evaluation = job.system.evaluate(point, g.observed.selection)
    n = len(flat)
    scalars = {k: np.full(n, float(np.asarray(v).reshape(-1)[0])) for k, v in g.observed.metrics.items()
               if np.size(v) == 1}
    return {**evaluation.metrics, **scalars}, evaluation.invalid


def chunk_front(job: Job, group: int, start: int, stop: int) -> tuple[Front, Counts]:
    """The feasible non-dominated points of one chunk of one group's hardware grid, and its counts."""
    flat = np.arange(start, stop, dtype=np.int64)
    metrics, invalid = _metrics(job, group, flat)
    assessed = assess_arrays(metrics, invalid, job.objectives, job.constraints)
    feasible = assessed.feasible
    counts = Counts(enumerated=len(flat), invalid=int((~assessed.valid).sum()),
                    infeasible=int((assessed.valid & ~feasible).sum()), feasible=int(feasible.sum()))
    directions = list(job.objectives.values())
    front = _filtered(np.full(int(feasible.sum()), group, dtype=np.int64), flat[feasible],
                      assessed.values[feasible], directions)
    return front, counts


_WORKER_JOB: list[Job] = []  # the job of a worker process (set once by its initializer)


def _init_worker(job: Job) -> None:
    _WORKER_JOB[:] = [job]
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def _run_chunk(task: tuple[int, int, int]) -> tuple[Front, Counts]:
    return chunk_front(_WORKER_JOB[0], *task)


def accuracy_knobs(system: System, space: Mapping[str, list[Any]], coupled: bool) -> tuple[str, ...]:
    """The space knobs that change the system's accuracy spec (probed one at a time from the defaults)."""
    if not coupled or system.accuracy_spec(system.complete({})) is None:
        return ()
    found = []
    for key, values in space.items():
        specs = {repr(system.accuracy_spec(system.complete({key: v}))) for v in values}
        if len(specs) > 1:
            found.append(key)
    return tuple(found)


@dataclass(frozen=True)
class Enumeration:
    """What an exhaustive run found: the Pareto points (space knob values), their objective values, and
    counts and timings for ``summary.json``."""

    params: list[dict[str, Any]]
    values: np.ndarray
    counts: dict[str, int]
    accuracy_knobs: tuple[str, ...]
    measure_s: float
    enumerate_s: float
    workers: int

    def describe(self) -> dict[str, Any]:
        rate = self.counts["enumerated"] / self.enumerate_s if self.enumerate_s > 0 else float("nan")
        return {**self.counts, "accuracy_knobs": list(self.accuracy_knobs), "accuracy_s": self.measure_s,
                "enumerate_s": self.enumerate_s, "points_per_s": rate, "workers": self.workers,
                "trials_csv": "the exact Pareto set only (every other point is counted here, not recorded)"}


def measure_groups(system: System, problem: Problem, grid: Mapping[str, list[Any]], knobs: Sequence[str],
                   progress: bool) -> list[Group]:
    """Each accuracy group's measurement (once per distinct spec, through the oracle and its cache)."""
    combos = list(itertools.product(*(grid[k] for k in knobs))) if knobs else [()]
    groups = []
    for combo in tqdm(combos, desc="accuracy groups", unit="key", disable=not progress or not knobs):
        params = dict(zip(knobs, combo, strict=True))
        point = system.complete(params)
        observed = problem.extra(point) if problem.providers and not system.invalid(point)[0] else Observed()
        groups.append(Group(params, Observed({k: np.asarray(v) for k, v in observed.metrics.items()},
                                             observed.selection)))
    return groups


def verify_groups(job: Job, knobs: Sequence[str], rng: np.random.Generator, samples: int = 8) -> None:
    """Every group's accuracy spec is the same at random hardware points as at the defaults (otherwise a
    hardware knob changes the measured accuracy, and grouping would be wrong)."""
    if not knobs:
        return
    for g, group in enumerate(job.groups):
        ref = repr(job.system.accuracy_spec(job.system.complete(group.params)))
        flat = rng.integers(0, job.size, size=min(samples, job.size))
        params = job.params(g, flat)
        for i in range(len(flat)):
            point = job.system.complete({k: (v[i] if isinstance(v, np.ndarray) else v) for k, v in params.items()})
            if repr(job.system.accuracy_spec(point)) != ref:
                raise RuntimeError(f"accuracy spec of group {group.params} depends on hardware knobs "
                                   f"{list(job.hw_names)}: cannot enumerate by accuracy group")


def enumerate_front(system: System, problem: Problem, space: Mapping[str, ParamSpec], *,
                    chunk_points: int = DEFAULT_CHUNK, workers: int = 1, progress: bool = True,
                    seed: int = 0) -> Enumeration:
    """The exact constrained Pareto set of ``space`` (every knob discrete)."""
    grid = grid_space(dict(space))
    knobs = accuracy_knobs(system, grid, bool(problem.providers))
    t0 = time.perf_counter()
    groups = measure_groups(system, problem, grid, knobs, progress)
    measure_s = time.perf_counter() - t0
    hw_names = tuple(k for k in grid if k not in knobs)
    job = Job(system, hw_names, tuple(np.asarray(grid[k]) for k in hw_names), tuple(groups),
              dict(problem.objectives), dict(problem.constraints))
    verify_groups(job, knobs, np.random.default_rng(seed))
    tasks = [(g, s, min(s + chunk_points, job.size)) for g in range(len(groups))
             for s in range(0, job.size, chunk_points)]
    directions = list(problem.objectives.values())
    front, counts = Front(), Counts()
    t1 = time.perf_counter()
    bar = tqdm(total=job.size * len(groups), desc="enumerate", unit="pt", unit_scale=True, disable=not progress)
    try:
        if workers > 1 and len(tasks) > 1:
            ctx = multiprocessing.get_context("fork")
            with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker,
                                     initargs=(job,)) as pool:
                for part, c in pool.map(_run_chunk, tasks):
                    front = front.merged(part, directions)
                    counts.add(c)
                    bar.update(c.enumerated)
        else:
            for task in tasks:
                part, c = chunk_front(job, *task)
                front = front.merged(part, directions)
                counts.add(c)
                bar.update(c.enumerated)
    finally:
        bar.close()
    enumerate_s = time.perf_counter() - t1
    order = np.lexsort((front.flat, front.group))
    params = []
    for g, f in zip(front.group[order], front.flat[order], strict=True):
        p = job.params(int(g), np.array([f]))
        params.append({k: (v[0].item() if isinstance(v, np.ndarray) else v) for k, v in p.items()})
    counts_d = {"enumerated": counts.enumerated, "invalid": counts.invalid, "infeasible": counts.infeasible,
                "feasible": counts.feasible, "pareto": len(params), "accuracy_groups": len(groups)}
    return Enumeration(params, front.values[order], counts_d, knobs, measure_s, enumerate_s, workers)


def record(study: optuna.Study, enumeration: Enumeration, system: System, problem: Problem,
           space: Mapping[str, ParamSpec]) -> None:
    """The Pareto points as COMPLETE trials of the study (params, objective values, constraints, metrics),
    so that tables, plots and exports treat them like sampled trials."""
    dists = distributions(dict(space))
    for params in enumeration.params:
        point = system.complete(params)
        observed = problem.extra(point) if problem.providers else Observed()
        (result,) = assess(system.evaluate(point, observed.selection), problem.objectives, problem.constraints,
                           observed.metrics)
        study.add_trial(optuna.trial.create_trial(
            params=params, distributions=dists, values=list(result.values),
            constraints=result.constraints, user_attrs=attributes(result)))
