"""Many workers, one study, on the journal file and on a real PostgreSQL server: exact trial counts, workers
killed with -9 mid-trial and while they measure an accuracy key, leases taken over, a database that goes away
mid-run, bad input, heartbeats of another machine's worker."""

from __future__ import annotations

import csv
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from dse.accuracy_store import Fresh, RdbStore, Row
from dse.app import run_search
from dse.config import Config, ConfigError
from dse.coordination import Retry, ask_lock_for, claim, counts, reap
from dse.space import suggest
from dse.storage import FlockJournalLock, make_storage
from tests.conftest import POSTGRES_SCRIPT, Postgres

ROOT = Path(__file__).resolve().parents[1]
#: a coupled Tender search measuring on 1 x 64 tokens: each accuracy key costs well under a second once the model
#: is loaded, so that four workers and their crashes fit in a test
COUPLED = ["system=tender", "search.progress=false", "accuracy.windows=1", "accuracy.seq_len=64",
           "accuracy.calib_windows=1", "accuracy.max_ppl_increase=50", "accuracy.progress=false",
           "search.heartbeat_interval=1", "search.grace_period=3", "search.accuracy_lease_s=4"]


def start_search(args: list[str], run_dir: Path) -> subprocess.Popen[str]:
    log = (run_dir.parent / f"{run_dir.name}.log").open("w")
    return subprocess.Popen([sys.executable, "-m", "dse", *args, f"hydra.run.dir={run_dir}"], cwd=ROOT,
                            stdout=log, stderr=subprocess.STDOUT, text=True)


def wait_for(probe: Callable[[], Any], proc: subprocess.Popen[str], what: str, timeout: float = 600) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        assert proc.poll() is None, f"the search ended before {what}"
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def pid_of(worker: str) -> int:
    return int(worker.rpartition(":")[2])


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def created_study(storage: Any) -> optuna.Study | None:
    """The search's study, or None while the parent has not yet written it (a journal file exists before
    its first record)."""
    try:
        return optuna.load_study(study_name="tide", storage=storage)
    except KeyError:
        return None


def running_worker(storage: Any, excluded: set[int]) -> str | None:
    """A worker that is evaluating a trial right now (not one of ``excluded``)."""
    study = created_study(storage)
    if study is None:
        return None
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        worker = str(t.user_attrs.get("worker", ""))
        if worker and pid_of(worker) not in excluded and alive(pid_of(worker)):
            return worker
    return None


def check_outcome(run_dir: Path, n_trials: int, killed_mid_trial: str) -> list[dict[str, str]]:
    rows = list(csv.DictReader((run_dir / "trials.csv").open()))
    numbers = [int(r["number"]) for r in rows]
    assert sorted(numbers) == list(range(len(rows)))  # no number lost or duplicated
    assert sum(r["state"] == "COMPLETE" for r in rows) == n_trials
    assert not [r for r in rows if r["state"] in ("RUNNING", "WAITING")]
    dead = [r for r in rows if r["worker"] == killed_mid_trial and r["state"] == "FAIL"]
    assert dead and all("died" in r["error"] for r in dead)
    for r in dead:  # each is retried with its parameters, and the retry finished
        retries = [x for x in rows if x["retry_of"] == r["number"]]
        assert len(retries) == 1 and retries[0]["state"] == "COMPLETE"
        params = [k for k in r if k.startswith("param.") and r[k] != ""]
        assert all(retries[0][k] == r[k] for k in params)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["n_trials"] == len(rows) and summary["this_session"]["workers"] == 4
    return rows


# -- PostgreSQL ---------------------------------------------------------------------------------------------
@pytest.mark.real_model
def test_postgres_four_workers_survive_kill_9_mid_trial_and_while_holding_a_lease(
        pg_url: str, tmp_path: Path) -> None:
    n_trials = 30
    run_dir = tmp_path / "run"
    proc = start_search([*COUPLED, "search.workers=4", f"search.n_trials={n_trials}", f"search.storage={pg_url}",
                         f"accuracy.cache_dir={tmp_path / 'cache'}"], run_dir)
    store = RdbStore(pg_url, "test")  # reads the store the search writes
    try:
        def lease_holder() -> tuple[str, str] | None:
            try:
                with store.engine.connect() as conn:
                    rows = conn.execute(store.leases.select()).fetchall()
            except Exception:  # the tables are created by the search
                return None
            return next(((r.key, r.owner) for r in rows if pid_of(r.owner) != proc.pid), None)

        key, holder = wait_for(lease_holder, proc, "a worker holding an accuracy lease")
        os.kill(pid_of(holder), signal.SIGKILL)
        victim = wait_for(lambda: running_worker(pg_url, {proc.pid, pid_of(holder)}), proc, "a running trial")
        os.kill(pid_of(victim), signal.SIGKILL)
        assert proc.wait(timeout=900) == 0, (tmp_path / "run.log").read_text()[-3000:]
        check_outcome(run_dir, n_trials, victim)
        row = store.lookup(key)
        assert row is not None and row.measured_by not in (None, holder)  # the lease was taken over
        assert store.integrity() == {"rows": store.integrity()["rows"], "incomplete": 0, "leases": 0}
        assert "taken over by" in (tmp_path / "run.log").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
        store.close()


def test_a_lease_that_is_not_renewed_is_taken_over(pg_url: str) -> None:
    dead = RdbStore(pg_url, "otherhost:1", lease_s=2)
    assert dead._acquire("k" * 64)  # and then its owner dies: nobody renews it
    assert dead.lease_of("k" * 64)[0] == "otherhost:1"
    live = RdbStore(pg_url, "here:2", lease_s=2, poll_s=0.1)
    started = time.monotonic()
    row, measured = live.measure_once("k" * 64, lambda: Fresh(Row(12.5, 64, 0.1), {"what": "test"}))
    assert measured and row.measured_by == "here:2" and time.monotonic() - started >= 1.5
    assert live.lookup("k" * 64) == Row(12.5, 64, 0.1, None, "here:2")
    assert live.integrity() == {"rows": 1, "incomplete": 0, "leases": 0}
    # a measurement that raises gives its lease back at once
    with pytest.raises(RuntimeError):
        live.measure_once("j" * 64, lambda: (_ for _ in ()).throw(RuntimeError("boom")))
    assert live.lease_of("j" * 64) is None
    dead.close()
    live.close()


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")  # the test asks outside the loop
def test_a_silent_worker_of_another_machine_is_failed_after_its_grace_period(
        make_cfg: Callable[..., Config], pg_url: str, tmp_path: Path) -> None:
    cfg = make_cfg(["search.n_trials=3", "search.progress=false", f"search.storage={pg_url}",
                    "search.heartbeat_interval=1", "search.grace_period=2"])
    run_search(cfg, tmp_path / "a")
    study = optuna.load_study(study_name="tide", storage=make_storage(cfg.search, tmp_path))
    far = study.ask()
    suggest(far, cfg.system.space)
    far.set_user_attr("worker", "elsewhere:4242")  # a live-looking worker of another machine: only heartbeats tell
    study._storage.record_heartbeat(far._trial_id)
    lock = ask_lock_for(pg_url, "tide")
    with lock.held():
        assert reap(study, study.get_trials(deepcopy=False), Retry(2)) == []  # still within its grace period
    time.sleep(3.5)
    got = claim(study, lock, Retry(2), n_total=5)
    assert got is not None
    got[1].stop()
    trials = study.get_trials(deepcopy=False)
    assert trials[far.number].state == optuna.trial.TrialState.FAIL and not counts(trials[far.number])
    assert [t.user_attrs.get("retry_of") for t in trials if t.user_attrs.get("retry_of") is not None] == [far.number]
    assert got[0].number == trials[-1].number and trials[-1].params == far.params  # claim asked the retry
    lock.close()


@pytest.mark.slow
def test_database_that_goes_away_stops_the_workers_and_the_study_resumes(
        tmp_path: Path, postgres: Postgres) -> None:
    """A server of its own (this test stops it)."""
    directory = tempfile.mkdtemp(prefix="tide-pg-")  # /tmp: reachable by the postgres user when we are root
    url = subprocess.run(["bash", str(POSTGRES_SCRIPT), "start", directory], capture_output=True, text=True,
                         check=True).stdout.strip().splitlines()[-1]
    n_trials = 400
    args = ["search.progress=false", "system=systolic", "model=smollm2_135m", "accuracy.objective=none",
            f"search.storage={url}", "search.workers=2", f"search.n_trials={n_trials}"]
    try:
        proc = start_search(args, tmp_path / "a")

        def finished() -> int:
            try:
                study = optuna.load_study(study_name="tide", storage=url)
            except Exception:
                return 0
            return sum(t.state.is_finished() for t in study.get_trials(deepcopy=False)) >= 40

        wait_for(finished, proc, "40 finished trials")
        subprocess.run(["bash", str(POSTGRES_SCRIPT), "stop", directory], check=True)
        assert proc.wait(timeout=300) == 3  # the storage's exit status, after a clear message
        log = (tmp_path / "a.log").read_text()
        assert "storage error: search.storage: lost postgresql://tide@127.0.0.1" in log
        assert "search.resume=true" in log and "Traceback" not in log.split("storage error")[-1]
        subprocess.run(["bash", str(POSTGRES_SCRIPT), "start", directory], check=True, capture_output=True)
        done = subprocess.run([sys.executable, "-m", "dse", *args, "search.resume=true",
                               f"hydra.run.dir={tmp_path / 'b'}"], cwd=ROOT, capture_output=True, text=True,
                              timeout=900)
        assert done.returncode == 0, done.stderr[-3000:]
        rows = list(csv.DictReader((tmp_path / "b" / "trials.csv").open()))
        assert sorted(int(r["number"]) for r in rows) == list(range(len(rows)))
        assert sum(r["state"] == "COMPLETE" for r in rows) == n_trials
        assert not [r for r in rows if r["state"] in ("RUNNING", "WAITING")]
        assert all("died" in r["error"] for r in rows if r["state"] == "FAIL")  # only the trials cut off
    finally:
        subprocess.run(["bash", str(POSTGRES_SCRIPT), "stop", directory], capture_output=True)
        shutil.rmtree(directory, ignore_errors=True)


# -- the journal file on one machine ------------------------------------------------------------------------
@pytest.mark.slow
def test_journal_workers_end_with_exactly_n_trials(tmp_path: Path) -> None:
    n_trials = 37
    proc = start_search(["search.progress=false", "system=systolic", "model=smollm2_135m", "accuracy.objective=none",
                         "search.workers=3", f"search.n_trials={n_trials}"], tmp_path / "run")
    assert proc.wait(timeout=600) == 0, (tmp_path / "run.log").read_text()[-3000:]
    rows = list(csv.DictReader((tmp_path / "run" / "trials.csv").open()))
    assert [int(r["number"]) for r in rows] == list(range(n_trials))
    assert all(r["state"] == "COMPLETE" for r in rows)  # (how the trials spread over the workers is timing)
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["this_session"]["asked"] == n_trials


@pytest.mark.real_model
def test_journal_four_workers_survive_kill_9_mid_trial_and_while_measuring(tmp_path: Path) -> None:
    n_trials = 30
    run_dir, cache = tmp_path / "run", tmp_path / "cache"
    proc = start_search([*COUPLED, "search.workers=4", f"search.n_trials={n_trials}",
                         f"accuracy.cache_dir={cache}"], run_dir)
    journal = run_dir / "study.journal"
    try:
        def held_by(path: Path) -> str | None:
            """Who holds a key's lock file now (its content), or None when it is free."""
            with path.open("a+") as fh:
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    fh.seek(0)
                    return fh.read().strip()
                fcntl.flock(fh, fcntl.LOCK_UN)
            return None

        def lock_holder() -> tuple[str, str] | None:  # a per-key lock file held by a worker (the local lease)
            for path in (cache / "locks").glob("*") if (cache / "locks").is_dir() else []:
                owner = held_by(path)
                if not owner or pid_of(owner) == proc.pid:
                    continue
                # a worker writes its name just after it takes the lock: the content read at that instant can
                # still name the previous holder, so the holder counts once it reads the same a moment later
                time.sleep(0.3)
                if held_by(path) == owner:
                    return path.name, owner
            return None

        key, holder = wait_for(lock_holder, proc, "a worker measuring an accuracy key")
        os.kill(pid_of(holder), signal.SIGKILL)

        def storage() -> Any:
            return (JournalStorage(JournalFileBackend(str(journal), lock_obj=FlockJournalLock(str(journal))))
                    if journal.exists() else None)

        victim = wait_for(lambda: storage() and running_worker(storage(), {proc.pid, pid_of(holder)}), proc,
                          "a running trial")
        os.kill(pid_of(victim), signal.SIGKILL)
        assert proc.wait(timeout=900) == 0, (tmp_path / "run.log").read_text()[-3000:]
        check_outcome(run_dir, n_trials, victim)
        import sqlite3

        with sqlite3.connect(cache / "accuracy.sqlite") as db:
            rows = db.execute("SELECT key, tokens, identity, created, measured_by FROM measurements").fetchall()
        assert rows and all(r[1] > 0 and json.loads(r[2]) and r[3] for r in rows)  # no partial rows
        taken = [r for r in rows if r[0].startswith(key)]
        assert taken and taken[0][4] != holder  # the key the killed worker was measuring: measured by another
        assert f"{holder} took it and stopped before storing it" in (tmp_path / "run.log").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()


# -- bad input ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("overrides", "message"), [
    (["search.workers=0"], r"search\.workers: must be >= 1"),
    (["search.storage=postgresql://tide@127.0.0.1:1/tide"], r"search\.storage: cannot open postgresql"),
    (["search.storage=postgress://tide@127.0.0.1/tide"], r"search\.storage: cannot open postgress"),
    (["search.join=true", "search.resume=true"], r"search\.join"),
    (["search.grace_period=5", "search.heartbeat_interval=10"], r"search\.grace_period"),
])
def test_bad_worker_settings_are_refused_before_any_work(make_cfg: Callable[..., Config], tmp_path: Path,
                                                         overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        run_search(make_cfg(["search.progress=false", *overrides]), tmp_path / "run")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("mode", ["search.resume=true", "search.join=true"])
def test_a_study_with_other_objectives_is_refused(make_cfg: Callable[..., Config], pg_url: str, tmp_path: Path,
                                                  mode: str) -> None:
    run_search(make_cfg(["search.n_trials=2", "search.progress=false", f"search.storage={pg_url}"]), tmp_path / "a")
    other = make_cfg(["search.n_trials=2", "search.progress=false", f"search.storage={pg_url}", mode],
                     system__objectives={"latency_s": "minimize", "area_mm2": "minimize"})
    with pytest.raises(ConfigError, match=r"system\.objectives"):
        run_search(other, tmp_path / "b")


# -- clusters: hydra-submitit-launcher ----------------------------------------------------------------------
def test_cluster_launcher_config_composes_for_slurm() -> None:
    proc = subprocess.run([sys.executable, "-m", "dse", "hydra/launcher=cluster", "--cfg", "hydra", "-p",
                           "hydra.launcher"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "submitit_launcher.SlurmLauncher" in proc.stdout and "cpus_per_task: 4" in proc.stdout


@pytest.mark.slow
def test_cluster_jobs_are_workers_of_one_study(pg_url: str, tmp_path: Path) -> None:
    """hydra/launcher=cluster_local: the SLURM set-up run by submitit's local executor (jobs as processes)."""
    proc = subprocess.run(
        [sys.executable, "-m", "dse", "-m", "hydra/launcher=cluster_local", f"search.storage={pg_url}",
         "search.join=true", "search.job=range(3)", "search.n_trials=45", "system=systolic", "model=smollm2_135m",
         "accuracy.objective=none", "search.progress=false", f"hydra.sweep.dir={tmp_path}"],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = optuna.load_study(study_name="tide", storage=pg_url)  # one study (not one per job)
    trials = study.get_trials(deepcopy=False)
    assert [t.number for t in trials] == list(range(45))
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    for job in range(3):  # each job worked on that one study and ended when it was complete
        summary = json.loads((tmp_path / str(job) / "summary.json").read_text())
        assert summary["study_name"] == "tide" and summary["n_trials"] == 45


# -- the rules, unit by unit --------------------------------------------------------------------------------
def test_what_counts_toward_n_trials() -> None:
    from optuna.trial import TrialState, create_trial

    def trial(state: TrialState, **attrs: Any) -> optuna.trial.FrozenTrial:
        return create_trial(state=state, values=[1.0] if state == TrialState.COMPLETE else None, user_attrs=attrs)

    assert counts(trial(TrialState.COMPLETE))
    assert counts(trial(TrialState.WAITING)) and counts(trial(TrialState.RUNNING))
    assert counts(trial(TrialState.FAIL, error="ValueError: the design's own failure"))  # retrying fails again
    assert not counts(trial(TrialState.FAIL, error="its worker vm:1 died", lost=True))  # redone
    assert not counts(trial(TrialState.FAIL))  # failed by a heartbeat check of an older TIDE: redone


def test_threads_and_seeds_per_worker(make_cfg: Callable[..., Config]) -> None:
    from dse.study import worker_seed
    from dse.workers import threads_per_worker

    assert threads_per_worker(0, 2, cores=2) == 1 and threads_per_worker(0, 4, cores=2) == 1
    assert threads_per_worker(0, 2, cores=16) == 8 and threads_per_worker(3, 4, cores=16) == 3  # stated: kept
    cfg = make_cfg(["search.seed=5", "search.workers=3", "search.job=2"])
    seeds = {worker_seed(cfg.search, w) for w in range(3)}
    assert len(seeds) == 3 and worker_seed(make_cfg(["search.seed=5"]).search) == 5  # one worker: unchanged
    other_job = make_cfg(["search.seed=5", "search.workers=3", "search.job=1"])
    assert not seeds & {worker_seed(other_job.search, w) for w in range(3)}


def test_failing_designs_count_and_the_study_still_ends_at_n_trials(make_cfg: Callable[..., Config],
                                                                  tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A design whose evaluation raises is a FAIL that counts (it would fail again): the loop ends."""
    from dse.systems.systolic import SystolicSystem

    def broken(self: Any, point: Any, extra: Any = None) -> Any:
        raise ValueError("no such design")

    monkeypatch.setattr(SystolicSystem, "evaluate", broken)
    summary = run_search(make_cfg(["search.n_trials=6", "search.progress=false"]), tmp_path)
    assert summary["n_trials"] == 6 and summary["n_failed"] == 6


def test_the_ledger_counts_as_a_full_scan_does() -> None:
    """The ledger rescans only what follows the finished prefix; its count must equal a scan of every trial
    while trials finish out of order, fail, and are retried."""
    from dse.coordination import Ledger, quota_used

    study = optuna.create_study()
    ledger = Ledger()
    running = [study.ask() for _ in range(3)]
    for step in range(12):
        trials = study.get_trials(deepcopy=False)
        assert ledger.look(trials)[0] == quota_used(trials)
        if step % 3 == 0 and running:
            study.tell(running.pop(1 if len(running) > 1 else 0), 1.0)  # out of order
        elif step % 3 == 1:
            t = study.ask()
            t.set_user_attr("error", "its worker died")
            t.set_user_attr("lost", True)
            study.tell(t, state=optuna.trial.TrialState.FAIL)
            study.enqueue_trial({})  # its retry
        else:
            running.append(study.ask())
    trials = study.get_trials(deepcopy=False)
    assert ledger.look(trials)[0] == quota_used(trials) == Ledger().look(trials)[0]


@pytest.mark.slow
def test_when_every_worker_dies_the_parent_says_the_study_is_incomplete(tmp_path: Path) -> None:
    proc = start_search(["search.progress=false", "system=systolic", "model=smollm2_135m", "accuracy.objective=none",
                         "search.workers=2", "search.n_trials=1000000"], tmp_path / "run")
    journal = tmp_path / "run" / "study.journal"
    try:
        def two_workers() -> set[int] | None:
            study = created_study(JournalStorage(JournalFileBackend(
                str(journal), lock_obj=FlockJournalLock(str(journal))))) if journal.exists() else None
            if study is None:
                return None
            pids = {pid_of(str(t.user_attrs["worker"])) for t in study.get_trials(deepcopy=False)
                    if "worker" in t.user_attrs}
            return pids if len(pids) == 2 else None

        for pid in wait_for(two_workers, proc, "both workers at work"):
            os.kill(pid, signal.SIGKILL)
        assert proc.wait(timeout=300) == 0  # the results of the finished trials are written
        log = (tmp_path / "run.log").read_text()
        assert log.count("was killed (SIGKILL)") == 2
        assert "the workers stopped before it was complete; continue it with search.resume=true" in log
        assert json.loads((tmp_path / "run" / "summary.json").read_text())["n_trials"] >= 2
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_repeated_design_does_not_inherit_the_retry_mark() -> None:
    """A retry's ``retry_of`` says which dead trial it redoes; a later trial of the same design that copies its
    result (``repeat_of``) must not claim to redo that trial too."""
    from dse.study import Memo

    study = optuna.create_study()
    study.enqueue_trial({"x": 1}, user_attrs={"retry_of": 0})
    t = study.ask({"x": optuna.distributions.CategoricalDistribution([1, 2])})
    t.set_user_attr("worker", "vm:1")
    study.tell(t, 1.0)
    seen = Memo(study).get({"x": 1})
    assert seen is not None and seen.number == t.number
    assert not {"retry_of", "worker", "lost", "error"} & set(seen.attrs)
