"""A search stopped by Ctrl-C or SIGTERM (real signals to a real child process) writes the results of the
finished trials, leaves no trial RUNNING and exits 130 / 143."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from tests.test_search import RUN_FILES

ROOT = Path(__file__).resolve().parent.parent


def completed_trials(journal: Path) -> int:
    if not journal.exists():
        return 0
    return journal.read_text().count('"state":1')  # TrialState.COMPLETE in the journal's records


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_ends_the_run_cleanly(tmp_path: Path, signum: int, code: int) -> None:
    cmd = [sys.executable, "-m", "dse", "system=systolic", "model=smollm2_135m", "accuracy.objective=none",
           "accuracy.max_ppl_increase=null", "search/sampler=random", "search.n_trials=1000000",
           "search.progress=false", f"hydra.run.dir={tmp_path}"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    journal = tmp_path / "study.journal"
    deadline = time.monotonic() + 120
    while completed_trials(journal) < 20 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()[1][-2000:]
    proc.send_signal(signum)
    _out, err = proc.communicate(timeout=180)
    assert proc.returncode == code, err[-2000:]
    assert "Traceback" not in err
    for name in RUN_FILES:
        assert (tmp_path / name).exists(), name
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["interrupted"] == signal.Signals(signum).name
    study = optuna.load_study(study_name="tide", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(journal))))
    states = [t.state for t in study.trials]
    assert optuna.trial.TrialState.RUNNING not in states
    assert summary["n_trials"] == len(states) >= 20


@pytest.mark.slow
def test_a_search_killed_with_sigkill_resumes_without_running_trials(tmp_path: Path) -> None:
    """kill -9 mid-run: the resume fails the trial the dead worker left RUNNING; if the kill cut the
    journal's last record, the resume refuses it with a repair command, which then works."""
    base = [sys.executable, "-m", "dse", "system=systolic", "model=smollm2_135m", "accuracy.objective=none",
            "accuracy.max_ppl_increase=null", "search/sampler=random", "search.progress=false",
            f"hydra.run.dir={tmp_path}"]
    proc = subprocess.Popen([*base, "search.n_trials=1000000"], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    journal = tmp_path / "study.journal"
    deadline = time.monotonic() + 120
    while completed_trials(journal) < 20 and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.kill()
    proc.wait()
    resume = subprocess.run([*base, "search.n_trials=5", "search.resume=true"], cwd=ROOT, capture_output=True,
                            text=True, timeout=300)
    if resume.returncode == 2 and "damaged" in resume.stderr:  # the kill landed mid-append
        repair = resume.stderr.split("`", 2)[1]
        subprocess.run(repair, shell=True, check=True, cwd=ROOT)
        Path(str(journal) + ".repaired").replace(journal)
        resume = subprocess.run([*base, "search.n_trials=5", "search.resume=true"], cwd=ROOT, capture_output=True,
                                text=True, timeout=300)
    assert resume.returncode == 0, resume.stderr[-2000:]
    study = optuna.load_study(study_name="tide", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(journal))))
    assert optuna.trial.TrialState.RUNNING not in [t.state for t in study.trials]


def _without_run_columns(path: Path) -> list[list[str]]:
    rows = list(csv.reader(path.open()))
    drop = {i for i, name in enumerate(rows[0]) if name in ("duration_s", "worker")}
    return [[v for i, v in enumerate(r) if i not in drop] for r in rows]


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_an_interrupted_enumeration_writes_a_partial_front_and_resumes_to_the_exact_one(
        tmp_path: Path, signum: int, code: int) -> None:
    """search/sampler=exhaustive stopped by a real signal: exit 130 / 143 without a traceback, the front of the
    chunks done written and labelled partial; a resume enumerates the rest and writes the same trials.csv as an
    uninterrupted run."""
    base = [sys.executable, "-m", "dse", "system=tender", "search/sampler=exhaustive", "accuracy.objective=none",
            "accuracy.max_ppl_increase=null", "search.sampler.chunk_points=4096", "system.space.clock_ghz.step=0.5",
            "search.sampler.workers=2", "search.progress=false", "output.report=false"]
    run = tmp_path / "run"
    proc = subprocess.Popen([*base, f"hydra.run.dir={run}"], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (run / "enumeration.npz").exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()[1][-2000:]
    proc.send_signal(signum)
    _out, err = proc.communicate(timeout=180)
    assert proc.returncode == code, err[-2000:]
    assert "Traceback" not in err
    summary = json.loads((run / "summary.json").read_text())
    ex = summary["exhaustive"]
    assert summary["interrupted"] == signal.Signals(signum).name and ex["partial"]
    assert 0 < ex["chunks_done"] < ex["chunks_total"] and "partial front" in ex["trials_csv"]
    assert summary["pareto_size"] == ex["pareto"] > 0 and (run / "pareto.csv").is_file()
    if signum == signal.SIGINT:  # the same stop either way: one resume is enough
        return
    resumed = subprocess.run([*base, f"hydra.run.dir={run}", "search.resume=true"], cwd=ROOT, capture_output=True,
                             text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["interrupted"] is None and not summary["exhaustive"]["partial"]
    assert summary["exhaustive"]["chunks_done"] == summary["exhaustive"]["chunks_total"] == ex["chunks_total"]
    whole = tmp_path / "whole"
    subprocess.run([*base, f"hydra.run.dir={whole}"], cwd=ROOT, capture_output=True, check=True, timeout=300)
    assert _without_run_columns(run / "trials.csv") == _without_run_columns(whole / "trials.csv")
    assert json.loads((whole / "summary.json").read_text())["exhaustive"]["enumerated"] == \
        summary["exhaustive"]["enumerated"]
