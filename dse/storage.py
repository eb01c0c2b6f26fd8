"""Where a study lives: Optuna storages opened from config (TIDE's journal file, or a database), the journal's
format check, group commit and file lock (the one module built on Optuna's private journal modules), and the run
directory's claim to one study.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.storages.journal._file import BaseJournalFileLock, get_lock_file
from optuna.storages.journal._storage import JournalOperation

from dse.config import ConfigError, SearchConfig, first_line
from dse.coordination import StorageLost

JOURNAL_NAME = "study.journal"
TABLE_RACE_TRIES = 5


def storage_target(search: SearchConfig, run_dir: Path) -> str:
    """The storage a run uses: the journal in the run directory, or ``search.storage`` (a path or a URL)."""
    return str(run_dir / JOURNAL_NAME) if search.storage is None else search.storage


def make_storage(search: SearchConfig, run_dir: Path) -> optuna.storages.BaseStorage:
    """Journal file in the run dir by default; ``search.storage`` may name a journal file or an RDB URL.
    Anything that keeps the storage from opening is a :class:`ConfigError` naming it (nothing written)."""
    return open_storage(storage_target(search, run_dir), search.heartbeat_interval, search.grace_period)


def open_storage(target: str, heartbeat_interval: int = 10, grace_period: int = 30) -> optuna.storages.BaseStorage:
    """The storage of ``target``: a database URL (with heartbeats) or a journal file (TIDE's lock)."""
    if "://" in target:
        import sqlalchemy.exc

        for attempt in range(TABLE_RACE_TRIES):
            try:
                with warnings.catch_warnings():  # heartbeat_interval is marked experimental
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    return optuna.storages.RDBStorage(
                        target, heartbeat_interval=heartbeat_interval, grace_period=grace_period,
                        engine_kwargs={"pool_pre_ping": True})  # stale trials: dse.coordination.reap
            except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError):
                # workers starting together on a new database all create Optuna's tables; all but one collide
                # (PostgreSQL: duplicate pg_type / relation): the tables are there now, look again
                if attempt == TABLE_RACE_TRIES - 1:
                    raise
                time.sleep(0.2 * (attempt + 1))
            except Exception as exc:  # missing driver, unreachable server, a file that is no database, ...
                raise ConfigError(f"search.storage: cannot open {target}: {type(exc).__name__}: "
                                  f"{first_line(exc)}") from None
    path = Path(target)
    check_journal(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(TrialCommitJournal(str(path), lock_obj=FlockJournalLock(str(path))))
    except OSError as exc:
        raise ConfigError(f"search.storage: cannot open the journal {path}: {exc.strerror or exc}") from None


def check_journal(path: Path) -> None:
    """A journal that exists must be a file of complete JSON records: a damaged one is named, with how to
    recover, before anything is appended to it."""
    if not path.exists():
        return
    if not path.is_file():
        raise ConfigError(f"search.storage: {path} is not a journal file (it is a directory or a special file)")
    try:
        lines = path.read_bytes().split(b"\n")
    except OSError as exc:
        raise ConfigError(f"search.storage: cannot read the journal {path}: {exc.strerror or exc}") from None
    records = [line for line in lines if line.strip()]
    for i, line in enumerate(records, start=1):
        try:
            json.loads(line)
        except ValueError:
            cut = " (its last record is incomplete, as a crash mid-write leaves it)" if i == len(records) else ""
            raise ConfigError(
                f"search.storage: the journal {path} is damaged at record {i} of {len(records)}{cut}; keep the "
                f"intact records with `head -n {i - 1} {path} > {path}.repaired` and use that file, or move the "
                "journal aside and start a new study") from None


#: journal operations that end a unit of work: the file is synced to disk after them (trials: at most once
#: per SYNC_INTERVAL_S, see TrialCommitJournal)
COMMITS = frozenset({JournalOperation.CREATE_STUDY, JournalOperation.DELETE_STUDY,
                     JournalOperation.SET_TRIAL_STATE_VALUES, JournalOperation.DISCARD_TRIALS})
STUDY_OPS = frozenset({JournalOperation.CREATE_STUDY, JournalOperation.DELETE_STUDY})
SYNC_INTERVAL_S = 1.0


class CannotWrite(StorageLost):
    """The run directory or the journal cannot be written (a full disk, a read-only or unwritable directory)."""


def cannot_write(path: str | Path, exc: OSError, journal: str | Path, what: str) -> CannotWrite:
    """One line naming the path and what to do; the journal keeps every finished trial."""
    return CannotWrite(f"cannot write {path} ({exc.strerror or exc}); {what}. The study's finished trials are kept in "
                       f"{journal}: free space or make the directory writable, then continue with search.resume=true "
                       "(a resume of a study with all its trials writes its results)")


def append_whole(path: str, data: bytes, sync: bool) -> None:
    """Append ``data`` to ``path`` whole or not at all: when the disk is full mid-record the file is cut back to
    where it was, so a journal never ends in half a record (a :class:`CannotWrite` names it)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    start = os.fstat(fd).st_size
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if sync:
            os.fsync(fd)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, start)
        raise cannot_write(path, exc, path, "the record being appended was not kept") from exc
    finally:
        os.close(fd)


class TrialCommitJournal(JournalFileBackend):
    """Optuna's journal file with group commit. Every record is appended under the file lock and is visible
    to other processes at once, as before; but instead of an fsync after each of a trial's ~20 records
    (about 4 ms each on this machine's disk), the file is synced when a study is created or deleted, when a
    trial finishes and the last sync is SYNC_INTERVAL_S old, and when the search loop ends (:meth:`sync`).
    fsync writes every earlier append of the file too. A process killed with -9 loses nothing (the page
    cache holds its appends); a power loss can lose the trials of the last second, which a resume then runs
    again (a record cut in the middle is named by :func:`check_journal`)."""

    def __init__(self, file_path: str, *, lock_obj: BaseJournalFileLock | None = None) -> None:
        super().__init__(file_path, lock_obj=lock_obj)
        self._synced = time.monotonic()
        self._dirty = False

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        text = "\n".join(json.dumps(log, separators=(",", ":")) for log in logs) + "\n"
        ops = {log.get("op_code") for log in logs}
        now = time.monotonic()
        sync = bool(ops & STUDY_OPS) or (bool(ops & COMMITS) and now - self._synced >= SYNC_INTERVAL_S)
        with get_lock_file(self._lock):
            append_whole(self._file_path, text.encode("utf-8"), sync)
        self._dirty = not sync
        if sync:
            self._synced = now

    def sync(self) -> None:
        """Write every append to disk now (the end of a search loop)."""
        if self._dirty:
            append_whole(self._file_path, b"", True)
            self._dirty = False
            self._synced = time.monotonic()


def sync_storage(study: optuna.Study) -> None:
    """Flush a group-committed journal to disk (other storages commit each write themselves)."""
    backend = getattr(study._storage, "_backend", None)
    if isinstance(backend, TrialCommitJournal):
        backend.sync()


class FlockJournalLock(BaseJournalFileLock):
    """An exclusive ``flock`` on ``<journal>.flock`` around each append: a few microseconds (Optuna's default
    open-lock creates, renames and deletes a file per record, about 1 ms here), and the kernel releases it
    when its holder dies, so a worker killed with -9 never leaves a stale lock. ``flock`` works between the
    processes of one machine (local file systems); several machines share a study through an RDB storage.
    Every process writing the journal must use this lock (all TIDE processes do)."""

    def __init__(self, journal: str) -> None:
        self._path = journal + ".flock"
        self._fd: int | None = None

    def acquire(self) -> bool:
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        self._fd = fd
        return True

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


RUN_RECORD = "run.json"


def claim_run_dir(run_dir: Path, target: str, study_name: str) -> None:
    """A run directory belongs to one study: reusing it for another (storage or name) is refused."""
    path = run_dir / RUN_RECORD
    mine = {"storage": target, "study_name": study_name}
    if path.is_file():
        record = json.loads(path.read_text())
        theirs = {k: record.get(k) for k in mine}  # the rest (environment, accuracy keys) describes a session
        if theirs != mine:
            raise ConfigError(f"hydra.run.dir: {run_dir} holds the results of study {theirs.get('study_name')!r} "
                              f"in {theirs.get('storage')}; use another run directory, or resume that study there "
                              "with its storage and name")
    elif (run_dir / "trials.csv").exists():
        raise ConfigError(f"hydra.run.dir: {run_dir} holds the results of another run; use another run directory")


def record_run_dir(run_dir: Path, target: str, study_name: str, **more: Any) -> None:
    """``run.json``: the storage and study the directory belongs to, and ``more`` (the last session's environment
    and the accuracy keys its results rest on)."""
    path = run_dir / RUN_RECORD
    record = json.loads(path.read_text()) if path.is_file() and more else {}
    record.update({"storage": target, "study_name": study_name, **more})
    path.write_text(json.dumps(record, indent=1, sort_keys=True, default=str) + "\n")
