"""InfiniGen (infinigen.md 4): speculation of each sparse layer's important tokens from partial,
skewed queries and keys.

* offline skewing: per layer and KV head, A = right singular vectors of the calibration queries of the
  heads sharing that KV head (post-RoPE for RoPE models); Q A (K A)^T = Q K^T;
* partial weights: per KV-head group, the r*d skewed columns with the largest sum over the window of
  |Q~| + |K~| (the paper's rule, computed per request from the prompt = the window);
* speculation of layer l from layer l-1's attention input: q^ = RoPE(x_{l-1} W_Q^l) A, scores
  s^ = q^[cols] . K~[cols]; per row count = floor(mean over heads of #{s^ >= rowmax - alpha}), capped at
  floor(budget * T); rows below the cap attend densely; others attend to their per-head top-count tokens
  (plus themselves);
* an optional CPU KV pool of ``pool_size * T`` tokens: from then on every row evicts one victim among the
  oldest half (FIFO, LRU or counter), and an evicted token is removed for good.

The exact logits are never needed, so the layer's attention runs fused under the selection mask.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from workloads.accuracy.kvmethods._base import KVMethod, Selection, SelectionInput, keep_top_per_row, upper_mask
from workloads.accuracy.specs import KVSpec


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


def _speculative_query(module: nn.Module, selector: Any, layer: int, scaling: float) -> torch.Tensor:
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


def select(x: SelectionInput) -> Selection:
    module, selector, layer, q, k = x.module, x.selector, x.layer, x.q, x.k
    scaling, n_rep, cap, spec = x.scaling, x.n_rep, x.cap, x.spec
    H, T, rows, future = x.H, x.T, x.rows, x.future
    dense_counts = x.dense_counts
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
        scores.masked_fill_(upper_mask(T, q.device)[start:end, :end].unsqueeze(0), -math.inf)
        c = infinigen_counts(scores, spec.alpha, cap)
        keep = keep_top_per_row(scores, c, None)
        local_rows = torch.arange(end - start)
        keep[:, local_rows, local_rows + start] = True  # the current token's own K/V
        drop[:, start - cap:end - cap, :end] = ~keep
        sub_counts[start - cap:end - cap] = c
    return drop, torch.cat([dense_counts[:cap], sub_counts])


def _label(spec: KVSpec) -> str:
    return f" kv:{spec.method} B{spec.budget} a{spec.alpha} r{spec.partial_ratio} pool{spec.pool_size}"


METHOD = KVMethod(select=select, exact_logits=False, needs_skew=True, label=_label)
