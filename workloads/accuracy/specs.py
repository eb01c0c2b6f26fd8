"""What the accuracy emulation runs, as plain validated values (no torch at import).

``QuantSpec`` describes a quantisation (Tender or a baseline) and ``KVSpec`` a KV-token selection; the
configuration (``dse.config``) and the systems (``dse.systems``) build and validate them without loading the
emulation. ``ProxySetup`` says which proxy, text and windows a :class:`~workloads.accuracy.session.ProxySession`
measures on; what one measurement returns is :mod:`workloads.accuracy.measured`. The quantisation and KV methods
are the modules of ``workloads/accuracy/quantmethods/`` and ``workloads/accuracy/kvmethods/`` (one per method,
listed without importing them).
"""

from __future__ import annotations

import pkgutil
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from workloads.checks import require_choice

if TYPE_CHECKING:
    from workloads.accuracy.proxy import Packaged

QUANT_MODES = ("runtime", "calibrated")
ACT_SCALES = ("per_token", "per_tensor")  # SmoothQuant's activation scale: dynamic per token, static per tensor
ROUNDINGS = ("rup", "rdn", "auto")  # auto: calibrated mode picks rup or rdn by NLL (the reference); runtime: rup
EVICTIONS = ("counter", "lru", "fifo")
#: InfiniGen's speculation input for layer l: layer l-1's normed attention input (the reference), the residual
#: stream layer l-1 reads normed with layer l's own norm, or layer l's real input (an upper bound)
SPEC_INPUTS = ("prev", "prev_own_norm", "real")
SKEW_PER = ("kv_head", "query_head")
COLUMN_RULES = ("sum", "union")  # the paper's top of sum |Q~| + |K~|; the accuracy code's union of the two tops
COLUMN_SOURCES = ("request", "offline")  # per request from the window; once, from the calibration text
COUNT_RULES = ("mean", "per_head")  # one count per row (mean over heads, the paper); each head its own count
CACHE_BITS = (16, 8, 4)  # FP16, or FlexGen's group-wise compression at 8 or 4 bits
HERE = Path(__file__).resolve().parent
KV_METHODS_DIR = HERE / "kvmethods"
QUANT_METHODS_DIR = HERE / "quantmethods"


def _modules(folder: Path) -> tuple[str, ...]:
    return tuple(sorted(m.name for m in pkgutil.iter_modules([str(folder)]) if not m.name.startswith("_")))


@cache
def kv_method_names() -> tuple[str, ...]:
    """The KV-selection methods: one module each in ``kvmethods/`` ('dense' = no selection)."""
    return _modules(KV_METHODS_DIR)


@cache
def quant_method_names() -> tuple[str, ...]:
    """The quantisation methods: one module each in ``quantmethods/`` ('none' = the model as loaded)."""
    return _modules(QUANT_METHODS_DIR)


@dataclass(frozen=True)
class QuantSpec:
    method: str = "none"
    bits: int = 8
    groups: int = 8
    chunk: int = 256
    mode: str = "runtime"  # runtime | calibrated
    rounding: str = "auto"
    quantize_weights: bool = True
    quantize_attention: bool = False  # Tender (all): QK^T and PV quantised too (runtime statistics)
    outlier_ratio: float = 0.03  # olaccel: share of each activation tensor (and weight row) kept at high precision
    quantize_activations: bool = True  # false: weights only (W-b/A-float, to take a method's loss apart)
    smooth_alpha: float = 0.85  # smoothquant: migration strength (0.85 Llama-2-7B/13B, 0.5 OPT; sq README)
    act_scale: str = "per_token"  # smoothquant: per_token (dynamic) | per_tensor (static, from calibration)
    sites: str = ""  # a regular expression: only the sites whose names it matches are quantised ("": all)
    int8_share: float = 0.0  # ant, olive at 4 bits: share of the linear layers' MACs promoted to 8 bits (ANT's rule)

    def __post_init__(self) -> None:
        if self.quantize_attention and self.method != "tender":
            raise ValueError("quant.quantize_attention=true needs quant.method=tender")
        require_choice("quant.method", self.method, quant_method_names())
        require_choice("quant.bits", self.bits, (4, 8))
        if self.groups < 1 or self.chunk < 1:
            raise ValueError("quant.groups and quant.chunk must be >= 1")
        require_choice("quant.mode", self.mode, QUANT_MODES)
        require_choice("quant.rounding", self.rounding, ROUNDINGS)
        if self.rounding == "auto" and self.mode == "runtime":  # the reference's runtime mode is always rup
            object.__setattr__(self, "rounding", "rup")
        require_choice("quant.act_scale", self.act_scale, ACT_SCALES)
        try:
            re.compile(self.sites)
        except re.error as exc:
            raise ValueError(f"quant.sites must be a regular expression, got {self.sites!r}: {exc}") from None
        if not 0 <= self.smooth_alpha <= 1:
            raise ValueError(f"quant.smooth_alpha must be in [0, 1], got {self.smooth_alpha}")
        if not 0 <= self.int8_share <= 1:
            raise ValueError(f"quant.int8_share must be in [0, 1], got {self.int8_share}")
        if self.bits == 8:  # every layer is at 8 bits already
            object.__setattr__(self, "int8_share", 0.0)
        if not 0 <= self.outlier_ratio < 0.5:
            raise ValueError(f"quant.outlier_ratio must be in [0, 0.5), got {self.outlier_ratio}")


@dataclass(frozen=True)
class KVSpec:
    method: str = "dense"
    budget: float = 0.2
    alpha: float = 5.0
    partial_ratio: float = 0.4
    pool_size: float = 1.0
    eviction: str = "counter"
    dense_layers: int = 2
    spec_input: str = "prev_own_norm"
    skew_per: str = "kv_head"
    partial_cols: int = 0  # > 0: this many columns per head instead of partial_ratio x head_dim
    column_rule: str = "sum"
    column_source: str = "request"
    count_rule: str = "mean"
    report: bool = False  # also measure the speculation's quality per layer (recall, rank correlation)
    cache_bits: int = 16  # 16: FP16 KV cache; 8 or 4: FlexGen's group-wise asymmetric cache compression
    cache_group: int = 64  # values per compression group along the head dimension (FlexGen: 64)

    def __post_init__(self) -> None:
        require_choice("kv.method", self.method, kv_method_names())
        require_choice("kv.spec_input", self.spec_input, SPEC_INPUTS)
        require_choice("kv.skew_per", self.skew_per, SKEW_PER)
        require_choice("kv.column_rule", self.column_rule, COLUMN_RULES)
        require_choice("kv.column_source", self.column_source, COLUMN_SOURCES)
        require_choice("kv.count_rule", self.count_rule, COUNT_RULES)
        if self.partial_cols < 0:
            raise ValueError(f"kv.partial_cols must be >= 0 (0: use kv.partial_ratio), got {self.partial_cols}")
        if self.count_rule == "per_head" and self.pool_size < 1.0:
            raise ValueError("kv.count_rule=per_head needs kv.pool_size=1 (the pool emulation counts per row)")
        if not 0 < self.budget <= 1:
            raise ValueError(f"kv.budget must be in (0, 1], got {self.budget}")
        if not 0 < self.partial_ratio <= 1:
            raise ValueError(f"kv.partial_ratio must be in (0, 1], got {self.partial_ratio}")
        if not 0 < self.pool_size <= 1:
            raise ValueError(f"kv.pool_size must be in (0, 1], got {self.pool_size}")
        require_choice("kv.eviction", self.eviction, EVICTIONS)
        require_choice("kv.cache_bits", self.cache_bits, CACHE_BITS)
        if self.cache_group < 1:
            raise ValueError(f"kv.cache_group must be >= 1, got {self.cache_group}")

    @property
    def selects(self) -> bool:
        """Whether attention is restricted at all ('dense' attends to every past token)."""
        return self.method != "dense"

    @property
    def active(self) -> bool:
        """Whether attention differs from the model's own at all (a selection, or a compressed KV cache)."""
        return self.selects or self.cache_bits < 16


HF_PREFIX = "hf:"  # accuracy.text_path=hf:NAME/CONFIG/SPLIT: the evaluation text from the Hugging Face Hub


def is_hf(ref: str) -> bool:
    return ref.startswith(HF_PREFIX)


class SetupError(ValueError):
    """The accuracy set-up cannot work: a missing text or calibration file, a model that cannot be found or loaded."""


@dataclass(frozen=True)
class ProxySetup:
    """What a :class:`~workloads.accuracy.session.ProxySession` measures on: the proxy model (``model_path``, or
    the packaged ``proxy``), the evaluation text (a file path, or ``hf:NAME/CONFIG/SPLIT``), the calibration text,
    the window budget, where models and file hashes are cached, and how torch runs (none of the last four change
    a measurement except ``dtype``)."""

    proxy: Packaged
    text: str
    calib_path: Path
    cache_dir: Path
    model_path: str | None = None
    windows: int = 4
    seq_len: int = 1024
    calib_windows: int = 4
    device: str = "auto"
    dtype: str = "auto"
    threads: int = 0
    progress: bool = True
