"""The accuracy oracle: measured perplexity of a quantisation configuration, persisted and shared.

Measurements are stored (:mod:`dse.accuracy_store`: an SQLite file in the cache directory, or the study's own
database) keyed by the sha256 of every input that affects them: model file hash, evaluation- and
calibration-text hashes, window set-up, dtype, every quantisation and KV-selection knob, and a fingerprint of
the emulation code itself (every module of ``workloads/accuracy`` and this file, comments and docstrings
aside), so that a change to the code that measures is never served measurements of the code before it. A
search never measures a key twice; workers sharing a store wait for the one measuring a key instead of
measuring it again.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import functools
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dse.accuracy_store import AccuracyStore, Fresh, LocalStore, Row
from dse.config import PROJECT_ROOT, AccuracyConfig, ConfigError, first_line

log = logging.getLogger(__name__)

EMULATION_SOURCES = (PROJECT_ROOT / "workloads" / "accuracy", Path(__file__).resolve())


def _code_of(path: Path) -> str:
    """The module's syntax tree without docstrings (comments are not in it): what runs."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and body
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree)


@functools.cache
def emulation_fingerprint(sources: tuple[Path, ...] = EMULATION_SOURCES) -> str:
    """sha256 over the code of every module that measures (no hand-bumped version to forget)."""
    files = sorted(p for s in sources for p in ([s] if s.is_file() else s.rglob("*.py")))
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode())
        digest.update(_code_of(path).encode())
    return digest.hexdigest()


@dataclass(frozen=True)
class Measurement:
    ppl: float
    tokens: int
    key: str
    cached: bool
    seconds: float
    stats: dict[str, Any] | None = None  # KV selection: selected-token statistics


def _kv_method(name: str) -> Any:
    from workloads.accuracy.kvselect import kv_method

    return kv_method(name)


class AccuracySetupError(ConfigError):
    """The accuracy set-up cannot work (missing text, a model that cannot be found or loaded): bad input."""


class AccuracyOracle:
    """Measures perplexity on the real model; ``store`` keeps the measurements (default: the SQLite file in
    the cache directory; a study in a database shares the database's, see :mod:`dse.accuracy_store`)."""

    def __init__(self, cfg: AccuracyConfig, store: AccuracyStore | None = None, owner: str = "") -> None:
        from workloads.accuracy.real_model import ModelSource, default_cache_dir

        self.cfg = cfg
        self.cache_dir = Path(cfg.cache_dir).expanduser() if cfg.cache_dir else default_cache_dir()
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        from workloads.accuracy.text import WHERE, HfText, is_hf

        # the evaluation text: a file (relative paths from the project root) or hf:NAME/CONFIG/SPLIT
        self.hf_text = HfText.parse(cfg.text_path) if is_hf(cfg.text_path) else None
        self.text_path = cfg.path("text_path") if self.hf_text is None else None
        self.calib_path = cfg.path("calib_path")
        self._text: str | None = None
        if self.text_path is not None and not self.text_path.is_file():
            raise AccuracySetupError(f"accuracy.text_path: {self.text_path} does not exist (relative paths are taken "
                                     f"from the project root); give {WHERE}")
        try:
            self.source = ModelSource.resolve(cfg.model_path, cfg.proxy.to_packaged(), self.cache_dir)
        except FileNotFoundError as exc:
            raise AccuracySetupError(str(exc)) from None
        self._identity: dict[str, Any] | None = None
        self._loaded: Any = None
        self._calib: dict[int, Any] = {}
        self._calib_ids: Any = None
        self._skew: Any = None
        self._attn_calib: Any = None
        self._rounding: dict[Any, tuple[str, dict[str, float]]] = {}
        self.measured = 0
        self.store = store if store is not None else LocalStore(self.cache_dir / "accuracy.sqlite", owner)

    # -- keys ---------------------------------------------------------------------------------
    def identity(self) -> dict[str, Any]:
        if self._identity is None:
            from workloads.accuracy.real_model import pick_device, pick_dtype
            from workloads.accuracy.text import text_sha256

            dev = pick_device(self.cfg.device)
            self._identity = {
                "model": str(self.source.path), "model_sha256": self.source.fingerprint(self.cache_dir),
                "text_sha256": self.text_sha256(),
                "calib_sha256": text_sha256(self.calib_path) if self.calib_path.is_file() else None,
                "windows": self.cfg.windows, "seq_len": self.cfg.seq_len, "calib_windows": self.cfg.calib_windows,
                "dtype": str(pick_dtype(self.cfg.dtype, dev)), "emulation": emulation_fingerprint(),
            }
        return self._identity

    def text(self) -> str:
        """The joined evaluation text (read once)."""
        if self._text is None:
            from workloads.accuracy.text import read_wikitext

            try:
                self._text = self.hf_text.read() if self.hf_text is not None else read_wikitext(self.text_path)
            except FileNotFoundError as exc:
                raise AccuracySetupError(str(exc)) from None
        return self._text

    def text_sha256(self) -> str:
        """The file's sha256, or for the hf: route "hf:" + the sha256 of the joined text (another route to the
        same text keeps its own keys: the rows came from elsewhere)."""
        from workloads.accuracy.text import WIKITEXT2_TEST_JOINED_SHA256, text_sha256

        if self.hf_text is None:
            return text_sha256(self.text_path)
        digest = hashlib.sha256(self.text().encode()).hexdigest()
        if self.hf_text.name.rstrip("/").endswith("wikitext") and digest != WIKITEXT2_TEST_JOINED_SHA256:
            log.warning("accuracy.text_path: hf:%s/%s/%s joins to sha256 %s, not the shared file's %s (another "
                        "revision of the dataset?)", self.hf_text.name, self.hf_text.config, self.hf_text.split,
                        digest[:12], WIKITEXT2_TEST_JOINED_SHA256[:12])
        return f"hf:{digest}"

    def key(self, spec: Any, kv: Any = None) -> str:
        quant = dataclasses.asdict(spec)
        if not quant.get("quantize_attention"):  # keys written before this knob existed stay valid
            quant.pop("quantize_attention", None)
        if quant.get("method") != "olaccel":  # only OLAccel's emulation reads it
            quant.pop("outlier_ratio", None)
        # The model file is identified by its content hash; its path (inside whichever virtual environment
        # installed it) is provenance only, so checkouts with the same model share measurements.
        payload = {**{k: v for k, v in self.identity().items() if k != "model"}, "quant": quant}
        uses_calib = (spec.method == "tender" and spec.mode == "calibrated") or (
            kv is not None and _kv_method(kv.method).needs_skew)
        if not uses_calib:
            payload["calib_sha256"] = None
            payload["calib_windows"] = None
        if kv is not None and kv.active:  # model-own attention keeps the keys of quantisation-only runs
            payload["kv"] = dataclasses.asdict(kv)
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()

    # -- measuring ----------------------------------------------------------------------------
    def lookup(self, key: str) -> Row | None:
        return self.store.lookup(key)

    def measure(self, spec: Any, kv: Any = None) -> Measurement:
        """Perplexity under quantisation ``spec`` and KV selection ``kv`` (None: dense attention); measured
        only if no worker sharing the store has measured (or is measuring) the key."""
        key = self.key(spec, kv)

        def fresh() -> Fresh:
            start = time.monotonic()
            ppl, tokens, stats = self._run(spec, kv)
            ident = {**self.identity(), "quant": dataclasses.asdict(spec),
                     "kv": dataclasses.asdict(kv) if kv is not None else None}
            return Fresh(Row(ppl, tokens, time.monotonic() - start, stats), ident)

        row, measured = self.store.measure_once(key, fresh)
        self.measured += measured
        return Measurement(row.ppl, row.tokens, key, not measured, row.seconds, row.stats)

    def baseline(self) -> Measurement:
        from workloads.accuracy.specs import QuantSpec

        return self.measure(QuantSpec())

    def _load(self) -> Any:
        if self._loaded is None:
            import torch

            from workloads.accuracy.real_model import load
            from workloads.accuracy.text import token_windows

            if self.cfg.threads > 0:
                torch.set_num_threads(self.cfg.threads)
            try:
                lm = load(self.cfg.model_path, proxy=self.cfg.proxy.to_packaged(), device=self.cfg.device,
                          dtype=self.cfg.dtype, cache_dir=self.cache_dir)
            except Exception as exc:  # a damaged or foreign file: transformers/gguf raise many kinds
                raise AccuracySetupError(f"accuracy.model_path: cannot load {self.source.path}: "
                                         f"{first_line(exc)}") from exc
            bos = lm.tokenizer.bos_token_id if lm.needs_bos else None  # type: ignore[attr-defined]
            text = self.text()
            windows = token_windows(lm.tokenizer, text, self.cfg.seq_len, self.cfg.windows, bos_id=bos)
            self._loaded = (lm, windows, bos)
        return self._loaded

    def _calib_windows(self) -> Any:
        """The calibration windows (``accuracy.calib_windows`` x ``seq_len`` tokens), tokenised once."""
        from workloads.accuracy.text import read_wikitext, token_windows

        if self._calib_ids is None:
            lm, _windows, bos = self._load()
            if not self.calib_path.is_file():
                raise AccuracySetupError(f"accuracy.calib_path: {self.calib_path} does not exist")
            text = read_wikitext(self.calib_path, key="accuracy.calib_path")
            self._calib_ids = token_windows(lm.tokenizer, text, self.cfg.seq_len, self.cfg.calib_windows,
                                            bos_id=bos).ids
        return self._calib_ids

    def _calibration(self, chunk: int) -> Any:
        """Tender's calibrated statistics for row chunks of ``chunk`` (once per chunk size)."""
        from workloads.accuracy.emulation import collect_calibration

        if chunk not in self._calib:
            lm = self._load()[0]
            self._calib[chunk] = collect_calibration(lm.model, self._calib_windows(), chunk, lm.device)
        return self._calib[chunk]

    def _attention_calibration(self) -> Any:
        """Tender (all)'s static K and V statistics from the calibration text (once per oracle)."""
        from workloads.accuracy.emulation import collect_attention_calibration

        if self._attn_calib is None:
            lm = self._load()[0]
            self._attn_calib = collect_attention_calibration(lm.model, self._calib_windows(), lm.device)
        return self._attn_calib

    def _resolve_rounding(self, spec: Any, calib: Any, attn_calib: Any) -> tuple[Any, dict[str, Any]]:
        """``quant.rounding=auto`` in calibrated mode: rup or rdn, whichever gives the lower NLL on one calibration
        window, one global choice (the reference, tender.md 4); memoised per quantisation without the rounding."""
        if spec.rounding != "auto":
            return spec, {}
        from workloads.accuracy.emulation import quantized
        from workloads.accuracy.perplexity import perplexity
        from workloads.accuracy.text import Windows

        lm = self._load()[0]
        memo_key = dataclasses.replace(spec, rounding="rup")
        if memo_key not in self._rounding:
            nll = {}
            window = Windows(self._calib_windows()[:1])
            for rounding in ("rup", "rdn"):
                with quantized(lm.model, dataclasses.replace(spec, rounding=rounding), calib, attn_calib):
                    nll[rounding] = perplexity(lm.model, window, device=lm.device).window_nll[0]
            self._rounding[memo_key] = (min(nll, key=lambda r: (nll[r], r)), nll)
        chosen, nll = self._rounding[memo_key]
        log.info("quant.rounding=auto: %s (calibration-window NLL rup %.4f, rdn %.4f)", chosen, nll["rup"], nll["rdn"])
        return dataclasses.replace(spec, rounding=chosen), {"rounding": chosen, "rounding_nll": nll}

    def _skew_matrices(self) -> Any:
        """InfiniGen's skewing matrices from the calibration text (once per oracle)."""
        from workloads.accuracy.kvselect import calibrate_skew

        if self._skew is None:
            lm = self._load()[0]
            self._skew = calibrate_skew(lm.model, self._calib_windows(), lm.device)
        return self._skew

    def _run(self, spec: Any, kv: Any = None) -> tuple[float, int, dict | None]:
        from tqdm import tqdm

        from workloads.accuracy.emulation import quantized
        from workloads.accuracy.kvselect import Selector, kv_selection, quality_stats, selected_token_stats
        from workloads.accuracy.perplexity import perplexity

        lm, windows, _ = self._load()
        calibrated = spec.method == "tender" and spec.mode == "calibrated"
        calib = self._calibration(spec.chunk) if calibrated else None
        attn_calib = self._attention_calibration() if calibrated and spec.quantize_attention else None
        spec, chosen = self._resolve_rounding(spec, calib, attn_calib) if calibrated else (spec, {})
        desc = f"ppl[{spec.method}" + (f" b{spec.bits} G{spec.groups} S{spec.chunk} {spec.mode}"
                                        if spec.method == "tender" else f" b{spec.bits}" if spec.method != "none"
                                        else "")
        method = _kv_method(kv.method) if kv is not None else None
        desc += (method.label(kv) if method is not None else "") + "]"
        selector = None
        with contextlib.ExitStack() as stack:
            bar = stack.enter_context(tqdm(total=windows.count, desc=desc, unit="win", leave=False,
                                           disable=not self.cfg.progress))
            stack.enter_context(quantized(lm.model, spec, calib, attn_calib))
            if method is not None and kv.active:
                skew = self._skew_matrices() if method.needs_skew else None
                selector = stack.enter_context(kv_selection(lm.model, Selector(kv, skew=skew,
                                                                               quality={} if kv.report else None)))
            result = perplexity(lm.model, windows, device=lm.device, progress=bar.update)
        stats = selected_token_stats(selector, windows.seq_len) if selector is not None else None
        if stats is not None and kv.report:
            stats["quality"] = quality_stats(selector)
        if chosen:
            stats = {**(stats or {}), **chosen}
        log.info("%s: ppl %.4f over %d tokens", desc, result.ppl, result.tokens)
        return result.ppl, result.tokens, stats
