"""Pareto filtering and hypervolume.

Hypervolume normalisation (stated in every ``summary.json``): each objective is turned into a
minimisation (maximised ones negated), then scaled to [0, 1] by the minimum and maximum over the
feasible trials of the study; the reference point is 1.1 in every objective. The value is computed
exactly with moocore.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import moocore
import numpy as np

REFERENCE = 1.1


def to_minimisation(values: np.ndarray, directions: Sequence[str]) -> np.ndarray:
    sign = np.array([1.0 if d == "minimize" else -1.0 for d in directions])
    return np.asarray(values, dtype=np.float64) * sign


def non_dominated(values: np.ndarray, directions: Sequence[str]) -> np.ndarray:
    """Boolean mask of points no other point dominates (ties are all kept, as Optuna does)."""
    pts = to_minimisation(values, directions)
    n = pts.shape[0]
    keep = np.ones(n, dtype=bool)
    for i in range(n):
        if not keep[i]:
            continue
        le = np.all(pts <= pts[i], axis=1)
        lt = np.any(pts < pts[i], axis=1)
        if np.any(le & lt):
            keep[i] = False
    return keep


@dataclass(frozen=True)
class Hypervolume:
    value: float
    ideal: list[float]
    nadir: list[float]
    reference: float = REFERENCE

    def describe(self) -> str:
        return (f"objectives converted to minimisation, scaled to [0,1] by the feasible trials' min {self.ideal}"
                f" and max {self.nadir}; reference point {self.reference} in every objective")


def hypervolume(front: np.ndarray, feasible: np.ndarray, directions: Sequence[str]) -> Hypervolume:
    """Normalised hypervolume of ``front`` with bounds taken from all ``feasible`` points."""
    if len(front) == 0 or len(feasible) == 0:
        return Hypervolume(0.0, [], [])
    f_all = to_minimisation(feasible, directions)
    lo, hi = f_all.min(axis=0), f_all.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    pts = (to_minimisation(front, directions) - lo) / span
    value = float(moocore.hypervolume(pts, ref=np.full(pts.shape[1], REFERENCE)))
    return Hypervolume(value, lo.tolist(), hi.tolist())
