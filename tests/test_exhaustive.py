"""The exhaustive sampler: the exact constrained front by enumeration, equal to brute force over every point
(one process and several, tiny chunks and one), accuracy measured once per group, catalog parts expanded,
and the refusals before any work."""

from __future__ import annotations

import csv
import itertools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dse.app import run_search
from dse.checks import check_search
from dse.config import Config, ConfigError
from dse.exhaustive import check_enumerable, enumerate_front
from dse.objectives import Observed, assess, build_problem
from dse.space import grid_space
from dse.systems import make_system, split_points
from tests import brute
from tests.conftest import SMALL_SPACE

CATALOG_SPACE = {**{k: v for k, v in SMALL_SPACE.items() if k != "dram_bw_gbps"},
                 "memory": {"type": "categorical", "choices": ["lpddr5_6400_x64", "hbm2_2000_x1", "hbm3_6400_x1"]},
                 "clock_ghz": {"type": "float", "low": 0.5, "high": 1.5, "step": 0.5}}


def brute_front(system: Any, problem: Any, space: dict[str, Any]) -> list[tuple[float, ...]]:
    """Every point evaluated on its own (scalars, catalog expanded per point), filtered by the definition
    (designs with equal objective values are all kept), sorted."""
    grid = grid_space(space)
    keys = list(grid)
    values = []
    for combo in itertools.product(*(grid[k] for k in keys)):
        point = system.complete(dict(zip(keys, combo, strict=True)))
        observed = problem.extra(point) if problem.providers else Observed()
        (r,) = assess(system.evaluate(point, observed.selection), problem.objectives, problem.constraints,
                      observed.metrics)
        if r.feasible:
            values.append(r.values)
    mask = brute.front_mask(values, list(problem.objectives.values()))
    return sorted(tuple(v) for v, keep in zip(values, mask, strict=True) if keep)


def small(make_cfg: Callable[..., Config], space: dict[str, Any], *extra: str) -> Config:
    return make_cfg(["search/sampler=exhaustive", "search.progress=false", "system.constraints.area_mm2.max=4",
                     *extra], system__space=space)


@pytest.mark.parametrize(("chunk", "workers"), [(1 << 17, 1), (5, 1), (7, 2)])
def test_front_equals_brute_force(make_cfg: Callable[..., Config], chunk: int, workers: int) -> None:
    cfg = small(make_cfg, CATALOG_SPACE)
    system = make_system(cfg)
    problem = build_problem(cfg.system.objectives, cfg.system.constraints, system.intrinsic_constraints,
                            system.metrics)
    found = enumerate_front(system, problem, cfg.system.space, chunk_points=chunk, workers=workers, progress=False)
    expected = brute_front(system, problem, {k: v for k, v in cfg.system.space.items()})
    assert 0 < len(expected) < found.counts["feasible"] < found.counts["enumerated"] == 2 * 2 * 3 * 2 * 3 * 3
    assert sorted(tuple(v) for v in found.values) == expected
    assert len(found.params) == len(expected) > len(set(expected))  # designs with equal objectives all kept
    assert {p["memory"] for p in found.params} <= set(CATALOG_SPACE["memory"]["choices"])


def test_accuracy_is_measured_once_per_group(make_cfg: Callable[..., Config]) -> None:
    """Tender's accuracy knobs (bits, groups) are found by probing; each group is measured once, and the
    front over the four objectives equals brute force with the same (deterministic) accuracy provider."""
    cfg = make_cfg(["system=tender", "search.progress=false"], system__space={
        "bits": {"type": "categorical", "choices": [4, 8]},
        "groups": {"type": "categorical", "choices": [1, 8]},
        "rows": {"type": "categorical", "choices": [16, 64]},
        "memory": {"type": "categorical", "choices": ["lpddr5_6400_x64", "hbm2_2000_x1"]},
        "clock_ghz": {"type": "float", "low": 0.5, "high": 1.0, "step": 0.5},
    })
    system = make_system(cfg)
    calls: list[int] = []

    def provider(points: dict[str, Any]) -> Observed:  # a stand-in for the measured perplexity
        rows = split_points(points)
        calls.append(len(rows))
        inc = np.array([(8 / float(p["bits"])) ** 2 / float(p["groups"]) for p in rows])
        return Observed({"ppl": 20 + inc, "ppl_increase": inc})

    problem = build_problem(cfg.system.objectives, cfg.system.constraints, system.intrinsic_constraints,
                            system.metrics, provider, "ppl_increase", 3.0)
    found = enumerate_front(system, problem, cfg.system.space, chunk_points=3, progress=False)
    assert found.accuracy_knobs == ("bits", "groups")
    assert found.counts["accuracy_groups"] == 4 and calls == [1, 1, 1, 1]
    assert sorted(tuple(v) for v in found.values) == brute_front(system, problem, dict(cfg.system.space))
    assert all(v[3] <= 3.0 for v in found.values)  # the accuracy constraint holds on the front


def test_search_writes_the_run_directory_and_a_sampled_run_compares(make_cfg: Callable[..., Config],
                                                                    tmp_path: Path) -> None:
    cfg = small(make_cfg, CATALOG_SPACE)
    summary = run_search(cfg, tmp_path / "exact")
    ex = summary["exhaustive"]
    assert ex["enumerated"] == ex["invalid"] + ex["infeasible"] + ex["feasible"] == 216
    rows = list(csv.DictReader((tmp_path / "exact" / "trials.csv").open()))
    assert len(rows) == summary["pareto_size"] == ex["pareto"] and all(r["pareto"] == "True" for r in rows)
    assert "Pareto set only" in ex["trials_csv"]
    designs = sorted((tmp_path / "exact" / "designs").glob("*.yaml"))
    assert len(designs) == summary["pareto_size"]
    # a sampled run of the same problem against the exact front: IGD+ >= 0, hypervolume ratio <= 1
    ref = str(tmp_path / "exact" / "pareto.csv")
    sampled = run_search(small(make_cfg, CATALOG_SPACE, "search/sampler=random", "search.n_trials=12",
                               f"search.reference_front={ref}"), tmp_path / "sampled")
    cmp = sampled["reference_front"]
    assert cmp["size"] == summary["pareto_size"]
    assert cmp["hypervolume"] == pytest.approx(summary["hypervolume"])
    assert 0 < cmp["hypervolume_ratio"] <= 1 + 1e-12 and cmp["igd_plus"] >= 0 and cmp["epsilon_additive"] >= 0
    # the whole grid, sampled: it finds the exact front, so both distances are 0 and the ratio 1
    full = run_search(small(make_cfg, CATALOG_SPACE, "search/sampler=grid", "search.n_trials=1000",
                            f"search.reference_front={ref}"), tmp_path / "grid")
    assert full["reference_front"]["igd_plus"] == pytest.approx(0.0, abs=1e-12)
    assert full["reference_front"]["epsilon_additive"] <= 1e-12
    assert full["reference_front"]["hypervolume_ratio"] == pytest.approx(1.0)
    assert (tmp_path / "grid" / "hypervolume.png").exists()


def test_refusals_name_the_key(make_cfg: Callable[..., Config], tmp_path: Path) -> None:
    continuous = {**SMALL_SPACE, "clock_ghz": {"type": "float", "low": 0.5, "high": 2.0}}
    with pytest.raises(ConfigError, match=r"system\.space\.clock_ghz: a continuous knob"):
        run_search(small(make_cfg, continuous), tmp_path / "a")
    with pytest.raises(ConfigError, match=r"search\.max_points: the space has 48 points"):
        run_search(small(make_cfg, SMALL_SPACE, "search.max_points=47"), tmp_path / "b")
    with pytest.raises(ConfigError, match=r"search\.sampler \(exhaustive\): workers must be >= 0"):
        check_search(small(make_cfg, SMALL_SPACE, "search.sampler.workers=-1"))
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()  # refused before any work
    assert check_enumerable(make_cfg([]).system.space, 10**9) == 6 * 6 * 3 * 2 * 8 * 8 * 7 * 16 * 6


def test_reference_front_of_another_problem_is_refused(make_cfg: Callable[..., Config], tmp_path: Path) -> None:
    other = tmp_path / "pareto.csv"
    other.write_text("number,objective.latency_s,objective.energy_j\n0,1.0,2.0\n")
    with pytest.raises(ConfigError, match=r"search\.reference_front: .* objectives \['energy_j', 'latency_s'\]"):
        run_search(make_cfg([f"search.reference_front={other}", "search.n_trials=2"]), tmp_path / "run")
    with pytest.raises(ConfigError, match=r"search\.reference_front: .* is not a file"):
        run_search(make_cfg([f"search.reference_front={tmp_path / 'none.csv'}"]), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_repeated_designs_are_reused_and_listed_once(make_cfg: Callable[..., Config], tmp_path: Path) -> None:
    """A 4-point space, 20 random trials: repeats copy the first trial's result (no evaluation), and
    pareto.csv and designs/ list each distinct design once with every trial that hit it."""
    space = {"rows": {"type": "categorical", "choices": [16, 32]}, "cols": {"type": "categorical", "choices": [16, 32]}}
    cfg = make_cfg(["search/sampler=random", "search.n_trials=20", "search.progress=false"], system__space=space)
    summary = run_search(cfg, tmp_path)
    trials = list(csv.DictReader((tmp_path / "trials.csv").open()))
    repeats = [t for t in trials if t.get("repeat_of")]
    assert summary["repeated_trials"] == len(repeats) >= 16
    by_number = {t["number"]: t for t in trials}
    for t in repeats:
        first = by_number[t["repeat_of"]]
        assert not first.get("repeat_of")
        assert (t["param.rows"], t["param.cols"]) == (first["param.rows"], first["param.cols"])
        assert t["objective.latency_s"] == first["objective.latency_s"]
    pareto = list(csv.DictReader((tmp_path / "pareto.csv").open()))
    keys = [(p["param.rows"], p["param.cols"]) for p in pareto]
    assert len(keys) == len(set(keys)) == summary["pareto_size"]
    assert len(list((tmp_path / "designs").glob("*.yaml"))) == len(pareto)
    for p in pareto:
        hits = [t["number"] for t in trials if (t["param.rows"], t["param.cols"]) == (p["param.rows"], p["param.cols"])]
        assert p["trials"].split(";") == hits
    data = json.loads((tmp_path / "summary.json").read_text())
    assert data["distinct_pareto_designs"] == len(pareto)
