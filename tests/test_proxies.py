"""The proxy-agreement study's parts that need no model: the keys of a space, the best-value rule, the rank
correlation."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from dse.config import Config
from dse.studies.proxies import best_values, space_keys, spearman


def test_space_keys_are_the_distinct_accuracy_specs(make_cfg: Callable[..., Config]) -> None:
    tender = space_keys(make_cfg(["system=tender"]))
    assert len(tender) == 2 * 6 * 2  # bits x groups x chunk; the hardware knobs do not change the spec
    assert {(q.bits, q.groups, q.chunk) for _, q, _ in tender} == {
        (p["bits"], p["groups"], p["chunk"]) for p, _, _ in tender}
    infinigen = space_keys(make_cfg(["system=infinigen", "model=opt_6_7b"]))
    assert len(infinigen) == 3 * 4 * 2  # budget x alpha x partial_ratio
    assert all(kv.method == "infinigen" and kv.partial_cols == round(p["partial_ratio"] * 128)
               for p, _, kv in infinigen)  # OPT-6.7B's heads: 128 wide


def test_best_value_is_the_lowest_mean_at_each_setting() -> None:
    rows = [{"g": g, "b": b, "r": r, "x": x} for g, b, r, x in [
        (1, 4, 0, 3.0), (1, 4, 1, 1.0), (2, 4, 0, 1.5), (2, 4, 1, 1.5), (1, 8, 0, 0.1), (2, 8, 0, 0.2)]]
    assert best_values(rows, "g", "b", "x") == {4: 2, 8: 1}  # at 4 bits: G=1 mean 2.0, G=2 mean 1.5
    rows[0]["x"] = 1.0
    assert best_values(rows, "g", "b", "x") == {4: 1, 8: 1}


def test_spearman_is_one_for_a_monotone_map_and_minus_one_reversed() -> None:
    a = [0.1, 0.5, 0.2, 3.0, 1.0]
    assert spearman(a, [x ** 3 for x in a]) == pytest.approx(1.0)
    assert spearman(a, [-x for x in a]) == pytest.approx(-1.0)
