"""Every system at once (as Optuna tests every sampler): each ``conf/system/*.yaml`` loads, validates,
evaluates random points of its space vectorised exactly as one by one, and exports a design that
``python -m dse.evaluate`` reproduces."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dse import evaluate as evaluate_cli
from dse.app import run_search
from dse.config import CONF_DIR, Config, ParamSpec
from dse.systems import families, make_system, system_class
from dse.systems._base import split_points

SYSTEMS = sorted(p.stem for p in (CONF_DIR / "system").glob("*.yaml"))


def random_points(space: dict[str, ParamSpec], n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for key, spec in space.items():
        if spec.type == "categorical":
            choices = list(spec.choices or [])
            out[key] = np.array([choices[i] for i in rng.integers(0, len(choices), n)])
        elif spec.type == "int":
            out[key] = rng.integers(int(spec.low), int(spec.high) + 1, n).astype(float)
        else:
            out[key] = rng.uniform(float(spec.low), float(spec.high), n)
    return out


@pytest.mark.parametrize("name", SYSTEMS)
def test_vectorised_equals_one_by_one(make_cfg: Callable[..., Config], name: str) -> None:
    cfg = make_cfg([f"system={name}", "model=opt_6_7b", "workload.gen_len=16"])
    system = make_system(cfg)
    assert cfg.system.family in families()
    n = 1000 if name == "tender_infinigen" else 100  # the joint system groups points by their operator lists
    points: dict[str, Any] = {**cfg.system.hw, **random_points(cfg.system.space, n, np.random.default_rng(7))}
    together = system.evaluate(points)
    assert set(together.metrics) == set(system.metrics)
    assert (together.invalid == "").sum() > n // 2, "most random points of a shipped space should be valid"
    for i, point in enumerate(split_points(points)):
        alone = system.evaluate(point)
        assert alone.invalid[0] == together.invalid[i]
        for key, value in alone.metrics.items():
            np.testing.assert_allclose(together.metrics[key][i], value[0], rtol=1e-12, equal_nan=True,
                                       err_msg=f"{name}: {key} of point {i}")


@pytest.mark.parametrize("name", SYSTEMS)
def test_search_exports_a_design_that_reevaluates(make_cfg: Callable[..., Config], tmp_path: Path, name: str) -> None:
    cfg = make_cfg([f"system={name}", "model=opt_6_7b", "workload.gen_len=16", "search/sampler=random",
                    "search.n_trials=6", "search.progress=false", "output.plot_formats=[]"])
    summary = run_search(cfg, tmp_path)
    assert summary["n_failed"] == 0
    designs = sorted((tmp_path / "designs").glob("*.yaml"))
    assert designs, f"{name}: no design exported"
    assert evaluate_cli.main([str(designs[0])]) == 0


def test_every_family_is_used_by_a_shipped_system(make_cfg: Callable[..., Config]) -> None:
    used = {make_cfg([f"system={name}"]).system.family for name in SYSTEMS}
    assert used == set(families())
    for family in families():
        assert system_class(family).metrics, family
