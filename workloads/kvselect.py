"""KV-token selection on a real model: InfiniGen's speculation and the baselines it is compared with.

Emulation (infinigen.md section 5): one full-sequence forward pass per window; every query row plays one
decode step and attends only to the past tokens selected for it. A custom attention function (registered
with transformers' attention registry) applies causality itself and masks the real attention logits.

InfiniGen (infinigen.md 4):
* offline skewing: per layer and KV head, A = right singular vectors of the calibration queries of the
  heads sharing that KV head (post-RoPE for RoPE models); Q A (K A)^T = Q K^T;
* partial weights: per KV-head group, the r*d skewed columns with the largest sum over the window of
  |Q~| + |K~| (the paper's rule, computed per request from the prompt = the window);
* speculation of layer l from layer l-1's attention input: q^ = RoPE(x_{l-1} W_Q^l) A, scores
  s^ = q^[cols] . K~[cols]; per row count = floor(mean over heads of #{s^ >= rowmax - alpha}), capped at
  floor(budget * T); rows below the cap attend densely; others attend to their per-head top-count tokens
  (plus themselves); layers < ``dense_layers`` are dense;
* an optional CPU KV pool of ``pool_size * T`` tokens: from then on every row evicts one victim among the
  oldest half (FIFO, LRU or counter), and an evicted token is removed for good.

Baselines at the same budget B (k = floor(B T) tokens per row): ``local`` (the k most recent), ``h2o``
(k/2 recent + k/2 heavy hitters by the attention mass each key received from earlier rows, measured on
dense attention: an approximation of H2O's online accumulation), ``oracle_topk`` (top-k of the exact
scores, per head).
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from workloads.checks import require_choice

KV_METHODS = ("dense", "infinigen", "h2o", "local", "oracle_topk")
EVICTIONS = ("counter", "lru", "fifo")
ATTN_NAME = "tide_select"


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
        require_choice("kv.method", self.method, KV_METHODS)
        if not 0 < self.budget <= 1:
            raise ValueError(f"kv.budget must be in (0, 1], got {self.budget}")
        if not 0 < self.partial_ratio <= 1:
            raise ValueError(f"kv.partial_ratio must be in (0, 1], got {self.partial_ratio}")
        if not 0 < self.pool_size <= 1:
            raise ValueError(f"kv.pool_size must be in (0, 1], got {self.pool_size}")
        require_choice("kv.eviction", self.eviction, EVICTIONS)


# ---------------------------------------------------------------- pure tensor functions

def skew_matrices(queries: torch.Tensor, n_rep: int) -> torch.Tensor:
    """Per KV head, the right singular vectors of its query heads' stacked queries.

    queries: [H, T, d] -> A: [H_kv, d, d] (orthogonal)."""
    H, T, d = queries.shape
    grouped = queries.reshape(H // n_rep, n_rep * T, d).double()
    _, _, vh = torch.linalg.svd(grouped, full_matrices=False)
    return vh.transpose(-1, -2).to(queries.dtype)


def partial_columns(q_skew: torch.Tensor, k_skew: torch.Tensor, n_rep: int, ratio: float) -> torch.Tensor:
    """Per KV-head group, the r*d columns with the largest sum of |Q~| + |K~| over the window.

    q_skew: [H, T, d], k_skew: [H_kv, T, d] -> column indices [H_kv, r*d]."""
    H, T, d = q_skew.shape
    mass = q_skew.abs().reshape(H // n_rep, n_rep, T, d).sum(dim=(1, 2)) + k_skew.abs().sum(dim=1)
    n_cols = max(1, int(round(ratio * d)))
    return mass.topk(n_cols, dim=-1).indices


def causal_mask(T: int, device: torch.device) -> torch.Tensor:
    return torch.ones(T, T, dtype=torch.bool, device=device).tril()


def keep_top_per_row(scores: torch.Tensor, counts: torch.Tensor, allowed: torch.Tensor | None) -> torch.Tensor:
    """Boolean mask of each row's ``counts[row]`` largest allowed scores (per head).

    scores: [H, R, T]; counts: [R] (same for every head); allowed: [H or 1, R, T], or None when the
    disallowed entries of ``scores`` are already -inf. Ties at the threshold are all kept."""
    k_max = int(counts.max().item()) if counts.numel() else 0
    if k_max <= 0:
        return torch.zeros(scores.shape, dtype=torch.bool, device=scores.device)
    masked = scores if allowed is None else scores.masked_fill(~allowed, -math.inf)
    top = masked.topk(min(k_max, scores.shape[-1]), dim=-1, sorted=True).values  # [H, R, k_max]
    idx = (counts.clamp(min=1) - 1).view(1, -1, 1).expand(scores.shape[0], -1, 1)
    threshold = top.gather(-1, idx)  # the count-th largest per row
    keep = masked >= threshold
    if allowed is not None:
        keep &= allowed
    elif torch.isinf(threshold).any():  # a row with fewer allowed entries than its count
        keep &= masked > -math.inf
    if (counts <= 0).any():
        keep &= counts.view(1, -1, 1) > 0
    return keep


def infinigen_counts(spec_scores: torch.Tensor, alpha: float, cap: int) -> torch.Tensor:
    """Per row: floor(mean over heads of #{s >= rowmax - alpha}), capped; spec_scores causally masked."""
    rowmax = spec_scores.amax(dim=-1, keepdim=True)
    counts = torch.count_nonzero(spec_scores >= rowmax - alpha, dim=-1).float().mean(dim=0).floor().long()
    return counts.clamp(max=cap)


def evict_with_pool(spec_scores: torch.Tensor, alpha: float, cap: int, capacity: int, policy: str
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """InfiniGen selection with a pool of ``capacity`` tokens: from row ``capacity`` on, each row first
    evicts one victim among the oldest half of the still-present tokens (FIFO: the oldest; LRU: least
    recently selected; counter: fewest selections), and victims never come back.

    spec_scores: [H, T, T] causally masked (-inf above the diagonal). Returns keep [H, T, T], counts [T] and
    evicted_at [H, T] (the row at which each token was removed, -1 if never)."""
    H, T, _ = spec_scores.shape
    present = torch.ones(H, T, dtype=torch.bool)
    uses = torch.zeros(H, T)
    last = torch.full((H, T), -1.0)
    keep = torch.zeros(H, T, T, dtype=torch.bool)
    counts = torch.zeros(T, dtype=torch.long)
    evicted_at = torch.full((H, T), -1, dtype=torch.long)
    heads = torch.arange(H)
    for t in range(T):
        if t >= capacity:
            cand = present.clone()
            cand[:, max(1, t // 2):] = False
            if policy == "fifo":
                key = torch.where(cand, torch.arange(T, dtype=torch.float32).expand(H, T), math.inf)
            elif policy == "lru":
                key = torch.where(cand, last, math.inf)
            else:
                key = torch.where(cand, uses, math.inf)
            victim = key.argmin(dim=-1)
            has = cand.any(dim=-1)
            present[heads[has], victim[has]] = False
            evicted_at[heads[has], victim[has]] = t
        row = spec_scores[:, t, : t + 1].masked_fill(~present[:, : t + 1], -math.inf)
        rowmax = row.amax(dim=-1, keepdim=True)
        c = int(min(cap, math.floor((row >= rowmax - alpha).sum(dim=-1).float().mean().item())))
        c = max(c, 1)
        top = row.topk(min(c, t + 1), dim=-1).indices
        sel = torch.zeros(H, t + 1, dtype=torch.bool)
        sel.scatter_(1, top, True)
        sel &= present[:, : t + 1]
        sel[:, t] = True  # the current token's own K/V
        keep[:, t, : t + 1] = sel
        uses[:, : t + 1] += sel[:, : t + 1].float()
        last[:, : t + 1] = torch.where(sel, float(t), last[:, : t + 1])
        counts[t] = c
    return keep, counts, evicted_at


# ---------------------------------------------------------------- the model-facing part

@dataclass
class Selector:
    """Per-forward state shared by the attention layers of one model."""

    spec: KVSpec
    skew: dict[int, torch.Tensor] | None = None  # layer -> [H_kv, d, d]
    xa: dict[int, torch.Tensor] = field(default_factory=dict)  # layer -> normed attention input
    pos: dict[int, Any] = field(default_factory=dict)  # layer -> (cos, sin) or None
    counts: dict[int, list[torch.Tensor]] = field(default_factory=dict)  # layer -> per-row selected counts
    capture: dict[int, tuple[torch.Tensor, torch.Tensor]] | None = None  # calibration: layer -> (q, k)


def _speculative_query(module: nn.Module, selector: Selector, layer: int, scaling: float) -> torch.Tensor:
    """RoPE(x_{l-1} W_Q^l) for every row, shaped like the real query [b, H, T, d]."""
    x = selector.xa[layer - 1]
    b, T, _ = x.shape
    d = module.head_dim
    q = module.q_proj(x).view(b, T, -1, d).transpose(1, 2)
    if scaling == 1.0 and hasattr(module, "scaling"):  # OPT folds the 1/sqrt(d) into the query
        q = q * module.scaling
    pe = selector.pos.get(layer)
    if pe is not None:
        from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

        cos, sin = pe
        q, _ = apply_rotary_pos_emb(q, q, cos, sin)
    return q


def select_attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                     attention_mask: torch.Tensor | None, scaling: float, dropout: float = 0.0,
                     **kwargs: Any) -> tuple[torch.Tensor, None]:
    """Causal attention where each row sees only the keys selected for it (batch 1)."""
    selector: Selector | None = getattr(module, "tide_selector", None)
    layer = int(module.layer_idx)
    n_rep = query.shape[1] // key.shape[1]
    if selector is not None and selector.capture is not None:
        selector.capture[layer] = (query[0].detach(), key[0].detach())
    k_full = key.repeat_interleave(n_rep, dim=1)
    v_full = value.repeat_interleave(n_rep, dim=1)
    T = query.shape[2]
    spec = selector.spec if selector is not None else KVSpec()
    if spec.method == "infinigen" and layer >= spec.dense_layers and selector is not None:
        # InfiniGen selects from speculated scores only: the exact logits are never needed, so the
        # attention itself runs fused (SDPA) under the selection mask.
        cap = max(1, int(math.floor(spec.budget * T)))
        keep = ~_upper(T, query.device).unsqueeze(0).repeat(query.shape[1], 1, 1)
        if cap < T:
            drop, counts = _selection(module, selector, layer, query[0], key[0], None, scaling, n_rep, cap)
            keep[:, cap:, :] &= ~drop
            selector.counts.setdefault(layer, []).append(counts)
        out = torch.nn.functional.scaled_dot_product_attention(query, k_full, v_full, attn_mask=keep.unsqueeze(0),
                                                               scale=scaling)
        return out.transpose(1, 2).contiguous(), None
    logits = (query * scaling) @ k_full.transpose(-1, -2)  # [b, H, T, T]
    logits.masked_fill_(_upper(T, query.device), -math.inf)
    if spec.method != "dense" and layer >= spec.dense_layers and selector is not None:
        cap = max(1, int(math.floor(spec.budget * T)))
        if cap < T:
            drop, counts = _selection(module, selector, layer, query[0], key[0], logits[0], scaling, n_rep, cap)
            logits[0, :, cap:, :].masked_fill_(drop, -math.inf)  # rows below the cap stay dense
            selector.counts.setdefault(layer, []).append(counts)
    probs = torch.softmax(logits, dim=-1, dtype=torch.float32).to(query.dtype)
    out = probs @ v_full
    return out.transpose(1, 2).contiguous(), None


@functools.lru_cache(maxsize=2)
def _upper(T: int, device: torch.device) -> torch.Tensor:
    """Strictly-upper-triangular (future) mask of length T; memoised, used read-only."""
    return torch.ones(T, T, dtype=torch.bool, device=device).triu(1)


def _selection(module: nn.Module, selector: Selector, layer: int, q: torch.Tensor, k: torch.Tensor,
               logits: torch.Tensor | None, scaling: float, n_rep: int, cap: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask of the entries to drop for rows cap..T-1 ([H, T-cap, T]) and the per-row counts [T].
    ``logits`` (exact, causally masked) is needed by the baselines only."""
    spec = selector.spec
    H, T = q.shape[0], q.shape[1]
    rows = torch.arange(T)
    sub_rows = rows[cap:]
    dense_counts = torch.clamp(rows + 1, max=cap)
    future = _upper(T, q.device)[cap:].unsqueeze(0)
    if spec.method == "local":
        old = (sub_rows.view(1, -1, 1) - rows.view(1, 1, T)) >= cap
        return old | future, dense_counts
    if spec.method in ("oracle_topk", "h2o"):
        assert logits is not None
    if spec.method == "oracle_topk":
        keep = keep_top_per_row(logits[:, cap:], torch.full((T - cap,), cap, dtype=torch.long), ~future)
        return ~keep, dense_counts
    if spec.method == "h2o":
        probs = torch.softmax(logits, dim=-1)
        received = (probs.cumsum(dim=1) - probs)[:, cap:]  # mass each key got from the rows before this one
        recent = ~future & ((sub_rows.view(1, -1, 1) - rows.view(1, 1, T)) < max(1, cap // 2))
        heavy = keep_top_per_row(received, torch.full((T - cap,), cap - cap // 2, dtype=torch.long),
                                 ~future & ~recent)
        return ~(recent | heavy), dense_counts
    # infinigen
    if layer == 0 or (layer - 1) not in selector.xa:
        return future.expand(H, -1, -1), rows + 1
    q_spec = _speculative_query(module, selector, layer, scaling)[0]  # [H, T, d]
    A = selector.skew[layer] if selector.skew is not None else None
    if A is not None:
        A_q = A.repeat_interleave(n_rep, dim=0).to(q.dtype)
        q_sk, k_sk, qs_sk = q @ A_q, k @ A.to(k.dtype), q_spec[:, cap:] @ A_q
    else:
        q_sk, k_sk, qs_sk = q, k, q_spec[:, cap:]
    cols = partial_columns(q_sk, k_sk, n_rep, spec.partial_ratio)  # [H_kv, c]
    cols_q = cols.repeat_interleave(n_rep, dim=0)
    qp = qs_sk.gather(-1, cols_q.unsqueeze(1).expand(-1, T - cap, -1))
    kp = k_sk.gather(-1, cols.unsqueeze(1).expand(-1, T, -1)).repeat_interleave(n_rep, dim=0)
    if spec.pool_size < 1.0:
        spec_scores = ((qp * scaling) @ kp.transpose(-1, -2)).masked_fill_(future, -math.inf)  # [H, T-cap, T]
        full = torch.full((H, T, T), -math.inf)
        full[:, cap:] = spec_scores
        keep, counts, _ = evict_with_pool(full, spec.alpha, cap, max(1, int(spec.pool_size * T)), spec.eviction)
        counts = torch.where(rows < cap, rows + 1, counts)
        return ~keep[:, cap:], counts
    # Row blocks: rows r < e only see keys < e, so each block works on its causal width only.
    drop = torch.ones(H, T - cap, T, dtype=torch.bool)
    sub_counts = torch.empty(T - cap, dtype=torch.long)
    block = 256
    for start in range(cap, T, block):
        end = min(start + block, T)
        scores = (qp[:, start - cap:end - cap] * scaling) @ kp[:, :end].transpose(-1, -2)  # [H, B, end]
        scores.masked_fill_(_upper(T, q.device)[start:end, :end].unsqueeze(0), -math.inf)
        c = infinigen_counts(scores, spec.alpha, cap)
        keep = keep_top_per_row(scores, c, None)
        local_rows = torch.arange(end - start)
        keep[:, local_rows, local_rows + start] = True  # the current token's own K/V
        drop[:, start - cap:end - cap, :end] = ~keep
        sub_counts[start - cap:end - cap] = c
    return drop, torch.cat([dense_counts[:cap], sub_counts])


def attention_modules(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if hasattr(m, "layer_idx") and hasattr(m, "q_proj")]


def _register() -> None:
    from transformers import AttentionInterface

    AttentionInterface.register(ATTN_NAME, select_attention)


@contextlib.contextmanager
def kv_selection(model: nn.Module, selector: Selector) -> Iterator[Selector]:
    """Run the model's attention through ``select_attention`` with this selector (restored afterwards)."""
    _register()
    previous = model.config._attn_implementation
    modules = attention_modules(model)
    hooks = []

    def capture(module: nn.Module, args: tuple, kwargs: dict) -> None:
        hidden = kwargs.get("hidden_states", args[0] if args else None)
        selector.xa[int(module.layer_idx)] = hidden.detach()
        selector.pos[int(module.layer_idx)] = kwargs.get("position_embeddings")

    try:
        model.set_attn_implementation(ATTN_NAME)
        for m in modules:
            m.tide_selector = selector
            hooks.append(m.register_forward_pre_hook(capture, with_kwargs=True))
        yield selector
    finally:
        for h in hooks:
            h.remove()
        for m in modules:
            if hasattr(m, "tide_selector"):
                del m.tide_selector
        model.set_attn_implementation(previous)


@torch.no_grad()
def calibrate_skew(model: nn.Module, windows: torch.Tensor, device: torch.device) -> dict[int, torch.Tensor]:
    """Skewing matrices per layer from the post-RoPE queries of the calibration windows."""
    selector = Selector(KVSpec(), capture={})
    queries: dict[int, list[torch.Tensor]] = {}
    kv_heads: dict[int, int] = {}
    with kv_selection(model, selector):
        for i in range(windows.shape[0]):
            selector.capture = {}
            model.model(input_ids=windows[i:i + 1].to(device), use_cache=False)  # type: ignore[attr-defined]
            for layer, (q, k) in selector.capture.items():
                queries.setdefault(layer, []).append(q.float())
                kv_heads[layer] = int(k.shape[0])
    return {layer: skew_matrices(torch.cat(qs, dim=1), len(qs[0]) // kv_heads[layer])  # [H, sum T, d]
            for layer, qs in queries.items()}


def selected_token_stats(selector: Selector, T: int, bucket: int | None = None) -> dict[str, Any]:
    """Mean selected tokens per (sparse) layer and query row, overall and by context-length bucket
    (256 tokens, or T/8 for shorter windows)."""
    if not selector.counts:
        return {}
    bucket = bucket or max(1, min(256, T // 8))
    per_layer = {layer: torch.stack(c).float().mean(0) for layer, c in selector.counts.items()}  # [T]
    mean_rows = torch.stack(list(per_layer.values())).mean(0)
    edges = list(range(0, T, bucket))
    by_ctx = {f"{s + 1}-{min(s + bucket, T)}": float(mean_rows[s:s + bucket].mean()) for s in edges}
    return {"mean_selected": float(mean_rows.mean()), "by_context": by_ctx,
            "per_layer": {str(k): float(v.mean()) for k, v in per_layer.items()}}  # JSON-stable keys
