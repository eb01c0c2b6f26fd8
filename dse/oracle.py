"""The accuracy oracle: measured perplexity of a quantisation configuration, persisted and shared.

Measurements are stored in SQLite (WAL mode) under the cache directory, keyed by the sha256 of every
input that affects them: model file hash, evaluation- and calibration-text hashes, window set-up,
dtype, every quantisation knob and the harness version. A search never measures a key twice; several
processes can share the cache: a per-key file lock makes the second worker wait for the first one's
result instead of measuring it again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import logging
import math
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dse.config import AccuracyConfig

log = logging.getLogger(__name__)

HARNESS_VERSION = 1  # bump when the measurement protocol changes


@dataclass(frozen=True)
class Measurement:
    ppl: float
    tokens: int
    key: str
    cached: bool
    seconds: float


class AccuracyOracle:
    def __init__(self, cfg: AccuracyConfig) -> None:
        from workloads.real_model import ModelSource, default_cache_dir

        self.cfg = cfg
        self.cache_dir = Path(cfg.cache_dir).expanduser() if cfg.cache_dir else default_cache_dir()
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.db_path = self.cache_dir / "accuracy.sqlite"
        self.text_path = cfg.path("text_path")
        self.calib_path = cfg.path("calib_path")
        if not self.text_path.is_file():
            raise FileNotFoundError(f"accuracy.text_path: {self.text_path} does not exist")
        self.source = ModelSource.resolve(cfg.model_path)
        self._identity: dict[str, Any] | None = None
        self._loaded: Any = None
        self._calib: dict[tuple[int, int], Any] = {}
        self.measured = 0
        with self._db() as db:
            db.execute("CREATE TABLE IF NOT EXISTS measurements (key TEXT PRIMARY KEY, ppl REAL, tokens INTEGER, "
                       "identity TEXT, seconds REAL, created REAL)")

    # -- keys ---------------------------------------------------------------------------------
    def identity(self) -> dict[str, Any]:
        if self._identity is None:
            from workloads.real_model import pick_device, pick_dtype
            from workloads.text import text_sha256

            dev = pick_device(self.cfg.device)
            self._identity = {
                "model": str(self.source.path), "model_sha256": self.source.fingerprint(),
                "text_sha256": text_sha256(self.text_path),
                "calib_sha256": text_sha256(self.calib_path) if self.calib_path.is_file() else None,
                "windows": self.cfg.windows, "seq_len": self.cfg.seq_len, "calib_windows": self.cfg.calib_windows,
                "dtype": str(pick_dtype(self.cfg.dtype, dev)), "harness": HARNESS_VERSION,
            }
        return self._identity

    def key(self, spec: Any) -> str:
        payload = {**self.identity(), "quant": dataclasses.asdict(spec)}
        if spec.method != "tender" or spec.mode != "calibrated":
            payload["calib_sha256"] = None
            payload["calib_windows"] = None
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()

    # -- storage ------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.db_path, timeout=120)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            yield db
            db.commit()
        finally:
            db.close()

    def lookup(self, key: str) -> tuple[float, int, float] | None:
        with self._db() as db:
            row = db.execute("SELECT ppl, tokens, seconds FROM measurements WHERE key = ?", (key,)).fetchone()
        return None if row is None else (float(row[0]) if row[0] is not None else math.inf, int(row[1]), row[2])

    @contextlib.contextmanager
    def _key_lock(self, key: str) -> Iterator[None]:
        lock_dir = self.cache_dir / "locks"
        lock_dir.mkdir(exist_ok=True)
        with (lock_dir / key[:32]).open("w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    # -- measuring ----------------------------------------------------------------------------
    def measure(self, spec: Any) -> Measurement:
        key = self.key(spec)
        hit = self.lookup(key)
        if hit is None:
            with self._key_lock(key):
                hit = self.lookup(key)  # another worker may have finished it while we waited
                if hit is None:
                    start = time.monotonic()
                    ppl, tokens = self._run(spec)
                    secs = time.monotonic() - start
                    with self._db() as db:
                        db.execute("INSERT OR REPLACE INTO measurements VALUES (?, ?, ?, ?, ?, ?)",
                                   (key, ppl if math.isfinite(ppl) else None, tokens,
                                    json.dumps({**self.identity(), "quant": dataclasses.asdict(spec)}), secs,
                                    time.time()))
                    self.measured += 1
                    return Measurement(ppl, tokens, key, False, secs)
        return Measurement(hit[0], hit[1], key, True, hit[2] or 0.0)

    def baseline(self) -> Measurement:
        from workloads.emulation import QuantSpec

        return self.measure(QuantSpec())

    def _load(self) -> Any:
        if self._loaded is None:
            import torch

            from workloads.real_model import load
            from workloads.text import read_wikitext, token_windows

            if self.cfg.threads > 0:
                torch.set_num_threads(self.cfg.threads)
            lm = load(self.cfg.model_path, device=self.cfg.device, dtype=self.cfg.dtype)  # model cache: user dir
            bos = lm.tokenizer.bos_token_id if lm.needs_bos else None  # type: ignore[attr-defined]
            text = read_wikitext(self.text_path)
            windows = token_windows(lm.tokenizer, text, self.cfg.seq_len, self.cfg.windows, bos_id=bos)
            self._loaded = (lm, windows, bos)
        return self._loaded

    def _calibration(self, chunk: int) -> Any:
        from workloads.emulation import collect_calibration
        from workloads.text import read_wikitext, token_windows

        lm, _windows, bos = self._load()
        key = (chunk, self.cfg.seq_len)
        if key not in self._calib:
            if not self.calib_path.is_file():
                raise FileNotFoundError(f"accuracy.calib_path: {self.calib_path} does not exist")
            text = read_wikitext(self.calib_path, key="accuracy.calib_path")
            calib = token_windows(lm.tokenizer, text, self.cfg.seq_len, self.cfg.calib_windows, bos_id=bos)
            self._calib[key] = collect_calibration(lm.model, calib.ids, chunk, lm.device)
        return self._calib[key]

    def _run(self, spec: Any) -> tuple[float, int]:
        from tqdm import tqdm

        from workloads.emulation import quantized
        from workloads.perplexity import perplexity

        lm, windows, _ = self._load()
        calib = self._calibration(spec.chunk) if spec.method == "tender" and spec.mode == "calibrated" else None
        desc = f"ppl[{spec.method}" + (f" b{spec.bits} G{spec.groups} S{spec.chunk} {spec.mode}]"
                                        if spec.method == "tender" else f" b{spec.bits}]" if spec.method != "none"
                                        else "]")
        with tqdm(total=windows.count, desc=desc, unit="win", leave=False, disable=not self.cfg.progress) as bar, \
                quantized(lm.model, spec, calib):
            result = perplexity(lm.model, windows, device=lm.device, progress=bar.update)
        log.info("%s: ppl %.4f over %d tokens", desc, result.ppl, result.tokens)
        return result.ppl, result.tokens
