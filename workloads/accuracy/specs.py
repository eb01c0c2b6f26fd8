"""What the accuracy emulation runs, as plain validated values (no torch at import).

``QuantSpec`` describes a quantisation (Tender or a per-tensor/per-token baseline) and ``KVSpec`` a
KV-token selection; the configuration (``dse.config``) and the systems (``dse.systems``) build and
validate them without loading the emulation. The KV methods are the modules of
``workloads/accuracy/kvmethods/`` (one per method, listed without importing them).
"""

from __future__ import annotations

import pkgutil
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from workloads.checks import require_choice

QUANT_METHODS = ("none", "tender", "per_tensor", "per_token", "olaccel")
QUANT_MODES = ("runtime", "calibrated")
ROUNDINGS = ("rup", "rdn")
EVICTIONS = ("counter", "lru", "fifo")
KV_METHODS_DIR = Path(__file__).resolve().parent / "kvmethods"


@cache
def kv_method_names() -> tuple[str, ...]:
    """The KV-selection methods: one module each in ``kvmethods/`` ('dense' = no selection)."""
    return tuple(sorted(m.name for m in pkgutil.iter_modules([str(KV_METHODS_DIR)]) if not m.name.startswith("_")))


@dataclass(frozen=True)
class QuantSpec:
    method: str = "none"
    bits: int = 8
    groups: int = 8
    chunk: int = 256
    mode: str = "runtime"  # runtime | calibrated
    rounding: str = "rup"
    quantize_weights: bool = True
    quantize_attention: bool = False  # Tender (all): QK^T and PV quantised too (runtime statistics)
    outlier_ratio: float = 0.03  # olaccel: share of each activation tensor (and weight row) kept at high precision

    def __post_init__(self) -> None:
        if self.quantize_attention and self.method != "tender":
            raise ValueError("quant.quantize_attention=true needs quant.method=tender")
        require_choice("quant.method", self.method, QUANT_METHODS)
        require_choice("quant.bits", self.bits, (4, 8))
        if self.groups < 1 or self.chunk < 1:
            raise ValueError("quant.groups and quant.chunk must be >= 1")
        require_choice("quant.mode", self.mode, QUANT_MODES)
        require_choice("quant.rounding", self.rounding, ROUNDINGS)
        if not 0 <= self.outlier_ratio < 0.5:
            raise ValueError(f"quant.outlier_ratio must be in [0, 0.5), got {self.outlier_ratio}")


@dataclass(frozen=True)
class KVSpec:
    method: str = "dense"
    budget: float = 0.2
    alpha: float = 4.0
    partial_ratio: float = 0.2
    pool_size: float = 1.0
    eviction: str = "counter"
    dense_layers: int = 2

    def __post_init__(self) -> None:
        require_choice("kv.method", self.method, kv_method_names())
        if not 0 < self.budget <= 1:
            raise ValueError(f"kv.budget must be in (0, 1], got {self.budget}")
        if not 0 < self.partial_ratio <= 1:
            raise ValueError(f"kv.partial_ratio must be in (0, 1], got {self.partial_ratio}")
        if not 0 < self.pool_size <= 1:
            raise ValueError(f"kv.pool_size must be in (0, 1], got {self.pool_size}")
        require_choice("kv.eviction", self.eviction, EVICTIONS)

    @property
    def selects(self) -> bool:
        """Whether attention is restricted at all ('dense' attends to every past token)."""
        return self.method != "dense"
