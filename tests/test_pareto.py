"""Pareto filtering and the quality indicators against independent brute force, with maximised objectives,
in the fixed box of the config (never the trials' own range)."""

from __future__ import annotations

import numpy as np
import pytest

from dse.config import ConfigError, Reference
from dse.pareto import Box, epsilon_additive, hypervolume, hypervolume_history, igd_plus, non_dominated
from tests import brute

DIRECTIONS = ["minimize", "maximize", "minimize"]
OBJECTIVES = {"a": "minimize", "b": "maximize", "c": "minimize"}
BOX = Box.of(OBJECTIVES, {"a": Reference(worst=12.0, best=0.0), "b": Reference(worst=-1.0, best=11.0),
                          "c": Reference(worst=10.0, best=-2.0)})


def scaled(values: np.ndarray) -> list[list[float]]:
    """The stated scaling, by hand: (value - best) / (worst - best) per objective."""
    best, worst = np.array([0.0, 11.0, -2.0]), np.array([12.0, -1.0, 10.0])
    return ((values - best) / (worst - best)).tolist()


@pytest.mark.parametrize("seed", range(5))
def test_non_dominated_equals_the_definition(seed: int) -> None:
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 6, size=(40, 3)).astype(float)  # small integers: ties and duplicates
    assert non_dominated(values, DIRECTIONS).tolist() == brute.front_mask(values.tolist(), DIRECTIONS)


@pytest.mark.parametrize("seed", range(5))
def test_hypervolume_equals_cell_enumeration_in_the_fixed_box(seed: int) -> None:
    rng = np.random.default_rng(seed)
    points = rng.uniform(0, 10, size=(12, 3))
    front = points[np.array(brute.front_mask(points.tolist(), DIRECTIONS))]
    expected = brute.hypervolume(scaled(front), [1.0, 1.0, 1.0])
    assert hypervolume(front, BOX) == pytest.approx(expected, rel=1e-12)
    assert 0 < hypervolume(front, BOX) < 1


def test_hypervolume_does_not_depend_on_other_trials() -> None:
    """The old normalisation moved with the run's own min/max; the fixed box does not."""
    front = np.array([[1.0, 5.0, 1.0], [2.0, 7.0, 2.0]])
    assert hypervolume(front, BOX) == hypervolume(front.copy(), BOX)
    better = front.copy()
    better[0, 1] = 6.0  # better in the maximised objective
    assert hypervolume(better, BOX) > hypervolume(front, BOX)


def test_points_beyond_the_box_add_nothing() -> None:
    inside = np.array([[1.0, 5.0, 1.0]])
    outside = np.array([[13.0, 10.0, -1.0]])  # beyond worst in a
    assert hypervolume(np.vstack([inside, outside]), BOX) == hypervolume(inside, BOX)
    assert hypervolume(outside, BOX) == 0.0


@pytest.mark.parametrize("seed", range(5))
def test_igd_plus_and_epsilon_equal_their_definitions(seed: int) -> None:
    rng = np.random.default_rng(seed)
    reference = rng.uniform(0, 10, size=(15, 3))
    reference = reference[np.array(brute.front_mask(reference.tolist(), DIRECTIONS))]
    front = rng.uniform(0, 10, size=(6, 3))
    assert igd_plus(front, reference, BOX) == pytest.approx(brute.igd_plus(scaled(front), scaled(reference)))
    assert epsilon_additive(front, reference, BOX) == pytest.approx(
        brute.epsilon_additive(scaled(front), scaled(reference)))
    assert igd_plus(reference, reference, BOX) == pytest.approx(0.0, abs=1e-12)
    assert epsilon_additive(reference, reference, BOX) <= 1e-12


def test_history_is_monotone_and_ends_at_the_front() -> None:
    rng = np.random.default_rng(3)
    values = rng.uniform(0, 10, size=(30, 3))
    feasible = rng.uniform(size=30) < 0.7
    hist = hypervolume_history(values, feasible, BOX)
    assert np.all(np.diff(hist) >= 0)
    front = values[feasible][non_dominated(values[feasible], DIRECTIONS)]
    assert hist[-1] == pytest.approx(hypervolume(front, BOX))


def test_box_needs_a_reference_per_objective_on_the_right_side() -> None:
    with pytest.raises(ConfigError, match=r"system\.reference\.c.*no hypervolume reference"):
        Box.of(OBJECTIVES, {"a": Reference(worst=1.0), "b": Reference(worst=0.0, best=1.0)})
    with pytest.raises(ConfigError, match=r"system\.reference\.b.*best .* above worst"):
        Box.of({"b": "maximize"}, {"b": Reference(worst=5.0, best=1.0)})
