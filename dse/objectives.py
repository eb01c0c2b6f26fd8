"""Objective and constraint assembly: metrics from any number of providers -> what Optuna is told.

Providers are the system's cost model today; a measured-accuracy oracle is just another provider
returning metrics for the same design points, so it plugs in without touching the cost model.

Constraint values follow Optuna's convention (<= 0 satisfied) and are relative violations,
``(metric - max) / |max|`` or ``(min - metric) / |min|`` (absolute when the bound is 0), so that
Optuna's constrained domination can add violations of metrics with different units.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from dse.config import Bound
from dse.systems import Evaluation
from workloads.accuracy.measured import SelectionStats


@dataclass(frozen=True)
class Observed:
    """What a problem's providers measured of design points: metric arrays (one value per point, or one for all),
    and where the points share one accuracy measurement, the KV selection it observed (which the cost model then
    uses instead of its published table)."""

    metrics: dict[str, np.ndarray] = field(default_factory=dict)
    selection: SelectionStats | None = None

    def merged(self, other: Observed) -> Observed:
        return Observed({**self.metrics, **other.metrics},
                        other.selection if other.selection is not None else self.selection)


class Provider(Protocol):
    """A metric provider: design points (knob -> array) -> what it measured of them; ``identity()``: what its
    metrics mean, as a section name -> plain data (a resumed study must have the same)."""

    def __call__(self, points: dict[str, Any]) -> Observed: ...

    def identity(self) -> dict[str, Any]: ...

INVALID_KEY = "design_valid"


@dataclass(frozen=True)
class Assessment:
    """Everything recorded for one design point."""

    values: tuple[float, ...]
    constraints: dict[str, float]
    metrics: dict[str, float]
    invalid_reason: str = ""
    violated: tuple[str, ...] = field(default_factory=tuple)

    @property
    def feasible(self) -> bool:
        return not self.invalid_reason and all(v <= 0 for v in self.constraints.values())


def constraint_value(value: float, bound: Bound) -> float:
    """Largest relative violation of ``bound`` (<= 0 when satisfied)."""
    if not math.isfinite(value):
        return 1.0
    parts: list[float] = []
    if bound.max is not None:
        parts.append((value - bound.max) / (abs(bound.max) or 1.0))
    if bound.min is not None:
        parts.append((bound.min - value) / (abs(bound.min) or 1.0))
    return max(parts)


def constraint_values(values: np.ndarray, bound: Bound) -> np.ndarray:
    """:func:`constraint_value` over an array of metric values."""
    v = np.asarray(values, dtype=np.float64)
    parts = []
    if bound.max is not None:
        parts.append((v - bound.max) / (abs(bound.max) or 1.0))
    if bound.min is not None:
        parts.append((bound.min - v) / (abs(bound.min) or 1.0))
    return np.where(np.isfinite(v), np.max(parts, axis=0), 1.0)


@dataclass(frozen=True)
class Assessed:
    """:func:`assess_arrays`: objective values (P x objectives, as told to Optuna), constraint values
    (P x constraints, <= 0 satisfied) and which points are valid and feasible."""

    values: np.ndarray
    constraints: dict[str, np.ndarray]
    valid: np.ndarray

    @property
    def feasible(self) -> np.ndarray:
        ok = self.valid.copy()
        for v in self.constraints.values():
            ok &= v <= 0
        return ok


def assess_arrays(metrics: Mapping[str, np.ndarray], invalid: np.ndarray, objectives: Mapping[str, str],
                  constraints: Mapping[str, Bound]) -> Assessed:
    """Objectives and constraints of many points at once (the exhaustive enumeration's inner loop)."""
    n = len(invalid)
    values = np.column_stack([np.broadcast_to(np.asarray(metrics.get(m, np.nan), dtype=np.float64), (n,))
                              for m in objectives]) if objectives else np.zeros((n, 0))
    valid = (np.asarray(invalid) == "") & np.all(np.isfinite(values), axis=1)
    cons = {m: constraint_values(np.broadcast_to(np.asarray(metrics.get(m, np.nan), dtype=np.float64), (n,)), b)
            for m, b in constraints.items()}
    return Assessed(values, cons, valid)


def assess(evaluation: Evaluation, objectives: Mapping[str, str], constraints: Mapping[str, Bound],
           extra: Mapping[str, np.ndarray] | None = None) -> list[Assessment]:
    """One :class:`Assessment` per design point of ``evaluation`` (plus metrics in ``extra``)."""
    metrics = {**evaluation.metrics, **{k: v for k, v in (extra or {}).items() if np.ndim(v) <= 1
                                        and np.size(v) == len(evaluation.invalid)}}
    n = len(evaluation.invalid)
    out: list[Assessment] = []
    for i in range(n):
        point = {k: float(np.asarray(v).reshape(-1)[i]) for k, v in metrics.items()}
        reason = str(evaluation.invalid[i])
        cons: dict[str, float] = {INVALID_KEY: 1.0 if reason else 0.0}
        for metric, bound in constraints.items():
            cons[metric] = constraint_value(point.get(metric, math.nan), bound)
        worst = tuple({"minimize": math.inf, "maximize": -math.inf}[d] for d in objectives.values())
        if reason:
            values = worst
        else:
            values = tuple(point.get(m, math.nan) for m in objectives)
            bad = [m for m, v in zip(objectives, values, strict=True) if not math.isfinite(v)]
            if bad:  # e.g. a quantisation that makes the proxy model diverge
                reason = f"non-finite objective(s) {bad}"
                cons[INVALID_KEY] = 1.0
                values = worst
        violated = tuple(k for k, v in cons.items() if v > 0)
        out.append(Assessment(values=values, constraints=cons, metrics=point, invalid_reason=reason,
                              violated=violated))
    return out


def attributes(result: Assessment) -> dict[str, Any]:
    """The user attributes a trial records: every metric (non-finite ones as text), feasibility, and why
    an invalid point is invalid."""
    attrs: dict[str, Any] = {"metrics": {k: v if math.isfinite(v) else str(v) for k, v in result.metrics.items()},
                             "feasible": result.feasible}  # one record for all metrics: one journal append
    if result.invalid_reason:
        attrs["invalid_reason"] = result.invalid_reason
    return attrs


ACCURACY_METRICS = {
    "ppl": "perplexity of the proxy model under the design's quantisation / KV selection [-]",
    "ppl_increase": "perplexity increase over the unquantised, dense proxy model [-]",
    "mean_selected_measured": "KV selection: mean selected tokens per sparse layer and row on the proxy [tokens]",
    "accuracy_screened": "1: ppl from the cheap screen only (infeasible for sure, full measurement skipped) [-]",
}


@dataclass(frozen=True)
class Problem:
    """What the search optimises: objectives (metric -> direction), constraints and extra providers."""

    objectives: dict[str, str]
    constraints: dict[str, Bound]
    providers: tuple[Provider, ...] = ()
    descriptions: dict[str, str] = field(default_factory=dict)

    def extra(self, points: dict[str, Any]) -> Observed:
        out = Observed()
        for provider in self.providers:
            out = out.merged(provider(points))
        return out


def build_problem(system_objectives: Mapping[str, str], user: Mapping[str, Bound], intrinsic: Mapping[str, Bound],
                  metrics: Mapping[str, str], accuracy: Provider | None = None, accuracy_objective: str | None = None,
                  max_ppl_increase: float | None = None) -> Problem:
    """The system's objectives and constraints, plus the measured-accuracy ones when coupled."""
    objectives = dict(system_objectives)
    constraints = merged_constraints(intrinsic, user)
    descriptions = dict(metrics)
    providers: tuple[Provider, ...] = ()
    if accuracy is not None:
        providers = (accuracy,)
        descriptions.update(ACCURACY_METRICS)
        if accuracy_objective is not None:
            objectives[accuracy_objective] = "minimize"
        if max_ppl_increase is not None:
            constraints["ppl_increase"] = Bound(max=max_ppl_increase)
    return Problem(objectives, constraints, providers, descriptions)


def merged_constraints(intrinsic: Mapping[str, Bound], user: Mapping[str, Bound]) -> dict[str, Bound]:
    """User bounds plus the system's intrinsic ones (intrinsic keys win: they are physical limits)."""
    return {**dict(user), **dict(intrinsic)}
