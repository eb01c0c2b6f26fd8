"""The Monte Carlo itself: candidate designs re-evaluated under joint draws, and what each draw's front says.

Per draw every candidate is evaluated by the cost model (vectorised over the candidates), its constraints are
checked, and the draw's front is the set of candidates feasible in that draw that no other feasible one dominates
(weakly non-dominated, as the search keeps its Pareto set). A design's P(Pareto) is the share of draws whose front
holds it, P(feasible) the share in which it meets every constraint. Accuracy enters as measured: it is the same in
every draw. Draws are split over processes (each builds the system of its draws from the run's config).
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import moocore
import numpy as np
from tqdm import tqdm

from dse.config import Bound, Config
from dse.objectives import Assessed, Observed, assess_arrays
from dse.pareto import to_minimisation
from dse.robust.ranges import configured
from dse.systems import Evaluation, System, make_system
from dse.uncertainty import Uncertain

CHUNK = 1 << 17  # candidates per vectorised cost-model call


@dataclass(frozen=True)
class Block:
    """Candidates that share one accuracy measurement: every knob as an array (one value per candidate) and what
    the problem's providers observed for them."""

    params: dict[str, np.ndarray]
    observed: Observed = field(default_factory=Observed)

    def __len__(self) -> int:
        return len(next(iter(self.params.values()))) if self.params else 0

    def take(self, idx: np.ndarray) -> Block:
        return Block({k: v[idx] for k, v in self.params.items()}, self.observed)


def sizes(blocks: Sequence[Block]) -> np.ndarray:
    return np.array([len(b) for b in blocks], dtype=np.int64)


def subset(blocks: Sequence[Block], idx: np.ndarray) -> list[Block]:
    """The candidates ``idx`` (indices into the blocks' concatenation, sorted), as blocks."""
    edges = np.concatenate([[0], np.cumsum(sizes(blocks))])
    out = []
    for b, lo, hi in zip(blocks, edges[:-1], edges[1:], strict=True):
        mine = idx[(idx >= lo) & (idx < hi)] - lo
        if len(mine):
            out.append(b.take(mine))
    return out


def _assess(ev: Evaluation, observed: Observed, n: int, objectives: Mapping[str, str],
            constraints: Mapping[str, Bound]) -> Assessed:
    extra = {k: np.broadcast_to(np.asarray(v).reshape(-1), (n,)) for k, v in observed.metrics.items()}
    return assess_arrays({**ev.metrics, **extra}, ev.invalid, objectives, constraints)


def _assessed(ev: Evaluation, observed: Observed, n: int, objectives: Mapping[str, str],
              constraints: Mapping[str, Bound]) -> tuple[np.ndarray, np.ndarray]:
    assessed = _assess(ev, observed, n, objectives, constraints)
    return assessed.values, assessed.feasible


def _stacked(parts: list[tuple[np.ndarray, np.ndarray]], k: int) -> tuple[np.ndarray, np.ndarray]:
    if not parts:
        return np.zeros((0, k)), np.zeros(0, dtype=bool)
    return np.vstack([v for v, _f in parts]), np.concatenate([f for _v, f in parts])


def within_slack(system: System, block: Block, objectives: Mapping[str, str], constraints: Mapping[str, Bound],
                 slack: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per point of ``block`` evaluated as configured: its objective values, whether it is feasible, and whether it
    is a candidate for the draws: valid, every measured constraint met (the block's accuracy is the same in every
    draw) and every other bound missed by at most ``slack`` of its value (a draw of the cost model's inputs can make
    such a point feasible)."""
    ev = system.evaluate(system.complete(block.params), block.observed.selection)
    assessed = _assess(ev, block.observed, len(block), objectives, constraints)
    near = assessed.valid.copy()
    for m, v in assessed.constraints.items():
        near &= v <= (0.0 if m in block.observed.metrics else slack)
    return assessed.values, assessed.feasible, near


def _nondominated(values: np.ndarray) -> np.ndarray:
    """moocore's weakly non-dominated mask (minimisation), on the objectives that vary among ``values`` (a constant
    one decides nothing)."""
    varying = np.flatnonzero(np.ptp(values, axis=0) > 0) if len(values) else np.zeros(0, dtype=np.int64)
    if len(varying) == 0:
        return np.ones(len(values), dtype=bool)
    return moocore.is_nondominated(np.ascontiguousarray(values[:, varying]), keep_weakly=True)


def draw_front(values: np.ndarray, feasible: np.ndarray, directions: Sequence[str],
               edges: Sequence[int] | None = None) -> np.ndarray:
    """Indices of the draw's front: the feasible candidates no other feasible one dominates. ``edges``: where the
    blocks start and end (candidates of one block share their measured accuracy): each block's own front first, on
    the objectives that vary within it, then the front of their union (the same set: a point dominated within its
    block is dominated, and domination is transitive)."""
    mins = to_minimisation(values, directions)
    bounds = list(edges) if edges is not None else [0, len(values)]
    pool = []
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        idx = lo + np.flatnonzero(feasible[lo:hi])
        if len(idx):
            pool.append(idx[_nondominated(mins[idx])])
    if not pool:
        return np.zeros(0, dtype=np.int64)
    idx = np.concatenate(pool)
    return idx[_nondominated(mins[idx])] if len(pool) > 1 else idx


@dataclass
class Tally:
    """Counts over draws: per candidate how often it was on the front and feasible; per draw the front's points
    projected on the attainment pair (each weakly non-dominated in those two objectives)."""

    draws: int
    pareto: np.ndarray
    feasible: np.ndarray
    fronts: list[np.ndarray]

    def merged(self, other: Tally) -> Tally:
        return Tally(self.draws + other.draws, self.pareto + other.pareto, self.feasible + other.feasible,
                     self.fronts + other.fronts)


def tally(evaluate: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]], draws: np.ndarray, n: int,
          directions: Sequence[str], pair: tuple[int, int], progress: bool = False,
          edges: Sequence[int] | None = None) -> Tally:
    """Run ``evaluate`` (a draw's parameter values -> objective values and feasibility of the ``n`` candidates) at
    every row of ``draws`` (``edges``: the candidates' blocks, see :func:`draw_front`)."""
    pareto = np.zeros(n, dtype=np.int64)
    feas = np.zeros(n, dtype=np.int64)
    fronts = []
    pair_dirs = [directions[pair[0]], directions[pair[1]]]
    for row in tqdm(draws, desc="draws", unit="draw", disable=not progress):
        values, feasible = evaluate(row)
        front = draw_front(values, feasible, directions, edges)
        pareto[front] += 1
        feas += feasible
        pts = to_minimisation(values[front][:, list(pair)], pair_dirs)
        fronts.append(pts[moocore.is_nondominated(pts, keep_weakly=True)] if len(pts) else pts)
    return Tally(len(draws), pareto, feas, fronts)


@dataclass(frozen=True)
class Job:
    """What a process needs to evaluate candidates at draws: the run's config, the drawn parameters, the
    candidates and the problem's objectives and constraints (pickled once per worker)."""

    cfg: Config
    params: tuple[Uncertain, ...]
    blocks: tuple[Block, ...]
    objectives: dict[str, str]
    constraints: dict[str, Bound]

    @property
    def n(self) -> int:
        return int(sizes(self.blocks).sum())

    @property
    def edges(self) -> list[int]:
        return [0, *np.cumsum(sizes(self.blocks)).tolist()]

    @cached_property
    def prepared(self) -> list[Any]:
        """Each block's draw-invariant structure (System.prepare), made once per process."""
        system = make_system(self.cfg)
        return [system.prepare(system.complete(b.params)) for b in self.blocks]

    def evaluate(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every candidate's objective values and feasibility with the drawn parameters at ``values``: the system
        built from the config at that draw (its technology table and mechanism), the drawn hardware defaults set at
        every candidate."""
        system = make_system(configured(self.cfg, self.params, values))
        hw = {p.key: float(v) for p, v in zip(self.params, values, strict=True) if p.kind == "hw"}
        return _stacked([_assessed(system.evaluate_prepared(prep, hw, b.observed.selection), b.observed, len(b),
                                   self.objectives, self.constraints)
                         for b, prep in zip(self.blocks, self.prepared, strict=True)], len(self.objectives))


_JOB: list[Job] = []


def _init(job: Job) -> None:
    _JOB[:] = [job]
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def _tally_part(args: tuple[np.ndarray, tuple[int, int]]) -> Tally:
    draws, pair = args
    job = _JOB[0]
    return tally(job.evaluate, draws, job.n, list(job.objectives.values()), pair, edges=job.edges)


def run_draws(job: Job, draws: np.ndarray, pair: tuple[int, int], workers: int = 1, progress: bool = True
              ) -> Tally:
    """:func:`tally` of ``job`` at ``draws``, split in order over ``workers`` processes (the counts do not depend
    on the split)."""
    directions = list(job.objectives.values())
    if workers <= 1 or len(draws) < 2:
        return tally(job.evaluate, draws, job.n, directions, pair, progress, job.edges)
    parts = [p for p in np.array_split(draws, min(len(draws), 4 * workers)) if len(p)]
    out = Tally(0, np.zeros(job.n, dtype=np.int64), np.zeros(job.n, dtype=np.int64), [])
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("fork"),
                             initializer=_init, initargs=(job,)) as pool:
        bar = tqdm(total=len(draws), desc="draws", unit="draw", disable=not progress)
        for part, result in zip(parts, pool.map(_tally_part, [(p, pair) for p in parts]), strict=True):
            out = out.merged(result)
            bar.update(len(part))
        bar.close()
    return out


def spread(job: Job, draws: np.ndarray, idx: np.ndarray, percentiles: Sequence[float]) -> np.ndarray:
    """Percentiles over the draws of every objective of the candidates ``idx``: [len(percentiles), len(idx),
    objectives] (NaN where a draw leaves a candidate without a value)."""
    sub = Job(job.cfg, job.params, tuple(subset(job.blocks, idx)), job.objectives, job.constraints)
    stack = np.stack([sub.evaluate(row)[0] for row in draws]) if len(draws) else np.zeros((0, len(idx), 0))
    return np.nanpercentile(stack, list(percentiles), axis=0)


def attainment(fronts: Sequence[np.ndarray], percentiles: Sequence[float]) -> np.ndarray:
    """The empirical attainment surfaces of the draws' fronts (moocore.eaf, in minimisation form): rows of
    (objective a, objective b, percentile)."""
    pts = [f for f in fronts if len(f)]
    if not pts:
        return np.zeros((0, 3))
    sets = np.concatenate([np.full(len(f), i + 1) for i, f in enumerate(pts)])
    return np.asarray(moocore.eaf(np.vstack(pts), sets, percentiles=list(percentiles)))


def staircase(points: np.ndarray, upper: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """The attainment surface through ``points`` (two objectives, minimisation form) as a line: from the top of the
    plot down to the first point, then alternately right and down through every point, out to the right edge
    (``upper``: the plot's largest values of the two objectives)."""
    if len(points) == 0:
        return np.zeros(0), np.zeros(0)
    pts = points[np.argsort(points[:, 0])]
    xs = np.repeat(pts[:, 0], 2)
    ys = np.empty(2 * len(pts))
    ys[0::2] = np.concatenate([[max(upper[1], pts[0, 1])], pts[:-1, 1]])
    ys[1::2] = pts[:, 1]
    return np.append(xs, max(upper[0], pts[-1, 0])), np.append(ys, pts[-1, 1])


def summary_counts(t: Tally, nominal_front: np.ndarray, thresholds: Sequence[float]) -> dict[str, Any]:
    p = t.pareto / max(t.draws, 1)
    return {"draws": t.draws, "candidates": len(p), "nominal_front": int(nominal_front.sum()),
            "ever_pareto": int((t.pareto > 0).sum()),
            **{f"robust_at_{th:g}": int((p >= th).sum()) for th in thresholds},
            **{f"nominal_front_robust_at_{th:g}": int(((p >= th) & nominal_front).sum()) for th in thresholds}}
