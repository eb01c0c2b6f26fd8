"""One proxy model, measured: the accuracy side's front door (``ProxySession.measure(QuantSpec, KVSpec) -> Measured``).

A session owns everything between a specification and its perplexity: locating and loading the proxy (once), the
evaluation and calibration windows (tokenised once), the calibration statistics a method needs (a static method's
per-site parameters, Tender's chunk statistics per chunk size, Tender (all)'s attention statistics, InfiniGen's
skewing matrices; each once), the
rounding choice of ``quant.rounding=auto``, the run itself (the quantisation method wrapped around the linear
layers, the KV method around attention, perplexity over the windows), and what identifies a measurement: the
content hashes of model and texts, the window set-up, the dtype, the fields each method reads, and a fingerprint of
this package's code. The application keeps the measurements (``dse.oracle``); nothing here knows where.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import functools
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from workloads.accuracy import kernels, mixed
from workloads.accuracy.emulation import (
    AttentionStats,
    calibrate_sites,
    collect_attention_calibration,
    collect_calibration,
    quant_method,
    quantized,
)
from workloads.accuracy.kvmethods.infinigen import Skew
from workloads.accuracy.kvselect import Selector, calibrate_skew, kv_method, kv_selection, selected_token_stats
from workloads.accuracy.measured import Measured, RoundingChoice
from workloads.accuracy.perplexity import perplexity
from workloads.accuracy.quant import ChunkStats
from workloads.accuracy.real_model import LoadedModel, ModelSource, load, pick_device, pick_dtype
from workloads.accuracy.specs import KVSpec, ProxySetup, QuantSpec, SetupError, is_hf
from workloads.accuracy.text import (
    WHERE,
    WIKITEXT2_TEST_JOINED_SHA256,
    HfText,
    Windows,
    cut_windows,
    read_wikitext,
    text_sha256,
    tokenize,
)

log = logging.getLogger(__name__)

PACKAGE = Path(__file__).resolve().parent


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
def emulation_fingerprint(sources: tuple[Path, ...] = (PACKAGE,)) -> str:
    """sha256 over the code of every module that measures (this package; no hand-bumped version to forget)."""
    files = sorted(p for s in sources for p in ([s] if s.is_file() else s.rglob("*.py")))
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode())
        digest.update(_code_of(path).encode())
    return digest.hexdigest()


def label(quant: QuantSpec, kv: KVSpec | None) -> str:
    """How a measurement is named in progress bars and logs, e.g. ``ppl[tender b4 G8 S256 runtime kv:h2o B0.2]``."""
    return f"ppl[{quant_method(quant.method).label(quant)}{kv_method(kv.method).label(kv) if kv is not None else ''}]"


def uses_calibration(quant: QuantSpec, kv: KVSpec | None) -> bool:
    """Whether the measurement reads the calibration text (a calibrated quantisation, or a KV method whose
    speculation is calibrated offline)."""
    return quant_method(quant.method).needs_calibration(quant) or (
        kv is not None and kv.active and kv_method(kv.method).needs_skew)


@dataclass
class Shared:
    """What the sessions on one proxy and text share, whatever their windows: the loaded model, the evaluation text
    and both texts' token ids (each loaded or tokenised once per process)."""

    lm: LoadedModel | None = None
    text: str | None = None
    text_ids: torch.Tensor | None = None
    calib_ids: torch.Tensor | None = None


#: the ProxySetup fields a session may differ in and still share the loaded proxy: its windows, and where it
#: caches (the same model file, by content, wherever it lies)
WINDOW_FIELDS = ("windows", "seq_len", "calib_windows", "progress", "cache_dir")


class ProxySession:
    """Measures perplexity on one proxy model under quantisation and KV-selection specs (see the module)."""

    def __init__(self, setup: ProxySetup, shared: Shared | None = None) -> None:
        self.setup = setup
        self.shared = shared if shared is not None else Shared()
        self.cache_dir = setup.cache_dir
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.hf_text = HfText.parse(setup.text) if is_hf(setup.text) else None
        self.text_path = Path(setup.text) if self.hf_text is None else None
        if self.text_path is not None and not self.text_path.is_file():
            raise SetupError(f"accuracy.text_path: {self.text_path} does not exist (relative paths are taken from the "
                             f"project root); give {WHERE}")
        try:
            self.source = ModelSource.resolve(setup.model_path, setup.proxy, self.cache_dir)
        except FileNotFoundError as exc:
            raise SetupError(str(exc)) from None
        self._identity: dict[str, Any] | None = None
        self._loaded: tuple[LoadedModel, Windows, int | None] | None = None
        self._calib_ids: torch.Tensor | None = None
        self._calib: dict[int, dict[str, ChunkStats]] = {}
        self._site_calib: dict[tuple, dict[str, Any]] = {}
        self._promoted: dict[tuple, frozenset[str]] = {}
        self._attn_calib: dict[int, AttentionStats] | None = None
        self._skew: dict[int, Skew] | None = None
        self._rounding: dict[QuantSpec, RoundingChoice] = {}

    def sibling(self, setup: ProxySetup) -> ProxySession:
        """A session for ``setup`` that shares this one's loaded proxy and token ids where ``setup`` differs from
        this one's in the windows only (a screen beside the full measurement), else a session of its own."""
        same = all(getattr(setup, f.name) == getattr(self.setup, f.name)
                   for f in dataclasses.fields(setup) if f.name not in WINDOW_FIELDS)
        return ProxySession(setup, self.shared if same else None)

    # -- identity ------------------------------------------------------------------------------
    def identity(self) -> dict[str, Any]:
        """What every measurement of this session depends on: the model file's content hash (and its path, as
        provenance only), the evaluation and calibration texts' hashes, the windows, the dtype, the code, and the
        kernels and package versions that compute (``kernels.in_effect``)."""
        if self._identity is None:
            self._identity = {
                "model": str(self.source.path), "model_sha256": self.source.fingerprint(self.cache_dir),
                "text_sha256": self.text_sha256(),
                "calib_sha256": text_sha256(self.setup.calib_path) if self.setup.calib_path.is_file() else None,
                "windows": self.setup.windows, "seq_len": self.setup.seq_len,
                "calib_windows": self.setup.calib_windows,
                "dtype": str(pick_dtype(self.setup.dtype, pick_device(self.setup.device))),
                "emulation": emulation_fingerprint(), "kernels": kernels.in_effect(),
            }
        return self._identity

    def describe(self, quant: QuantSpec, kv: KVSpec | None = None) -> dict[str, Any]:
        """Everything one measurement depends on and nothing else (the payload of its key): the identity without
        provenance, the fields the quantisation method reads, the calibration text only where it is read, the KV
        selection only where attention differs from the model's own."""
        payload = {k: v for k, v in self.identity().items() if k != "model"}
        payload["quant"] = quant_method(quant.method).key_fields(quant)
        if not uses_calibration(quant, kv):
            payload["calib_sha256"] = payload["calib_windows"] = None
        if kv is not None and kv.active:
            payload["kv"] = dataclasses.asdict(kv)
        return payload

    def text(self) -> str:
        """The joined evaluation text (read once)."""
        if self.shared.text is None:
            try:
                self.shared.text = self.hf_text.read() if self.hf_text is not None else read_wikitext(self.text_path)
            except FileNotFoundError as exc:
                raise SetupError(str(exc)) from None
        return self.shared.text

    def text_sha256(self) -> str:
        """The file's sha256, or for the hf: route "hf:" + the sha256 of the joined text (another route to the
        same text keeps its own keys: the rows came from elsewhere)."""
        if self.hf_text is None:
            assert self.text_path is not None
            return text_sha256(self.text_path)
        digest = hashlib.sha256(self.text().encode()).hexdigest()
        if self.hf_text.name.rstrip("/").endswith("wikitext") and digest != WIKITEXT2_TEST_JOINED_SHA256:
            log.warning("accuracy.text_path: hf:%s/%s/%s joins to sha256 %s, not the shared file's %s (another "
                        "revision of the dataset?)", self.hf_text.name, self.hf_text.config, self.hf_text.split,
                        digest[:12], WIKITEXT2_TEST_JOINED_SHA256[:12])
        return f"hf:{digest}"

    # -- what a measurement needs, each once -----------------------------------------------------
    def loaded(self) -> tuple[LoadedModel, Windows, int | None]:
        """The model, the evaluation windows and the BOS id prepended to each (None: none), loaded once."""
        if self._loaded is None:
            lm = self._model()
            bos = lm.tokenizer.bos_token_id if lm.needs_bos else None  # type: ignore[attr-defined]
            if self.shared.text_ids is None:
                self.shared.text_ids = tokenize(lm.tokenizer, self.text())
            windows = cut_windows(self.shared.text_ids, self.setup.seq_len, self.setup.windows, bos_id=bos)
            self._loaded = (lm, windows, bos)
        return self._loaded

    def _model(self) -> LoadedModel:
        if self.shared.lm is None:
            if self.setup.threads > 0:
                torch.set_num_threads(self.setup.threads)
            try:
                self.shared.lm = load(self.setup.model_path, proxy=self.setup.proxy, device=self.setup.device,
                                      dtype=self.setup.dtype, cache_dir=self.cache_dir)
            except Exception as exc:  # a damaged or foreign file: transformers/gguf raise many kinds
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise SetupError(f"accuracy.model_path: cannot load {self.source.path}: {first}") from exc
        return self.shared.lm

    @property
    def model(self) -> LoadedModel:
        return self.loaded()[0]

    def calibration_windows(self) -> torch.Tensor:
        """The calibration windows (``calib_windows`` x ``seq_len`` tokens of the calibration text), tokenised once."""
        if self._calib_ids is None:
            lm, _windows, bos = self.loaded()
            if self.shared.calib_ids is None:
                if not self.setup.calib_path.is_file():
                    raise SetupError(f"accuracy.calib_path: {self.setup.calib_path} does not exist")
                text = read_wikitext(self.setup.calib_path, key="accuracy.calib_path")
                self.shared.calib_ids = tokenize(lm.tokenizer, text)
            self._calib_ids = cut_windows(self.shared.calib_ids, self.setup.seq_len, self.setup.calib_windows,
                                          bos_id=bos).ids
        return self._calib_ids

    def chunk_calibration(self, chunk: int) -> dict[str, ChunkStats]:
        """Tender's calibrated statistics for row chunks of ``chunk`` (once per chunk size)."""
        if chunk not in self._calib:
            self._calib[chunk] = collect_calibration(self.model.model, self.calibration_windows(), chunk,
                                                     self.model.device)
        return self._calib[chunk]

    def site_calibration(self, quant: QuantSpec) -> dict[str, Any]:
        """A method's static parameters per site from the calibration windows (``emulation.calibrate_sites``),
        once per method and the fields it reads; with ``quant.int8_share`` > 0 a second pass at the widths ANT's
        rule chose from the uniform 4-bit calibration (``mixed``)."""
        key = tuple(sorted(quant_method(quant.method).key_fields(quant).items()))
        if key not in self._site_calib:
            promoted = self.promoted_sites(quant)
            self._site_calib[key] = calibrate_sites(self.model.model, quant, self.calibration_windows(),
                                                    self.model.device, promoted)
        return self._site_calib[key]

    def promoted_sites(self, quant: QuantSpec) -> frozenset[str]:
        """The sites ``quant`` runs at 8 bits (``quant.int8_share`` of a mixed-precision method; else none)."""
        method = quant_method(quant.method)
        if quant.int8_share <= 0 or not method.mixed_precision:
            return frozenset()
        key = tuple(sorted(method.key_fields(quant).items()))
        if key not in self._promoted:
            uniform = self.site_calibration(dataclasses.replace(quant, int8_share=0.0))
            scores = mixed.linear_scores(self.model.model, uniform)
            self._promoted[key] = mixed.promote(scores, quant.int8_share)
            log.info("%s: %d sites at 8 bits, %.4f of the MACs (target %g)", quant.method, len(self._promoted[key]),
                     mixed.mac_share(scores, self._promoted[key]), quant.int8_share)
        return self._promoted[key]

    def method_calibration(self, quant: QuantSpec) -> dict[str, Any] | None:
        """What ``quant``'s method reads from the calibration text (None: nothing)."""
        method = quant_method(quant.method)
        if not method.needs_calibration(quant):
            return None
        return self.site_calibration(quant) if method.calibrate is not None else self.chunk_calibration(quant.chunk)

    def attention_calibration(self) -> dict[int, AttentionStats]:
        """Tender (all)'s static K and V statistics from the calibration text (once)."""
        if self._attn_calib is None:
            self._attn_calib = collect_attention_calibration(self.model.model, self.calibration_windows(),
                                                             self.model.device)
        return self._attn_calib

    def skew_matrices(self) -> dict[int, Skew]:
        """InfiniGen's skewing matrices from the calibration text (once)."""
        if self._skew is None:
            self._skew = calibrate_skew(self.model.model, self.calibration_windows(), self.model.device)
        return self._skew

    def resolve_rounding(self, quant: QuantSpec, calib: dict[str, Any] | None,
                         attn_calib: dict[int, AttentionStats] | None) -> tuple[QuantSpec, RoundingChoice | None]:
        """``quant.rounding=auto`` (it survives only in calibrated mode): rup or rdn, whichever gives the lower NLL on
        one calibration window, one global choice (the reference, tender.md 4); memoised per quantisation."""
        if quant.rounding != "auto" or "rounding" not in quant_method(quant.method).reads:
            return quant, None
        memo = dataclasses.replace(quant, rounding="rup")
        if memo not in self._rounding:
            nll = {}
            window = Windows(self.calibration_windows()[:1])
            for rounding in ("rup", "rdn"):
                with quantized(self.model.model, dataclasses.replace(quant, rounding=rounding), calib, attn_calib):
                    nll[rounding] = perplexity(self.model.model, window, device=self.model.device).window_nll[0]
            self._rounding[memo] = RoundingChoice(min(nll, key=lambda r: (nll[r], r)), nll)
        choice = self._rounding[memo]
        log.info("quant.rounding=auto: %s (calibration-window NLL rup %.4f, rdn %.4f)", choice.chosen,
                 choice.nll["rup"], choice.nll["rdn"])
        return dataclasses.replace(quant, rounding=choice.chosen), choice

    # -- measuring ------------------------------------------------------------------------------
    def measure(self, quant: QuantSpec, kv: KVSpec | None = None) -> Measured:
        """Perplexity under quantisation ``quant`` and KV selection ``kv`` (None or an inactive spec: the model's own
        attention), with what the selection kept and the rounding chosen."""
        lm, windows, _ = self.loaded()
        quant = quant_method(quant.method).canonical(quant)
        calib = self.method_calibration(quant)
        attn_calib = self.attention_calibration() if calib is not None and quant.quantize_attention else None
        quant, rounding = self.resolve_rounding(quant, calib, attn_calib)
        desc = label(quant, kv)
        selector = None
        with contextlib.ExitStack() as stack:
            bar = stack.enter_context(tqdm(total=windows.count, desc=desc, unit="win", leave=False,
                                           disable=not self.setup.progress))
            stack.enter_context(quantized(lm.model, quant, calib, attn_calib, promoted=self.promoted_sites(quant)))
            if kv is not None and kv.active:
                skew = self.skew_matrices() if kv_method(kv.method).needs_skew else None
                selector = stack.enter_context(kv_selection(lm.model, Selector(kv, skew=skew,
                                                                               quality={} if kv.report else None)))
            result = perplexity(lm.model, windows, device=lm.device, progress=bar.update)
        selection = selected_token_stats(selector, windows.seq_len) if selector is not None else None
        log.info("%s: ppl %.4f over %d tokens", desc, result.ppl, result.tokens)
        return Measured(result.ppl, result.tokens, selection, rounding)
