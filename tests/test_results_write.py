"""Writing a run's results after a signal: within a budget of it (dse.app.SIGNAL_BUDGET_S), the tables and
summary.json always, each further part only while there is time, a part cut by a signal while it is written, and
what is left out listed in summary.json's ``incomplete`` (real signals, sent to this process)."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import dse.app
from dse.app import run_search
from dse.config import Config
from dse.results import written_whole

COST_ONLY = ["system=systolic", "model=smollm2_135m", "accuracy.objective=none", "accuracy.max_ppl_increase=null",
             "search/sampler=random", "search.n_trials=12", "search.progress=false", "output.report=true"]


def test_a_signal_while_a_part_is_written_cuts_that_part_only(make_cfg: Callable[..., Config], tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    def plots_then_signal(*args: Any, **kwargs: Any) -> None:
        (tmp_path / "pareto.png").write_bytes(b"an earlier session's plot")
        os.kill(os.getpid(), signal.SIGTERM)  # arrives in the middle of writing the plots
        time.sleep(30)  # cut by the signal: never reached to the end
        raise AssertionError("the signal did not cut the part")

    monkeypatch.setattr(dse.app, "save_pareto_plots", plots_then_signal)
    summary = run_search(make_cfg(COST_ONLY), tmp_path)
    assert summary["interrupted"] == "SIGTERM"
    assert summary["incomplete"] == ["pareto plots", "report.html"]  # the report: never after a signal
    assert not (tmp_path / "pareto.png").exists(), "a stale plot of a skipped part is removed"
    assert not (tmp_path / "report.html").exists()
    assert (tmp_path / "hypervolume.png").exists() and summary["exported_designs"] == len(
        list((tmp_path / "designs").glob("*.yaml"))) > 0  # the parts after the cut one, within the budget
    rows = list(csv.DictReader((tmp_path / "trials.csv").open()))
    assert len(rows) == 12 and json.loads((tmp_path / "summary.json").read_text()) == json.loads(
        json.dumps(summary, default=str))


def test_a_late_signal_writes_the_tables_and_the_summary_only(make_cfg: Callable[..., Config], tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A loop stopped by a signal longer ago than the budget (a slow last trial): trials.csv, pareto.csv and
    summary.json, nothing else; a resume writes the rest."""
    optimise = dse.app.optimise

    def stopped_long_ago(*args: Any, **kwargs: Any) -> dse.app.LoopResult:
        return dataclasses.replace(optimise(*args, **kwargs), interrupted=signal.SIGTERM,
                                   stopped_at=time.monotonic() - 2 * dse.app.SIGNAL_BUDGET_S)

    monkeypatch.setattr(dse.app, "optimise", stopped_long_ago)
    summary = run_search(make_cfg(COST_ONLY), tmp_path)
    assert summary["incomplete"] == ["pareto plots", "hypervolume plot", "designs/", "report.html"]
    assert {p.name for p in tmp_path.iterdir()} >= {"trials.csv", "pareto.csv", "summary.json", "run.json"}
    assert not any((tmp_path / n).exists() for n in ("pareto.png", "hypervolume.png", "designs", "report.html"))
    monkeypatch.setattr(dse.app, "optimise", optimise)
    resumed = run_search(make_cfg([*COST_ONLY, "search.resume=true"]), tmp_path)
    assert resumed["incomplete"] == [] and resumed["interrupted"] is None and resumed["n_trials"] == 12
    assert all((tmp_path / n).exists() for n in ("pareto.png", "hypervolume.png", "designs", "report.html"))


def test_a_file_is_replaced_whole_or_not_at_all(tmp_path: Path) -> None:
    path = tmp_path / "trials.csv"
    path.write_text("the previous table\n")
    with pytest.raises(RuntimeError), written_whole(path) as tmp:
        tmp.write_text("half of a new tab")
        raise RuntimeError("stopped mid-write")
    assert path.read_text() == "the previous table\n" and list(tmp_path.iterdir()) == [path]
    with written_whole(path) as tmp:
        tmp.write_text("the new table\n")
    assert path.read_text() == "the new table\n" and list(tmp_path.iterdir()) == [path]
