"""What a KV-selection method is given and what it returns (shared by the method modules)."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import torch
from torch import nn

from workloads.accuracy.specs import KVSpec


@functools.lru_cache(maxsize=2)
def upper_mask(T: int, device: torch.device) -> torch.Tensor:
    """Strictly-upper-triangular (future) mask of length T; memoised, used read-only."""
    return torch.ones(T, T, dtype=torch.bool, device=device).triu(1)


@functools.lru_cache(maxsize=4)
def blocked_mask(T: int, window: int | None, device: torch.device) -> torch.Tensor:
    """[T, T] keys a row may never see: the future, and with a sliding window (Gemma's local layers) the keys
    ``window`` or more positions back (transformers' ``kv_idx > q_idx - window``); memoised, read-only."""
    future = upper_mask(T, device)
    if window is None or window >= T:
        return future
    return future | torch.ones(T, T, dtype=torch.bool, device=device).tril(-window)


def keep_top_per_row(scores: torch.Tensor, counts: torch.Tensor, allowed: torch.Tensor | None) -> torch.Tensor:
    """Boolean mask of each row's ``counts[row]`` largest allowed scores (per head).

    scores: [H, R, T]; counts: [R] (same for every head) or [H, R] (per head); allowed: [H or 1, R, T], or
    None when the disallowed entries of ``scores`` are already -inf. Ties at the threshold are all kept."""
    k_max = int(counts.max().item()) if counts.numel() else 0
    if k_max <= 0:
        return torch.zeros(scores.shape, dtype=torch.bool, device=scores.device)
    masked = scores if allowed is None else scores.masked_fill(~allowed, -math.inf)
    top = masked.topk(min(k_max, scores.shape[-1]), dim=-1, sorted=True).values  # [H, R, k_max]
    per_row = counts.view(1, -1, 1) if counts.dim() == 1 else counts.unsqueeze(-1)  # [1 or H, R, 1]
    idx = (per_row.clamp(min=1, max=top.shape[-1]) - 1).expand(scores.shape[0], -1, 1)
    threshold = top.gather(-1, idx)  # the count-th largest per row
    keep = masked >= threshold
    if allowed is not None:
        keep &= allowed
    elif torch.isinf(threshold).any():  # a row with fewer allowed entries than its count
        keep &= masked > -math.inf
    if (counts <= 0).any():
        keep &= per_row > 0
    return keep


@dataclass(frozen=True)
class SelectionInput:
    """One sparse layer's view of a window: rows ``cap..T-1`` select, earlier rows stay dense.

    ``q``: [H, T, d] real queries; ``k``: [H_kv, T, d] keys; ``logits``: exact scores [H, T, T], masked where
    :func:`blocked_mask` blocks (None for methods that do not ask for them); ``selector``: the per-forward state
    (``kvselect.Selector``: captured layer inputs, skewing matrices, recorded counts); ``window``: the layer's
    sliding window (None: global attention). A selection never keeps a blocked key."""

    module: nn.Module
    selector: Any
    layer: int
    q: torch.Tensor
    k: torch.Tensor
    logits: torch.Tensor | None
    scaling: float
    n_rep: int
    cap: int
    window: int | None = None

    @property
    def spec(self) -> KVSpec:
        return self.selector.spec

    @property
    def H(self) -> int:
        return int(self.q.shape[0])

    @property
    def T(self) -> int:
        return int(self.q.shape[1])

    @cached_property
    def rows(self) -> torch.Tensor:
        return torch.arange(self.T)

    @property
    def sub_rows(self) -> torch.Tensor:
        return self.rows[self.cap:]

    @property
    def dense_counts(self) -> torch.Tensor:
        """Per row: the tokens a row attends to under a fixed budget (all it may see below the cap)."""
        return torch.clamp(self.rows + 1, max=min(self.cap, self.window or self.T))

    @cached_property
    def future(self) -> torch.Tensor:
        """[1, T-cap, T]: the keys each selecting row may not see (after it; outside its sliding window)."""
        return self.blocked(self.cap, self.T)

    def blocked(self, start: int, end: int) -> torch.Tensor:
        """[1, end-start, end]: the blocked keys of rows ``start..end-1`` (which see keys < end only)."""
        return blocked_mask(self.T, self.window, self.q.device)[start:end, :end].unsqueeze(0)

    def budget_counts(self, count: int) -> torch.Tensor:
        return torch.full((self.T - self.cap,), count, dtype=torch.long)


#: (entries to drop for rows cap..T-1 [H, T-cap, T], selected count per row [T])
Selection = tuple[torch.Tensor, torch.Tensor]


def _default_label(spec: KVSpec) -> str:
    return f" kv:{spec.method} B{spec.budget}"


@dataclass(frozen=True)
class KVMethod:
    """A KV-selection method.

    ``select`` is None for dense attention. ``exact_logits``: the method reads the exact scores, so the
    layer computes them and masks them (else the attention runs fused under the selection mask).
    ``needs_skew``: the method uses skewing matrices calibrated offline on the calibration text (the
    measurement then depends on that text)."""

    select: Callable[[SelectionInput], Selection] | None
    exact_logits: bool = True
    needs_skew: bool = False
    label: Callable[[KVSpec], str] = _default_label
