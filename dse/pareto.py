"""Pareto filtering and quality indicators in a fixed, stated box.

Every objective is scaled by its box from config (``system.reference`` and ``accuracy.reference``:
``best`` -> 0, ``worst`` -> 1, so maximised objectives turn into minimised ones), never by the run's own
trials: two runs, two samplers or two seeds of one problem get comparable numbers. In that space:

- hypervolume: of the front against the reference point (1, ..., 1), exact (moocore); 1 would be a point
  at ``best`` in every objective. Points beyond ``worst`` in any objective add nothing.
- IGD+ and the additive epsilon indicator against a reference front (another run's ``pareto.csv``, e.g.
  an exhaustive run): how far the front is from the reference front (0: it covers it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import moocore
import numpy as np

from dse.config import ConfigError, Reference


def to_minimisation(values: np.ndarray, directions: Sequence[str]) -> np.ndarray:
    sign = np.array([1.0 if d == "minimize" else -1.0 for d in directions])
    return np.asarray(values, dtype=np.float64) * sign


def non_dominated(values: np.ndarray, directions: Sequence[str]) -> np.ndarray:
    """Boolean mask of points no other point dominates (ties are all kept, as Optuna does)."""
    pts = to_minimisation(values, directions)
    if len(pts) == 0:
        return np.zeros(0, dtype=bool)
    return np.asarray(moocore.is_nondominated(pts, keep_weakly=True), dtype=bool)


@dataclass(frozen=True)
class Box:
    """The fixed box of the indicators: per objective its direction and reference (best, worst)."""

    objectives: tuple[str, ...]
    directions: tuple[str, ...]
    best: np.ndarray
    worst: np.ndarray

    @classmethod
    def of(cls, objectives: Mapping[str, str], references: Mapping[str, Reference]) -> Box:
        """The box of these objectives; a :class:`ConfigError` names an objective without a reference."""
        missing = [m for m in objectives if m not in references]
        if missing:
            raise ConfigError(f"system.reference.{missing[0]}: no hypervolume reference for objective {missing[0]!r}; "
                              f"add one, e.g. '+system.reference.{missing[0]}={{best: 0, worst: ...}}' (fixed, "
                              "so that runs compare)")
        for m, d in objectives.items():
            r = references[m]
            if (d == "minimize") != (r.best < r.worst):
                raise ConfigError(f"system.reference.{m}: best ({r.best}) must be "
                                  f"{'below' if d == 'minimize' else 'above'} worst ({r.worst}) for a {d}d objective")
        return cls(tuple(objectives), tuple(objectives.values()),
                   np.array([references[m].best for m in objectives], dtype=np.float64),
                   np.array([references[m].worst for m in objectives], dtype=np.float64))

    def scale(self, values: np.ndarray) -> np.ndarray:
        """Objective values in the box's coordinates: best -> 0, worst -> 1 (to be minimised)."""
        return (np.asarray(values, dtype=np.float64).reshape(-1, len(self.objectives)) - self.best) / (
            self.worst - self.best)

    def describe(self) -> dict[str, Any]:
        return {"objectives": {m: {"direction": d, "best": float(b), "worst": float(w)} for m, d, b, w in
                               zip(self.objectives, self.directions, self.best, self.worst, strict=True)},
                "scaling": "(value - best) / (worst - best) per objective, all minimised; hypervolume reference "
                           "point 1 in every scaled objective (fixed in config: system.reference, "
                           "accuracy.reference)"}


def hypervolume(front: np.ndarray, box: Box) -> float:
    """Hypervolume of ``front`` (objective values as recorded) in the box (0 for an empty front)."""
    pts = box.scale(front)
    pts = pts[np.all(pts < 1.0, axis=1)]
    if len(pts) == 0:
        return 0.0
    return float(moocore.hypervolume(pts, ref=np.ones(pts.shape[1])))


def igd_plus(front: np.ndarray, reference_front: np.ndarray, box: Box) -> float:
    """IGD+ of ``front`` to ``reference_front`` in the box (inf for an empty front)."""
    if len(front) == 0:
        return float("inf")
    return float(moocore.igd_plus(box.scale(front), ref=box.scale(reference_front)))


def epsilon_additive(front: np.ndarray, reference_front: np.ndarray, box: Box) -> float:
    """Smallest shift (in box units) that makes ``front`` weakly dominate ``reference_front``."""
    if len(front) == 0:
        return float("inf")
    return float(moocore.epsilon_additive(box.scale(front), ref=box.scale(reference_front)))


def hypervolume_history(values: np.ndarray, feasible: np.ndarray, box: Box) -> np.ndarray:
    """After each trial (rows in trial order), the hypervolume of the feasible trials so far."""
    out = np.zeros(len(values))
    front = np.zeros((0, len(box.objectives)))
    hv = 0.0
    lower = to_minimisation(values, box.directions)
    for i in range(len(values)):
        # a point dominated by (or equal to) one of the front changes neither the front nor its hypervolume
        if feasible[i] and not np.any(np.all(to_minimisation(front, box.directions) <= lower[i], axis=1)):
            cand = np.vstack([front, values[i:i + 1]])
            front = cand[non_dominated(cand, box.directions)]
            hv = hypervolume(front, box)
        out[i] = hv
    return out
