"""Storage and run directories that go wrong: another study in a run directory, a damaged journal, a worker
killed mid-trial, a stale lock, storages that cannot open. Each is refused or repaired with a message
before anything is written."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest

from dse.app import run_search
from dse.config import Config, ConfigError
from dse.host import worker_id
from dse.space import suggest
from dse.storage import make_storage

SHORT = ["search.progress=false", "output.plot_formats=[]"]


def test_a_run_directory_belongs_to_one_study(make_cfg: Callable[..., Config], tmp_path: Path) -> None:
    run_search(make_cfg(["search.n_trials=12", *SHORT]), tmp_path)
    rows = (tmp_path / "trials.csv").read_text()
    other = make_cfg(["search.n_trials=3", *SHORT, f"search.storage=sqlite:///{tmp_path / 'x.db'}"])
    with pytest.raises(ConfigError, match="hydra.run.dir"):
        run_search(other, tmp_path)
    assert (tmp_path / "trials.csv").read_text() == rows
    assert not (tmp_path / "x.db").exists()


def test_designs_match_the_current_front_after_a_resume(make_cfg: Callable[..., Config], tmp_path: Path) -> None:
    run_search(make_cfg(["search.n_trials=10", *SHORT]), tmp_path)
    summary = run_search(make_cfg(["search.n_trials=60", "search.resume=true", *SHORT]), tmp_path)
    designs = sorted((tmp_path / "designs").glob("*.yaml"))
    assert len(designs) == summary["pareto_size"] == summary["exported_designs"]
    pareto = {int(r["number"]) for r in csv.DictReader((tmp_path / "pareto.csv").open())}
    assert {int(p.stem.rsplit("trial", 1)[1]) for p in designs} == pareto


def test_a_damaged_journal_is_named_and_left_untouched(make_cfg: Callable[..., Config], tmp_path: Path) -> None:
    run_search(make_cfg(["search.n_trials=4", *SHORT]), tmp_path)
    journal = tmp_path / "study.journal"
    with journal.open("a") as fh:
        fh.write('{"op_code": 5, "worker_id": "x", "trial_id": 3, "sta')  # a record cut by a crash
    damaged = journal.read_bytes()
    with pytest.raises(ConfigError, match=r"damaged at record \d+ of \d+ \(its last record is incomplete"):
        run_search(make_cfg(["search.n_trials=4", "search.resume=true", *SHORT]), tmp_path)
    assert journal.read_bytes() == damaged


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_dead_workers_trial_is_failed_on_resume_and_its_lock_released(
        make_cfg: Callable[..., Config], tmp_path: Path) -> None:
    cfg = make_cfg(["search.n_trials=3", *SHORT])
    run_search(cfg, tmp_path)
    study = optuna.load_study(study_name="tide", storage=make_storage(cfg.search, tmp_path))
    host = worker_id().rsplit(":", 1)[0]
    ghost = study.ask()  # a trial whose process was killed with -9 in the middle of its evaluation
    suggest(ghost, cfg.system.space)
    ghost.set_user_attr("worker", f"{host}:{dead_pid()}")
    alive = study.ask()  # one of a live worker (this process): left alone
    alive.set_user_attr("worker", worker_id())
    # a process killed with -9 while it holds the journal lock: the kernel releases the flock
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys, time\n"
        f"fd = os.open({str(tmp_path / 'study.journal.flock')!r}, os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    holder.kill()
    holder.wait()
    # n_trials is the study's total: 3 done, the live worker's RUNNING one counts, the ghost's does not (its
    # retry does): the resume runs the retry and one new trial
    summary = run_search(make_cfg(["search.n_trials=6", "search.resume=true", *SHORT]), tmp_path)
    assert summary["this_session"]["asked"] == 2
    trials = optuna.load_study(study_name="tide", storage=make_storage(cfg.search, tmp_path)).trials
    assert trials[ghost.number].state == optuna.trial.TrialState.FAIL
    assert "died" in trials[ghost.number].user_attrs["error"]
    retried = [t for t in trials if t.user_attrs.get("retry_of") == ghost.number]
    assert len(retried) == 1 and retried[0].state == optuna.trial.TrialState.COMPLETE
    assert retried[0].params == trials[ghost.number].params
    assert trials[alive.number].state == optuna.trial.TrialState.RUNNING
    assert sum(t.state == optuna.trial.TrialState.COMPLETE for t in trials) == 5


@pytest.mark.parametrize(("storage", "message"), [
    ("/sys/tide-test/study.journal", "cannot open the journal"),  # a read-only file system (root ignores modes)
    ("sqlite:////sys/tide-test.db", "cannot open sqlite"),  # SQLite on a read-only file system
    ("{tmp}", "not a journal file"),  # a directory
    ("sqlite:///{tmp}/other/study.journal", "cannot open sqlite"),  # a file that is no database
    ("postgresql://tide@127.0.0.1:1/tide", "cannot open postgresql"),  # no driver, or nothing listening
])
def test_storages_that_cannot_open_are_named(make_cfg: Callable[..., Config], tmp_path: Path, storage: str,
                                             message: str) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "study.journal").write_text(json.dumps({"op_code": 0}) + "\n")
    cfg = make_cfg(["search.n_trials=2", *SHORT, f"search.storage={storage.format(tmp=tmp_path)}"])
    with pytest.raises(ConfigError, match=rf"search\.storage.*{message}"):
        run_search(cfg, tmp_path / "run")
