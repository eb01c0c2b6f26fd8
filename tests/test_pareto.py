"""Pareto filtering and hypervolume against independent brute force, with maximised objectives."""

from __future__ import annotations

import numpy as np
import pytest

from dse.pareto import REFERENCE, hypervolume, non_dominated
from tests import brute

DIRECTIONS = ["minimize", "maximize", "minimize"]


@pytest.mark.parametrize("seed", range(5))
def test_non_dominated_equals_the_definition(seed: int) -> None:
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 6, size=(40, 3)).astype(float)  # small integers: ties and duplicates
    assert non_dominated(values, DIRECTIONS).tolist() == brute.front_mask(values.tolist(), DIRECTIONS)


@pytest.mark.parametrize("seed", range(5))
def test_hypervolume_equals_cell_enumeration(seed: int) -> None:
    rng = np.random.default_rng(seed)
    feasible = rng.uniform(0, 10, size=(12, 3))
    front = feasible[np.array(brute.front_mask(feasible.tolist(), DIRECTIONS))]
    # The stated normalisation, done by hand: maximised objectives negated, then scaled by the feasible
    # trials' min and max into [0, 1]; reference point 1.1 in every objective.
    sign = np.array([1.0, -1.0, 1.0])
    lo, hi = (feasible * sign).min(axis=0), (feasible * sign).max(axis=0)
    scaled = ((front * sign - lo) / (hi - lo)).tolist()
    expected = brute.hypervolume(scaled, [REFERENCE] * 3)
    hv = hypervolume(front, feasible, DIRECTIONS)
    assert hv.value == pytest.approx(expected, rel=1e-12)
    assert hv.value > 0


def test_hypervolume_grows_when_a_maximised_objective_improves() -> None:
    feasible = np.array([[1.0, 5.0, 1.0], [2.0, 1.0, 2.0], [3.0, 3.0, 0.5]])
    base = hypervolume(feasible, feasible, DIRECTIONS).value
    better = feasible.copy()
    better[0, 1] = 4.9  # first point a little worse in the maximised objective, bounds unchanged
    assert hypervolume(better, np.vstack([feasible, better]), DIRECTIONS).value < base
