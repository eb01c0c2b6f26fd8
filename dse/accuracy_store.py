"""Where accuracy measurements live, and how workers avoid measuring a key twice.

Two stores with one interface (:class:`AccuracyStore`), one table layout and the same keys (the oracle's
sha256 of everything that affects a measurement):

- :class:`LocalStore`: an SQLite file in the cache directory (WAL mode), for the processes of one machine. A
  worker that measures holds an ``flock`` on a per-key lock file; the others wait on it and then read the
  result. The kernel releases the lock of a process that dies, so a killed worker's key is taken over at once.
- :class:`RdbStore`: tables ``tide_accuracy`` and ``tide_accuracy_lease`` in the study's own database (any
  SQLAlchemy URL, PostgreSQL for several machines). A worker that needs a key nobody has measured takes a lease
  (key, owner, expiry by the database's clock) and renews it while it measures; the others poll until the
  measurement is there. A lease that is not renewed (its owner died, or lost the network) expires after
  ``lease_s`` and the next worker that needs the key takes it over. The measurement row and the removal of the
  lease are one transaction: a row is never half-written and a finished key never keeps a lease.

This module is not part of the emulation fingerprint (``dse.oracle``): how measurements are stored does not
change what they are.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import fcntl
import json
import logging
import math
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dse.host import worker_id

log = logging.getLogger(__name__)

COLUMNS = ("key", "ppl", "tokens", "identity", "seconds", "created", "stats", "measured_by")


@dataclass(frozen=True)
class Row:
    """One stored measurement (``ppl`` inf where the model diverged)."""

    ppl: float
    tokens: int
    seconds: float
    stats: dict[str, Any] | None = None
    measured_by: str | None = None


@dataclass(frozen=True)
class Fresh:
    """What a measurement returns to the store: the row and the identity it is recorded with."""

    row: Row
    identity: dict[str, Any]


def _row(ppl: Any, tokens: Any, seconds: Any, stats: Any, by: Any) -> Row:
    return Row(float(ppl) if ppl is not None else math.inf, int(tokens), float(seconds or 0.0),
               json.loads(stats) if stats else None, by)


def _values(key: str, fresh: Fresh, owner: str) -> dict[str, Any]:
    r = fresh.row
    return {"key": key, "ppl": r.ppl if math.isfinite(r.ppl) else None, "tokens": r.tokens,
            "identity": json.dumps(fresh.identity, sort_keys=True, default=str), "seconds": r.seconds,
            "created": time.time(), "stats": json.dumps(r.stats) if r.stats else None, "measured_by": owner}


class AccuracyStore(abc.ABC):
    """Measurements by key; :meth:`measure_once` runs a measurement unless some worker has or is doing it."""

    location: str

    @abc.abstractmethod
    def lookup(self, key: str) -> Row | None: ...

    @abc.abstractmethod
    def measure_once(self, key: str, measure: Callable[[], Fresh]) -> tuple[Row, bool]:
        """The stored row of ``key``, measuring it (``measure()``) if nobody has; True when measured here."""


class LocalStore(AccuracyStore):
    """SQLite file + per-key ``flock`` (one machine)."""

    def __init__(self, db_path: Path, owner: str = "") -> None:
        self.db_path = db_path
        self.location = str(db_path)
        self.owner = owner or worker_id()
        self._open()

    def _open(self) -> None:
        """Create the table; a damaged store is moved aside (its measurements can be re-measured) with a
        warning naming both paths, and a new one started."""
        try:
            self._create_table()
        except sqlite3.DatabaseError as exc:
            aside = self.db_path.with_name(f"{self.db_path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
            for suffix in ("", "-wal", "-shm"):
                part = self.db_path.with_name(self.db_path.name + suffix)
                if part.exists():
                    part.rename(aside.with_name(aside.name + suffix))
            log.warning("accuracy cache %s is damaged (%s): moved aside to %s; measurements will be re-made",
                        self.db_path, exc, aside)
            self._create_table()

    def _create_table(self) -> None:
        with self._db() as db:
            db.execute("CREATE TABLE IF NOT EXISTS measurements (key TEXT PRIMARY KEY, ppl REAL, tokens INTEGER, "
                       "identity TEXT, seconds REAL, created REAL, stats TEXT, measured_by TEXT)")
            columns = {row[1] for row in db.execute("PRAGMA table_info(measurements)")}
            for column in ("stats", "measured_by"):  # caches written by older versions
                if column not in columns:
                    db.execute(f"ALTER TABLE measurements ADD COLUMN {column} TEXT")

    @contextlib.contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.db_path, timeout=120)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            yield db
            db.commit()
        finally:
            db.close()

    def lookup(self, key: str) -> Row | None:
        with self._db() as db:
            row = db.execute("SELECT ppl, tokens, seconds, stats, measured_by FROM measurements WHERE key = ?",
                             (key,)).fetchone()
        return None if row is None else _row(*row)

    @contextlib.contextmanager
    def _key_lock(self, key: str) -> Iterator[str]:
        """Hold the key's lock file; yields who held it last (the file names its holder)."""
        lock_dir = self.db_path.parent / "locks"
        lock_dir.mkdir(exist_ok=True)
        with (lock_dir / key[:32]).open("a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            fh.seek(0)
            previous = fh.read().strip()
            fh.seek(0)
            fh.truncate()
            fh.write(self.owner)  # who measures the key (for an operator; the flock itself is the lease)
            fh.flush()
            try:
                yield previous
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def measure_once(self, key: str, measure: Callable[[], Fresh]) -> tuple[Row, bool]:
        hit = self.lookup(key)
        if hit is not None:
            return hit, False
        with self._key_lock(key) as previous:
            hit = self.lookup(key)  # another worker may have finished it while we waited
            if hit is not None:
                return hit, False
            if previous and previous != self.owner:
                log.warning("accuracy key %s: %s took it and stopped before storing it (its process died); "
                            "taken over by %s", key[:12], previous, self.owner)
            fresh = measure()
            values = _values(key, fresh, self.owner)
            with self._db() as db:
                db.execute(f"INSERT OR REPLACE INTO measurements ({', '.join(COLUMNS)}) VALUES "
                           f"({', '.join('?' * len(COLUMNS))})", tuple(values[c] for c in COLUMNS))
        return dataclasses.replace(fresh.row, measured_by=self.owner), True


def create_tables(meta: Any, engine: Any, tries: int = 3) -> None:
    """Create ``meta``'s tables if missing. Workers starting together on a new database all try; all but one
    may collide (PostgreSQL: duplicate type or relation): the tables exist then, so look again."""
    import sqlalchemy as sa

    for attempt in range(tries):
        try:
            meta.create_all(engine, checkfirst=True)
            return
        except sa.exc.DBAPIError:
            if attempt == tries - 1:
                raise
            time.sleep(0.2 * (attempt + 1))


#: the database's own clock in seconds since the epoch (leases of several machines need one clock)
NOW_SQL = {"postgresql": "SELECT EXTRACT(EPOCH FROM clock_timestamp())",
           "sqlite": "SELECT (julianday('now') - 2440587.5) * 86400.0",
           "mysql": "SELECT UNIX_TIMESTAMP(NOW(6))"}


class RdbStore(AccuracyStore):
    """Measurements and leases in the study's database (SQLAlchemy URL)."""

    def __init__(self, url: str, owner: str = "", lease_s: float = 60.0, poll_s: float = 0.5) -> None:
        import sqlalchemy as sa

        self.sa = sa
        self.owner = owner or worker_id()
        self.lease_s = lease_s
        self.poll_s = poll_s
        self.engine = sa.create_engine(url, pool_pre_ping=True)
        self.location = self.engine.url.render_as_string(hide_password=True)
        meta = sa.MetaData()
        self.rows = sa.Table(
            "tide_accuracy", meta, sa.Column("key", sa.String(64), primary_key=True), sa.Column("ppl", sa.Float),
            sa.Column("tokens", sa.Integer, nullable=False), sa.Column("identity", sa.Text, nullable=False),
            sa.Column("seconds", sa.Float), sa.Column("created", sa.Float, nullable=False),
            sa.Column("stats", sa.Text), sa.Column("measured_by", sa.String(255)))
        self.leases = sa.Table(
            "tide_accuracy_lease", meta, sa.Column("key", sa.String(64), primary_key=True),
            sa.Column("owner", sa.String(255), nullable=False), sa.Column("expires", sa.Float, nullable=False),
            sa.Column("taken_over", sa.Integer, nullable=False, default=0))
        create_tables(meta, self.engine)
        self._now_sql = sa.text(NOW_SQL.get(self.engine.dialect.name, ""))

    def _now(self, conn: Any) -> float:
        if not self._now_sql.text:  # a database without a known clock query: this machine's clock
            return time.time()
        return float(conn.execute(self._now_sql).scalar())

    def lookup(self, key: str) -> Row | None:
        t = self.rows.c
        with self.engine.connect() as conn:
            row = conn.execute(self.sa.select(t.ppl, t.tokens, t.seconds, t.stats, t.measured_by)
                               .where(t.key == key)).first()
        return None if row is None else _row(*row)

    def lease_of(self, key: str) -> tuple[str, float, int] | None:
        """(owner, expiry, take-overs) of the lease on ``key``, if any (for reports and tests)."""
        t = self.leases.c
        with self.engine.connect() as conn:
            row = conn.execute(self.sa.select(t.owner, t.expires, t.taken_over).where(t.key == key)).first()
        return None if row is None else (row[0], float(row[1]), int(row[2]))

    def _acquire(self, key: str) -> bool:
        sa, t = self.sa, self.leases.c
        try:
            with self.engine.begin() as conn:
                conn.execute(self.leases.insert().values(key=key, owner=self.owner,
                                                         expires=self._now(conn) + self.lease_s, taken_over=0))
            return True
        except sa.exc.IntegrityError:
            pass
        with self.engine.begin() as conn:  # an expired lease: its owner stopped renewing it
            now = self._now(conn)
            old = conn.execute(sa.select(t.owner).where(t.key == key)).scalar()
            taken = conn.execute(self.leases.update().where(t.key == key, t.expires < now)
                                 .values(owner=self.owner, expires=now + self.lease_s,
                                         taken_over=t.taken_over + 1)).rowcount
        if taken:
            log.warning("accuracy key %s: the lease of %s expired (no renewal for %.0f s); taken over by %s",
                        key[:12], old, self.lease_s, self.owner)
        return bool(taken)

    def _renew(self, key: str) -> bool:
        t = self.leases.c
        with self.engine.begin() as conn:
            return bool(conn.execute(self.leases.update().where(t.key == key, t.owner == self.owner)
                                     .values(expires=self._now(conn) + self.lease_s)).rowcount)

    def _release(self, key: str, conn: Any | None = None) -> None:
        t = self.leases.c
        with contextlib.nullcontext(conn) if conn is not None else self.engine.begin() as c:
            c.execute(self.leases.delete().where(t.key == key, t.owner == self.owner))

    @contextlib.contextmanager
    def _renewing(self, key: str) -> Iterator[None]:
        """Renew the lease every quarter of its length while the block runs."""
        stop = threading.Event()

        def renew() -> None:
            while not stop.wait(self.lease_s / 4):
                try:
                    if not self._renew(key):
                        log.warning("accuracy key %s: lease lost to another worker while measuring", key[:12])
                        return
                except Exception as exc:  # the database went away: the measurement's own writes will say so
                    log.warning("accuracy key %s: cannot renew the lease: %s", key[:12], exc)

        thread = threading.Thread(target=renew, name=f"lease-{key[:8]}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def measure_once(self, key: str, measure: Callable[[], Fresh]) -> tuple[Row, bool]:
        waited_on: str | None = None
        while True:
            hit = self.lookup(key)
            if hit is not None:
                return hit, False
            if self._acquire(key):
                break
            lease = self.lease_of(key)
            if lease is not None and lease[0] != waited_on:
                waited_on = lease[0]
                log.info("accuracy key %s is being measured by %s; waiting for it", key[:12], waited_on)
            time.sleep(self.poll_s)
        try:
            with self._renewing(key):
                fresh = measure()
        except BaseException:
            with contextlib.suppress(Exception):
                self._release(key)
            raise
        mine = dataclasses.replace(fresh.row, measured_by=self.owner)
        try:
            with self.engine.begin() as conn:  # the row and the end of the lease: one transaction
                conn.execute(self.rows.insert().values(**_values(key, fresh, self.owner)))
                self._release(key, conn)
        except self.sa.exc.IntegrityError:  # someone measured it too after our lease lapsed: theirs stands
            self._release(key)
            return self.lookup(key) or mine, True
        return mine, True

    def integrity(self) -> dict[str, int]:
        """Counts a test or an operator checks after a crash: rows, incomplete rows, leases left."""
        sa, t = self.sa, self.rows.c
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(sa.func.count()).select_from(self.rows)).scalar()
            bad = conn.execute(sa.select(sa.func.count()).select_from(self.rows).where(
                sa.or_(t.tokens.is_(None), t.tokens <= 0, t.identity.is_(None), t.created.is_(None)))).scalar()
            leases = conn.execute(sa.select(sa.func.count()).select_from(self.leases)).scalar()
        return {"rows": int(rows or 0), "incomplete": int(bad or 0), "leases": int(leases or 0)}

    def close(self) -> None:
        self.engine.dispose()


def store_for(target: str, lease_s: float) -> AccuracyStore | None:
    """The store of a study in ``target``: a database URL keeps the measurements in that database (shared by
    every machine working on the study); a journal file uses the local cache (None)."""
    return RdbStore(target, lease_s=lease_s) if "://" in target else None
