"""Cheap accuracy screening on the real proxy model: a key whose screened increase stays above the bound
(after the stated factor) is not measured fully and is infeasible; the exact front is the one without
screening."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import pytest

from dse.app import run_search
from dse.config import Config

pytestmark = pytest.mark.real_model

SPACE = {"bits": {"type": "categorical", "choices": [4, 8]},
         "groups": {"type": "categorical", "choices": [1, 8]},
         "rows": {"type": "categorical", "choices": [32, 64]}}


def front(run_dir: Path) -> list[tuple[str, ...]]:
    rows = list(csv.DictReader((run_dir / "pareto.csv").open()))
    return sorted(tuple(r[k] for k in sorted(r) if k.startswith(("param.", "objective."))) for r in rows)


def test_screening_skips_hopeless_keys_and_keeps_the_front(make_cfg: Callable[..., Config], tmp_path: Path) -> None:
    common = ["system=tender", "search/sampler=exhaustive", "search.progress=false", "accuracy.progress=false",
              "accuracy.windows=1", "accuracy.seq_len=128", f"accuracy.cache_dir={tmp_path / 'cache'}",
              "accuracy.max_ppl_increase=5"]
    screened = run_search(make_cfg([*common, "accuracy.screening.enabled=true", "accuracy.screening.seq_len=64",
                                    "accuracy.screening.factor=1.5"], system__space=SPACE), tmp_path / "screened")
    info = screened["accuracy"]["screening"]
    assert info["keys_screened_out"] >= 1  # INT4 with one group: perplexity in the thousands
    # the full measurements: the dense baseline and the keys the screen let through
    assert screened["accuracy"]["measurements_this_run"] == 1 + 4 - info["keys_screened_out"]
    assert info["screen_measurements"] == 1 + 4  # the screen's baseline and every key
    plain = run_search(make_cfg(common, system__space=SPACE), tmp_path / "plain")  # every key measured fully
    assert plain["accuracy"]["screening"] is None
    assert front(tmp_path / "screened") == front(tmp_path / "plain")
