"""The accuracy oracle: measured perplexity of a design's algorithms, persisted and shared.

The measuring itself is the proxy session's (``workloads.accuracy.session.ProxySession``: loading, calibration,
the rounding choice, the run, and what identifies a measurement); the oracle keeps the measurements. They are stored
(:mod:`dse.accuracy_store`: an SQLite file in the cache directory, or the study's own database) keyed by the sha256
of the session's description of the measurement: model file hash, evaluation- and calibration-text hashes, window
set-up, dtype, the fields the quantisation method reads, the KV selection, and a fingerprint of the emulation code
(so a change to the code that measures is never served measurements of the code before it). A search never
measures a key twice; workers sharing a store wait for the one measuring a key instead of measuring it again.

Importing this module imports no torch: the session (and with it torch) is imported when an oracle is built.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dse.accuracy_store import AccuracyStore, Fresh, LocalStore, Row
from dse.config import AccuracyConfig, ConfigError
from workloads.accuracy.measured import Measured, SelectionStats
from workloads.accuracy.specs import KVSpec, QuantSpec, SetupError

if TYPE_CHECKING:
    from workloads.accuracy.session import ProxySession


class AccuracySetupError(ConfigError):
    """The accuracy set-up cannot work (missing text, a model that cannot be found or loaded): bad input."""


@contextlib.contextmanager
def setup_errors() -> Iterator[None]:
    """The session's set-up errors as configuration errors (one line naming the key, exit status 2)."""
    try:
        yield
    except SetupError as exc:
        raise AccuracySetupError(str(exc)) from None


@dataclass(frozen=True)
class Measurement:
    """A stored measurement: what the session measured, its key, whether it came from the store and how long the
    measurement took when it was made."""

    measured: Measured
    key: str
    cached: bool
    seconds: float

    @property
    def ppl(self) -> float:
        return self.measured.ppl

    @property
    def tokens(self) -> int:
        return self.measured.tokens

    @property
    def selection(self) -> SelectionStats | None:
        return self.measured.selection


class AccuracyOracle:
    """Measurements of one accuracy set-up (``cfg``): keys, the store (default: the SQLite file in the cache
    directory; a study in a database shares the database's, see :mod:`dse.accuracy_store`) and the session that
    measures what the store lacks (built ``beside`` another oracle of the process, it shares that one's loaded
    proxy where only the windows differ)."""

    def __init__(self, cfg: AccuracyConfig, store: AccuracyStore | None = None, owner: str = "",
                 beside: AccuracyOracle | None = None) -> None:
        self.cfg = cfg
        self.setup = cfg.to_setup()
        self.cache_dir = self.setup.cache_dir
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        from workloads.accuracy.session import ProxySession  # torch: only once an oracle is built

        with setup_errors():  # a missing text or model is named now, before any study exists
            # ``beside``: another oracle of this process; one with other windows only shares its loaded proxy
            self.session: ProxySession = (beside.session.sibling(self.setup) if beside is not None
                                          else ProxySession(self.setup))
        self.store = store if store is not None else LocalStore(self.cache_dir / "accuracy.sqlite", owner)
        self.measured = 0

    @property
    def source(self) -> Path:
        """The proxy model's file or directory."""
        return self.session.source.path

    def identity(self) -> dict[str, Any]:
        """What every measurement of this set-up depends on (the session's identity; ``model`` is provenance)."""
        with setup_errors():
            return self.session.identity()

    def key(self, quant: QuantSpec, kv: KVSpec | None = None) -> str:
        """The sha256 of everything the measurement depends on (the model file by its content hash: checkouts with
        the same model share measurements)."""
        with setup_errors():
            payload = self.session.describe(quant, kv)
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()

    def lookup(self, key: str) -> Row | None:
        return self.store.lookup(key)

    def measure(self, quant: QuantSpec, kv: KVSpec | None = None) -> Measurement:
        """Perplexity under quantisation ``quant`` and KV selection ``kv`` (None: dense attention); measured only if
        no worker sharing the store has measured (or is measuring) the key."""
        key = self.key(quant, kv)

        def fresh() -> Fresh:
            start = time.monotonic()
            with setup_errors():
                m = self.session.measure(quant, kv)
                described = self.session.describe(quant, kv)
            return Fresh(Row(m.ppl, m.tokens, time.monotonic() - start, m.stats()),
                         {**described, "model": self.identity()["model"]})

        row, measured = self.store.measure_once(key, fresh)
        self.measured += measured
        return Measurement(Measured.from_stats(row.ppl, row.tokens, row.stats), key, not measured, row.seconds)

    def baseline(self) -> Measurement:
        """The proxy as loaded (no quantisation, dense attention)."""
        return self.measure(QuantSpec())

