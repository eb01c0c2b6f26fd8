"""Independent reference implementations for the tests: Pareto dominance by its definition and the
exact hypervolume by cell enumeration (no code shared with dse.pareto or moocore)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence


def dominates(a: Sequence[float], b: Sequence[float], directions: Sequence[str]) -> bool:
    """a is at least as good as b in every objective and better in one (per each objective's direction)."""
    better = [x < y if d == "minimize" else x > y for x, y, d in zip(a, b, directions, strict=True)]
    worse = [x > y if d == "minimize" else x < y for x, y, d in zip(a, b, directions, strict=True)]
    return not any(worse) and any(better)


def front_mask(points: Sequence[Sequence[float]], directions: Sequence[str]) -> list[bool]:
    return [not any(dominates(q, p, directions) for q in points) for p in points]


def hypervolume(points: Sequence[Sequence[float]], reference: Sequence[float]) -> float:
    """Volume dominated by ``points`` (minimisation) and bounded by ``reference``: the grid of all point
    coordinates cut into cells, each counted when some point is <= its lower corner in every axis."""
    pts = [p for p in points if all(x < r for x, r in zip(p, reference, strict=True))]
    if not pts:
        return 0.0
    axes = [sorted({p[i] for p in pts} | {reference[i]}) for i in range(len(reference))]
    total = 0.0
    for cell in itertools.product(*(range(len(a) - 1) for a in axes)):
        lower = [axes[i][c] for i, c in enumerate(cell)]
        if any(all(p[i] <= lower[i] for i in range(len(lower))) for p in pts):
            volume = 1.0
            for i, c in enumerate(cell):
                volume *= axes[i][c + 1] - axes[i][c]
            total += volume
    return total


def igd_plus(front: Sequence[Sequence[float]], reference: Sequence[Sequence[float]]) -> float:
    """IGD+ (Ishibuchi et al., EMO 2015), minimisation: mean over reference points of the distance to the
    nearest front point, counting only the coordinates where the front point is worse."""
    def d(a: Sequence[float], r: Sequence[float]) -> float:
        return sum(max(x - y, 0.0) ** 2 for x, y in zip(a, r, strict=True)) ** 0.5

    return sum(min(d(a, r) for a in front) for r in reference) / len(reference)


def epsilon_additive(front: Sequence[Sequence[float]], reference: Sequence[Sequence[float]]) -> float:
    """Additive epsilon (Zitzler et al., IEEE TEC 2003), minimisation: the smallest shift that lets every
    reference point be weakly dominated by some shifted front point."""
    return max(min(max(x - y for x, y in zip(a, r, strict=True)) for a in front) for r in reference)
