"""Many workers, one study: who asks the next trial, what counts toward ``search.n_trials``, and what becomes
of the trial of a worker that died.

- **Quota.** ``search.n_trials`` is the study's total over all workers and sessions. A trial counts while it
  is WAITING or RUNNING and once it is COMPLETE; a FAIL counts when its design failed (its evaluation
  raised: retrying would fail again), not when its worker was lost (killed, interrupted: it is redone).
  Checking the quota and asking happen under one lock (:class:`AskLock`), so N workers end with exactly
  ``n_trials`` counted trials: no worker asks a trial too many at the end.
- **Dead workers.** Before each ask, under the lock, the trials of dead workers are failed and retried
  (:class:`Retry`: a WAITING trial with the same parameters, ``retry_of`` naming the original): a worker of
  this machine whose process no longer exists at once (journal and database alike), a worker of another
  machine when its heartbeat is older than ``search.grace_period`` (database storages; Optuna's heartbeat is
  wired into ``study.optimize`` only, so the ask/tell loop runs its own :class:`Heartbeat` thread), and a
  trial asked but never claimed (its worker died inside the lock, between ask and writing its name).
- **Lock.** The journal file (one machine) and SQLite: an ``flock`` on a file beside it, released by the
  kernel when its holder dies. Other databases: a row lock (``SELECT ... FOR UPDATE`` on ``tide_ask_lock``)
  held by an open transaction, released by the server when the holder's connection drops.
"""

from __future__ import annotations

import abc
import contextlib
import fcntl
import logging
import os
import threading
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from dse.accuracy_store import create_tables
from dse.host import dead_here, worker_id

log = logging.getLogger(__name__)

LOST = "lost"  # user attribute of a FAIL whose worker was lost (killed, interrupted), not its design


def counts(trial: FrozenTrial) -> bool:
    """Whether ``trial`` counts toward ``search.n_trials``."""
    if trial.state in (TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING, TrialState.PRUNED):
        return True
    return trial.state == TrialState.FAIL and "error" in trial.user_attrs and not trial.user_attrs.get(LOST)


def quota_used(trials: list[FrozenTrial]) -> int:
    return sum(1 for t in trials if counts(t))


def quota_done(trials: list[FrozenTrial]) -> int:
    """The counted trials that are finished (quota_used less those still WAITING or RUNNING)."""
    return sum(1 for t in trials if t.state.is_finished() and counts(t))


class StorageLost(RuntimeError):
    """The study's storage stopped answering mid-run (a database that went away, a disk that failed)."""


def storage_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean the storage (not a design) failed."""
    import sqlalchemy.exc

    return (optuna.exceptions.StorageInternalError, sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError)


def storage_lost(target: str, exc: BaseException) -> StorageLost:
    from dse.config import first_line

    return StorageLost(f"search.storage: lost {target} ({type(exc).__name__}: {first_line(exc)}). The finished "
                       "trials are stored; when the storage is back, continue the study with search.resume=true "
                       "and the same search.study_name (trials this worker had running are failed and retried)")


# -- the ask lock -------------------------------------------------------------------------------------------
class AskLock(abc.ABC):
    @abc.abstractmethod
    @contextlib.contextmanager
    def held(self) -> Iterator[None]: ...

    def close(self) -> None:  # noqa: B027 (optional: a database lock has an engine to dispose of)
        """Release what the lock holds open (a database engine)."""


class ThreadAskLock(AskLock):
    """An in-memory study lives in one process: a thread lock is enough."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        with self._lock:
            yield


class FileAskLock(AskLock):
    """An exclusive ``flock`` on ``path`` (the processes of one machine)."""

    def __init__(self, path: str) -> None:
        self.path = path

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock


class RowAskLock(AskLock):
    """A row lock on ``tide_ask_lock`` (one row per study), held by an open transaction."""

    def __init__(self, url: str, study_name: str) -> None:
        import sqlalchemy as sa

        self.sa = sa
        self.name = study_name
        self.engine = sa.create_engine(url, pool_pre_ping=True, pool_size=1, max_overflow=1)
        meta = sa.MetaData()
        self.table = sa.Table("tide_ask_lock", meta, sa.Column("name", sa.String(512), primary_key=True))
        create_tables(meta, self.engine)
        with contextlib.suppress(sa.exc.IntegrityError), self.engine.begin() as conn:
            conn.execute(self.table.insert().values(name=study_name))

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        with self.engine.begin() as conn:
            if self.engine.dialect.name == "postgresql":  # a holder gone silent (its machine died) frees it
                conn.execute(self.sa.text("SET LOCAL idle_in_transaction_session_timeout = '600s'"))
            conn.execute(self.sa.select(self.table.c.name).where(self.table.c.name == self.name).with_for_update())
            yield

    def close(self) -> None:
        self.engine.dispose()


def ask_lock_for(target: str | None, study_name: str) -> AskLock:
    """The lock for a storage target (a journal path or a database URL; None: an in-memory study)."""
    if target is None:
        return ThreadAskLock()
    if "://" not in target:
        return FileAskLock(target + ".asklock")
    from sqlalchemy.engine import make_url

    url = make_url(target)
    if url.get_backend_name() == "sqlite":
        return FileAskLock((url.database or "sqlite-memory") + ".asklock")
    return RowAskLock(target, study_name)


# -- dead workers -------------------------------------------------------------------------------------------
class Retry:
    """A failed trial whose worker died is run again: a WAITING trial with its parameters (``retry_of``),
    at most ``max_retry`` times per original (Optuna's RetryFailedTrialCallback, without copying the dead
    trial's partial user attributes)."""

    def __init__(self, max_retry: int) -> None:
        self.max_retry = max_retry

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        history = [*trial.system_attrs.get("retry_history", []), trial.number]
        if len(history) > self.max_retry:
            log.warning("trial %d: its worker died; not retried (already retried %d times, search.max_retry)",
                        trial.number, len(history) - 1)
            return
        study.add_trial(optuna.trial.create_trial(
            state=TrialState.WAITING, params=trial.params, distributions=trial.distributions,
            user_attrs={"retry_of": trial.number},
            system_attrs={"failed_trial": history[0], "retry_history": history}))
        log.warning("trial %d: its worker died; its parameters are queued again", trial.number)


def reap(study: optuna.Study, trials: list[FrozenTrial], retry: Retry) -> list[int]:
    """Fail (and retry) the RUNNING trials whose worker is gone; call with the ask lock held. Returns their
    numbers. Each such trial records why (``error``) and that its design is not to blame (``lost``)."""
    storage = study._storage
    stale: set[int] = set()
    if optuna.storages._heartbeat.is_heartbeat_enabled(storage):  # the query fail_stale_trials makes
        stale = set(storage._get_stale_trial_ids(study._study_id))
    failed: list[int] = []
    for t in trials:
        if t.state != TrialState.RUNNING:
            continue
        worker = str(t.user_attrs.get("worker", ""))
        if t._trial_id in stale:
            why = f"its worker {worker or '(unclaimed)'} sent no heartbeat for search.grace_period; presumed died"
        elif not worker:
            why = "its worker died before claiming it"
        elif dead_here(worker):
            why = f"its worker {worker} died"
        else:
            continue
        try:
            storage.set_trial_user_attr(t._trial_id, "error", why)
            storage.set_trial_user_attr(t._trial_id, LOST, True)
            storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:  # finished meanwhile (its worker was only slow)
            continue
        retry(study, storage.get_trial(t._trial_id))
        failed.append(t.number)
    if failed:
        log.warning("failed %d trial(s) whose worker is gone: %s", len(failed), failed)
    return failed


class Heartbeat:
    """Writes the trial's heartbeat every ``interval`` seconds while it runs (database storages; a no-op
    elsewhere). A failed write is logged once: the next storage operation of the loop reports the loss."""

    def __init__(self, study: optuna.Study, trial: optuna.Trial) -> None:
        storage = study._storage
        self._enabled = optuna.storages._heartbeat.is_heartbeat_enabled(storage)
        self._storage: Any = storage
        self._trial_id = trial._trial_id
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Heartbeat:
        if self._enabled:
            self._storage.record_heartbeat(self._trial_id)
            self._thread = threading.Thread(target=self._run, name=f"heartbeat-{self._trial_id}", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        interval = self._storage.get_heartbeat_interval()
        while not self._stop.wait(interval):
            try:
                self._storage.record_heartbeat(self._trial_id)
            except Exception as exc:
                log.warning("heartbeat of trial id %d not written: %s", self._trial_id, exc)
                return

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


WAIT = "wait"  # claim: the quota is taken, but trials of other workers still run (one may die and be retried)


class Ledger:
    """The study's trials as the quota sees them. A finished trial never changes whether it counts, so the
    ledger remembers the longest finished prefix (by trial number) and its count, and each look scans only the
    trials after it: O(trials still open) per ask instead of O(all trials)."""

    def __init__(self) -> None:
        self._settled = 0  # trials[:_settled] are all finished
        self._counted = 0  # how many of them count

    def look(self, trials: list[FrozenTrial]) -> tuple[int, list[FrozenTrial]]:
        """(quota used, the trials after the finished prefix)."""
        i = self._settled
        while i < len(trials) and trials[i].state.is_finished():
            self._counted += counts(trials[i])
            i += 1
        self._settled = i
        rest = trials[i:]
        return self._counted + quota_used(rest), rest


def claim(study: optuna.Study, lock: AskLock, retry: Retry, n_total: int,
          exhausted: Callable[[], bool] = lambda: False, ledger: Ledger | None = None
          ) -> tuple[optuna.Trial, Heartbeat] | str | None:
    """Under the ask lock: reap dead workers' trials, then ask the next trial: a WAITING one (a retry) if
    any, else a new one if the study's quota has room. ``WAIT``: no room, but other workers' trials are still
    running (ask again shortly: if one of them dies, its retry needs a worker); None: the study is done. The
    trial is claimed (its ``worker`` attribute) and its heartbeat started before the lock is released.
    ``ledger``: the loop's (kept between calls; a fresh one scans every trial)."""
    ledger = ledger if ledger is not None else Ledger()
    with lock.held():
        used, rest = ledger.look(study.get_trials(deepcopy=False))
        if reap(study, rest, retry):
            used, rest = ledger.look(study.get_trials(deepcopy=False))
        waiting = any(t.state == TrialState.WAITING for t in rest)
        if exhausted():
            return None
        if not waiting and used >= n_total:
            me = worker_id()
            others = any(t.state == TrialState.RUNNING and t.user_attrs.get("worker") != me for t in rest)
            return WAIT if others else None
        with warnings.catch_warnings():  # "heartbeat is supposed to be used with Study.optimize": see Heartbeat
            warnings.filterwarnings("ignore", message="Heartbeat of storage", category=UserWarning)
            trial = study.ask()
        beat = Heartbeat(study, trial).start()
        study._storage.set_trial_user_attr(trial._trial_id, "worker", worker_id())
        return trial, beat
