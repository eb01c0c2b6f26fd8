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

import contextlib
import itertools
import logging
import multiprocessing
import os
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import moocore
import numpy as np
import optuna
from tqdm import tqdm

from dse.config import Bound, ConfigError, ParamSpec
from dse.enumeration_state import COUNT_NAMES, Progress, Saver, identity, load
from dse.objectives import Observed, Problem, assess, assess_arrays, attributes
from dse.pareto import to_minimisation
from dse.results import design_key
from dse.space import distributions, grid_size, grid_space
from dse.stopping import Interrupted, StopRequest
from dse.systems import System

log = logging.getLogger(__name__)

DEFAULT_CHUNK = 1 << 17
POLL_S = 0.2  # the parent looks for finished chunks (and a signal) this often
STATE_FILE = "enumeration.npz"


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
    for signum in (signal.SIGINT, signal.SIGTERM):  # the parent stops the pool: a Ctrl-C to the group is its alone
        signal.signal(signum, signal.SIG_IGN)


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
    interrupted: int | None = None  # the signal that stopped it before every chunk was done
    chunks: tuple[int, int] = (0, 0)  # chunks done, chunks in all (0 in all: stopped while measuring accuracy)

    @property
    def partial(self) -> bool:
        return self.interrupted is not None

    def describe(self) -> dict[str, Any]:
        rate = self.counts["enumerated"] / self.enumerate_s if self.enumerate_s > 0 else float("nan")
        what = ("the exact Pareto set only (every other point is counted here, not recorded)" if not self.partial
                else f"a partial front: the Pareto set of the {self.chunks[0]} chunks done of {self.chunks[1]} "
                     "(resume with search.resume=true for the exact one)")
        return {**self.counts, "accuracy_knobs": list(self.accuracy_knobs), "accuracy_s": self.measure_s,
                "enumerate_s": self.enumerate_s, "points_per_s": rate, "workers": self.workers,
                "partial": self.partial, "chunks_done": self.chunks[0], "chunks_total": self.chunks[1],
                "trials_csv": what}


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


def _run_chunks(job: Job, tasks: Sequence[tuple[int, int, int]], todo: Sequence[int], workers: int,
                stop: StopRequest | None, finished: Callable[[int, Front, Counts], None]) -> None:
    """Evaluate ``tasks[i]`` for each ``i`` of ``todo`` (on ``workers`` processes), calling ``finished`` as each
    ends, until all are done or ``stop`` has a signal: then the chunks not started are cancelled and the running
    ones end (a chunk is a fraction of a second)."""
    if workers <= 1 or len(todo) <= 1:
        for i in todo:
            if stop is not None and stop.signum is not None:
                return
            finished(i, *chunk_front(job, *tasks[i]))
        return
    queue = iter(todo)
    pending: dict[Future[tuple[Front, Counts]], int] = {}
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("fork"),
                               initializer=_init_worker, initargs=(job,))
    try:
        for i in itertools.islice(queue, 2 * workers):  # a few queued per worker: none waits for the parent
            pending[pool.submit(_run_chunk, tasks[i])] = i
        while pending and (stop is None or stop.signum is None):
            done, _ = wait(pending, timeout=POLL_S, return_when=FIRST_COMPLETED)
            for future in done:
                finished(pending.pop(future), *future.result())
                nxt = next(queue, None)
                if nxt is not None:
                    pending[pool.submit(_run_chunk, tasks[nxt])] = nxt
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    for future, i in pending.items():  # stopped: the chunks that were running when the signal came count too
        if future.done() and not future.cancelled() and future.exception() is None:
            finished(i, *future.result())


def enumerate_front(system: System, problem: Problem, space: Mapping[str, ParamSpec], *,
                    chunk_points: int = DEFAULT_CHUNK, workers: int = 1, progress: bool = True,
                    seed: int = 0, state: Path | None = None, key: str = "",
                    stop: StopRequest | None = None) -> Enumeration:
    """The exact constrained Pareto set of ``space`` (every knob discrete). ``state``: where the chunks done are
    persisted as they finish (:mod:`dse.enumeration_state`) and read back from, so an interrupted enumeration
    continues; ``key``: what else identifies the problem (the study's problem record). ``stop``: a signal there
    ends the enumeration at the next chunk boundary with the front of the chunks done (``interrupted``)."""
    grid = grid_space(dict(space))
    knobs = accuracy_knobs(system, grid, bool(problem.providers))
    directions = list(problem.objectives.values())
    t0 = time.perf_counter()
    try:
        with stop.evaluating() if stop is not None else contextlib.nullcontext():
            groups = measure_groups(system, problem, grid, knobs, progress)
    except Interrupted as sig:  # the keys measured so far are in the accuracy store: a resume reuses them
        empty = dict.fromkeys((*COUNT_NAMES, "pareto", "accuracy_groups"), 0)
        return Enumeration([], np.zeros((0, len(directions))), empty, knobs, time.perf_counter() - t0, 0.0,
                           workers, interrupted=sig.signum, chunks=(0, 0))
    measure_s = time.perf_counter() - t0
    hw_names = tuple(k for k in grid if k not in knobs)
    job = Job(system, hw_names, tuple(np.asarray(grid[k]) for k in hw_names), tuple(groups),
              dict(problem.objectives), dict(problem.constraints))
    verify_groups(job, knobs, np.random.default_rng(seed))
    tasks = [(g, s, min(s + chunk_points, job.size)) for g in range(len(groups))
             for s in range(0, job.size, chunk_points)]
    ident = identity(key, hw_names, job.hw_values, [g.params for g in groups], job.objectives,
                     {k: (b.min, b.max) for k, b in job.constraints.items()}, chunk_points)
    saved = load(state, ident, len(tasks)) if state is not None else None
    prog = saved or Progress.empty(ident, len(tasks), len(directions))
    if saved is not None:
        log.info("resuming the enumeration: %d of %d chunks done (%s)", int(prog.done.sum()), len(tasks), state)
    front = Front(prog.group, prog.flat, prog.values)
    save_progress = Saver(state)
    spent = prog.enumerate_s
    t1 = time.perf_counter()
    bar = tqdm(total=job.size * len(groups), initial=sum(tasks[i][2] - tasks[i][1] for i in np.flatnonzero(prog.done)),
               desc="enumerate", unit="pt", unit_scale=True, disable=not progress)

    def finished(i: int, part: Front, c: Counts) -> None:
        nonlocal front
        front = front.merged(part, directions)
        prog.done[i] = True
        prog.group, prog.flat, prog.values = front.group, front.flat, front.values
        prog.counts = prog.counts + np.array([getattr(c, n) for n in COUNT_NAMES])
        prog.enumerate_s = spent + time.perf_counter() - t1
        save_progress(prog)
        bar.update(c.enumerated)

    try:
        _run_chunks(job, tasks, [i for i in range(len(tasks)) if not prog.done[i]], workers, stop, finished)
    finally:
        bar.close()
        save_progress(prog, force=True)
    order = np.lexsort((front.flat, front.group))
    params = []
    for g, f in zip(front.group[order], front.flat[order], strict=True):
        p = job.params(int(g), np.array([f]))
        params.append({k: (v[0].item() if isinstance(v, np.ndarray) else v) for k, v in p.items()})
    counts_d = {**{n: int(v) for n, v in zip(COUNT_NAMES, prog.counts, strict=True)},
                "pareto": len(params), "accuracy_groups": len(groups)}
    interrupted = None if prog.complete else (stop.signum if stop is not None else None)
    return Enumeration(params, front.values[order].reshape(len(params), len(directions)), counts_d, knobs,
                       measure_s, prog.enumerate_s, workers, interrupted=interrupted,
                       chunks=(int(prog.done.sum()), len(tasks)))


def record(study: optuna.Study, enumeration: Enumeration, system: System, problem: Problem,
           space: Mapping[str, ParamSpec]) -> None:
    """The Pareto points as COMPLETE trials of the study (params, objective values, constraints, metrics),
    so that tables, plots and exports treat them like sampled trials. A design the study already holds (a
    resumed enumeration that had finished) is not added again."""
    dists = distributions(dict(space))
    held = {design_key(t.params) for t in study.get_trials(deepcopy=False)}
    for params in enumeration.params:
        if design_key(params) not in held:
            study.add_trial(frozen_trial(system, problem, params, dists))


def frozen_trial(system: System, problem: Problem, params: dict[str, Any],
                 dists: Mapping[str, optuna.distributions.BaseDistribution]) -> optuna.trial.FrozenTrial:
    """One design as a finished trial (params, objective values, constraints, metrics), evaluated as configured."""
    point = system.complete(params)
    observed = problem.extra(point) if problem.providers else Observed()
    (result,) = assess(system.evaluate(point, observed.selection), problem.objectives, problem.constraints,
                       observed.metrics)
    return optuna.trial.create_trial(params=params, distributions=dict(dists), values=list(result.values),
                                     constraints=result.constraints, user_attrs=attributes(result))
