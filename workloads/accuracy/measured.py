"""What one accuracy measurement returns, as plain typed values (no torch at import): ``Measured`` (perplexity and
tokens), with ``SelectionStats`` (what a KV selection kept, by context bucket and layer, and its ``SpeculationQuality``)
and ``RoundingChoice`` (the rounding ``quant.rounding=auto`` chose). Stored as JSON (``Measured.stats`` /
``Measured.from_stats``) beside the perplexity; the offloading cost models read ``SelectionStats.fraction_by_position``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class SpeculationQuality:
    """``kv.report``: per sparse layer, the mean recall of the exact per-head top-k by the speculated top-k (at
    each row's k) and the mean Spearman correlation of speculated and exact scores; and their means over layers."""

    per_layer: Mapping[int, tuple[float, float]]  # layer -> (recall, spearman)

    @property
    def recall(self) -> float:
        return sum(r for r, _ in self.per_layer.values()) / len(self.per_layer)

    @property
    def spearman(self) -> float:
        return sum(s for _, s in self.per_layer.values()) / len(self.per_layer)

    def to_dict(self) -> dict[str, Any]:
        return {"per_layer": {str(k): {"recall": r, "spearman": s} for k, (r, s) in sorted(self.per_layer.items())},
                "recall": self.recall, "spearman": self.spearman}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SpeculationQuality:
        return cls({int(k): (float(v["recall"]), float(v["spearman"])) for k, v in d["per_layer"].items()})


@dataclass(frozen=True)
class ContextBucket:
    """Query rows ``first..last`` of a window (1-based, inclusive) and their mean selected tokens per row."""

    first: int
    last: int
    mean: float

    @property
    def middle(self) -> float:
        return 0.5 * (self.first + self.last)


@dataclass(frozen=True)
class SelectionStats:
    """What a KV selection kept on the proxy: mean selected tokens per sparse layer and query row, overall, by
    context-length bucket and per layer; with ``kv.report``, the speculation's quality."""

    mean_selected: float
    buckets: tuple[ContextBucket, ...]
    per_layer: Mapping[int, float]
    quality: SpeculationQuality | None = None

    def fraction_by_position(self) -> np.ndarray:
        """Selected tokens as a share of the context, per bucket (its mean over the bucket's middle position): what
        the offloading cost model maps onto the target's context lengths. Non-finite shares are an error, not a
        silent fall-back to a published table: the cost model would describe another selection than the one
        measured."""
        frac = np.array([b.mean / b.middle for b in self.buckets])
        if not np.all(np.isfinite(frac)):
            raise ValueError(f"the accuracy measurement's selected-token fractions are not finite: {list(frac)}")
        return frac

    def to_dict(self) -> dict[str, Any]:
        return {"mean_selected": self.mean_selected, "buckets": [[b.first, b.last, b.mean] for b in self.buckets],
                "per_layer": {str(k): v for k, v in sorted(self.per_layer.items())},
                **({"quality": self.quality.to_dict()} if self.quality is not None else {})}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SelectionStats:
        quality = d.get("quality")
        buckets = tuple(ContextBucket(int(a), int(b), float(m)) for a, b, m in d["buckets"])
        return cls(float(d["mean_selected"]), buckets, {int(k): float(v) for k, v in d["per_layer"].items()},
                   SpeculationQuality.from_dict(quality) if quality else None)


@dataclass(frozen=True)
class RoundingChoice:
    """``quant.rounding=auto`` in calibrated mode: the rounding chosen and each one's NLL on a calibration window."""

    chosen: str
    nll: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Measured:
    """One measurement: perplexity (inf where the model diverged) over ``tokens`` predicted tokens, what the KV
    selection kept (None for dense attention) and the rounding chosen (None unless ``quant.rounding=auto`` in
    calibrated mode)."""

    ppl: float
    tokens: int
    selection: SelectionStats | None = None
    rounding: RoundingChoice | None = None

    def stats(self) -> dict[str, Any] | None:
        """Everything but the perplexity, as JSON-ready data (what a store keeps beside ``ppl`` and ``tokens``)."""
        out: dict[str, Any] = {}
        if self.selection is not None:
            out["selection"] = self.selection.to_dict()
        if self.rounding is not None:
            out["rounding"] = {"chosen": self.rounding.chosen, "nll": dict(self.rounding.nll)}
        return out or None

    @classmethod
    def from_stats(cls, ppl: float, tokens: int, stats: Mapping[str, Any] | None) -> Measured:
        stats = stats or {}
        rounding = stats.get("rounding")
        return cls(ppl if math.isfinite(ppl) else math.inf, tokens,
                   SelectionStats.from_dict(stats["selection"]) if stats.get("selection") else None,
                   RoundingChoice(rounding["chosen"], dict(rounding["nll"])) if rounding else None)
