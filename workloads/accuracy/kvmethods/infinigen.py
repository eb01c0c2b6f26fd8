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

The default (``KVSpec``, conf/kv/default.yaml) is the paper's method with three settings chosen on the proxy model,
measured by ``python -m dse.studies.speculation`` on 4 x 2048 tokens of WikiText-2 (dense 24.15; the closing note
of issue 16 has the tables): the paper's method as its artifact runs it (alpha 4, r 0.2, layer l-1's normed input)
costs +14.2 perplexity there, worse than H2O (+3.5), because

* r is a share of head_dim, and SmolLM2's heads are half as wide as OPT's: r = 0.2 keeps 13 columns, too few to rank
  (recall of the exact top-k 0.63); r = 0.4 keeps 26, the count the reference keeps of OPT's 128 (+4.7 alone);
* a 135M model's residual stream changes more between layers than a 13B model's, and layer l-1's input normed with
  layer l-1's RMSNorm weights scales the channels for the wrong W_Q; normed with layer l's own weights (the same
  stream, the same partial query) it costs +10.9 instead of +14.2 alone (``spec_input=prev_own_norm``);
* alpha 5 is the paper's value for Llama-2, the architecture SmolLM2 shares.

Together: +1.30 at 110 tokens per row (H2O +3.52 at the same budget). Per-query-head skewing and the union rule lower
it further (+1.08, +0.84) but depart further from the paper; they stay options.

Variants (``KVSpec``), ablated by ``python -m dse.studies.speculation``:
``spec_input`` (layer l-1's normed input; the residual stream layer l-1 reads, normed with layer l's own norm;
layer l's real input as an upper bound), ``skew_per`` (one A per KV head, or per query head), ``partial_cols``
(columns as a count instead of a share of head_dim), ``column_rule`` (top of the sum, or the accuracy code's
union of the |Q~| and |K~| tops), ``column_source`` (per request, or once from the calibration text),
``count_rule`` (one count per row, or per head). ``report`` adds, per layer, the recall of the exact per-head
top-k by the speculated top-k at the same k and the Spearman rank correlation of speculated and exact scores.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from workloads.accuracy.kvmethods._base import KVMethod, Selection, SelectionInput, keep_top_per_row
from workloads.accuracy.specs import KVSpec


def skew_matrices(queries: torch.Tensor, n_rep: int) -> torch.Tensor:
    """Per KV head, the right singular vectors of its query heads' stacked queries.

    queries: [H, T, d] -> A: [H_kv, d, d] (orthogonal)."""
    H, T, d = queries.shape
    grouped = queries.reshape(H // n_rep, n_rep * T, d).double()
    _, _, vh = torch.linalg.svd(grouped, full_matrices=False)
    return vh.transpose(-1, -2).to(queries.dtype)


def window_masses(q_skew: torch.Tensor, k_skew: torch.Tensor, rep: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per head group, the column masses over the window (the paper's per-request rule): sum over its
    ``rep`` query heads and the tokens of |Q~|, and over the tokens of |K~|.

    q_skew: [G * rep, T, d], k_skew: [G, T, d] -> ([G, d], [G, d])."""
    H, T, d = q_skew.shape
    return q_skew.abs().reshape(H // rep, rep, T, d).sum(dim=(1, 2)), k_skew.abs().sum(dim=1)


@dataclass(frozen=True)
class Skew:
    """One layer's offline skewing, from the calibration text's post-RoPE queries and keys.

    ``kv``: [H_kv, d, d], one A per KV head (its query heads stacked); ``query``: [H, d, d], one per query head.
    ``mass_kv`` / ``mass_query``: under each, the offline column masses (sum over the calibration tokens of
    |Q~| per query head [H, d], of |K~| per KV head [H_kv, d] or per query head [H, d])."""

    kv: torch.Tensor
    query: torch.Tensor
    mass_kv: tuple[torch.Tensor, torch.Tensor]
    mass_query: tuple[torch.Tensor, torch.Tensor]


def calibrated_skew(queries: torch.Tensor, keys: torch.Tensor) -> Skew:
    """queries [H, T, d] and keys [H_kv, T, d] of the calibration windows -> :class:`Skew`."""
    n_rep = queries.shape[0] // keys.shape[0]
    a_kv = skew_matrices(queries, n_rep)
    a_q = skew_matrices(queries, 1)
    a_kv_q = a_kv.repeat_interleave(n_rep, dim=0)
    keys_q = keys.repeat_interleave(n_rep, dim=0)
    return Skew(kv=a_kv, query=a_q,
                mass_kv=((queries @ a_kv_q).abs().sum(1), (keys @ a_kv).abs().sum(1)),
                mass_query=((queries @ a_q).abs().sum(1), (keys_q @ a_q).abs().sum(1)))


def column_mask(q_mass: torch.Tensor, k_mass: torch.Tensor, n_cols: int, rule: str) -> torch.Tensor:
    """[G, d] bool: the partial columns of each head group from its column masses ([G, d] each): the top
    ``n_cols`` of q_mass + k_mass (``sum``, the paper) or the union of the two tops (``union``, r*d ... 2r*d
    columns, the accuracy code)."""
    G, d = q_mass.shape
    mask = torch.zeros(G, d, dtype=torch.bool, device=q_mass.device)
    if rule == "sum":
        return mask.scatter_(1, (q_mass + k_mass).topk(n_cols, dim=-1).indices, True)
    mask.scatter_(1, q_mass.topk(n_cols, dim=-1).indices, True)
    return mask.scatter_(1, k_mass.topk(n_cols, dim=-1).indices, True)


def infinigen_counts(spec_scores: torch.Tensor, alpha: float, cap: int, per_head: bool = False) -> torch.Tensor:
    """Per row: floor(mean over heads of #{s >= rowmax - alpha}), capped ([R]); with ``per_head`` each head's
    own count ([H, R]). spec_scores causally masked."""
    rowmax = spec_scores.amax(dim=-1, keepdim=True)
    within = torch.count_nonzero(spec_scores >= rowmax - alpha, dim=-1)
    counts = within if per_head else within.float().mean(dim=0).floor().long()
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
        sel &= present[:, : t + 1] & (row > -math.inf)
        sel[:, t] = True  # the current token's own K/V
        keep[:, t, : t + 1] = sel
        uses[:, : t + 1] += sel[:, : t + 1].float()
        last[:, : t + 1] = torch.where(sel, float(t), last[:, : t + 1])
        counts[t] = c
    return keep, counts, evicted_at


def speculation_input(selector: Any, layer: int) -> torch.Tensor:
    """What layer ``layer``'s query is speculated from (``kv.spec_input``)."""
    how = selector.spec.spec_input
    if how == "real":
        return selector.xa[layer]
    if how == "prev_own_norm":
        return selector.norms[layer](selector.resid[layer - 1])
    return selector.xa[layer - 1]


def _speculative_query(module: nn.Module, selector: Any, layer: int, scaling: float) -> torch.Tensor:
    """RoPE(x W_Q^l) for every row (x: :func:`speculation_input`), shaped like the real query [b, H, T, d]."""
    x = speculation_input(selector, layer)
    b, T, _ = x.shape
    d = module.head_dim
    q = module.q_proj(x).view(b, T, -1, d).transpose(1, 2)
    if hasattr(module, "q_norm"):  # QK-norm (Gemma 3): the query is normed per head before RoPE
        q = module.q_norm(q)
    if scaling == 1.0 and hasattr(module, "scaling"):  # OPT folds the 1/sqrt(d) into the query
        q = q * module.scaling
    pe = selector.pos.get(layer)
    if pe is not None:
        from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

        cos, sin = pe
        q, _ = apply_rotary_pos_emb(q, q, cos, sin)
    return q


def _partial(x: SelectionInput, q_spec: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The skewed partial query of the selecting rows [H, T-cap, d] and partial keys [H, T, d] (columns outside
    the partial set are zero, so their dot products are the partial scores)."""
    spec, selector, layer, n_rep, cap = x.spec, x.selector, x.layer, x.n_rep, x.cap
    q, k = x.q, x.k
    d = q.shape[-1]
    sk = selector.skew[layer] if selector.skew is not None else None
    per_query = spec.skew_per == "query_head"
    rep = 1 if per_query else n_rep  # query heads per head group
    k_grp = k.repeat_interleave(n_rep, dim=0) if per_query else k  # [G, T, d]
    if sk is not None:
        a_q = (sk.query if per_query else sk.kv.repeat_interleave(n_rep, dim=0)).to(q.dtype)
        a_g = (sk.query if per_query else sk.kv).to(k.dtype)
        q_sk, k_sk, qs_sk = q @ a_q, k_grp @ a_g, q_spec[:, cap:] @ a_q
    else:
        q_sk, k_sk, qs_sk = q, k_grp, q_spec[:, cap:]
    n_cols = spec.partial_cols if spec.partial_cols > 0 else max(1, int(round(spec.partial_ratio * d)))
    n_cols = min(n_cols, d)
    if spec.column_source == "offline" and sk is not None:
        q_mass, k_mass = sk.mass_query if per_query else sk.mass_kv
        q_mass = q_mass.reshape(-1, rep, d).sum(1).to(q.dtype)
        k_mass = k_mass.to(q.dtype)
    else:  # per request: the window plays the prompt
        q_mass, k_mass = window_masses(q_sk, k_sk, rep)
    mask = column_mask(q_mass, k_mass, n_cols, spec.column_rule).to(q.dtype)  # [G, d]
    qp = qs_sk * mask.repeat_interleave(rep, dim=0).unsqueeze(1)
    kp = (k_sk * mask.unsqueeze(1)).repeat_interleave(rep, dim=0)
    return qp, kp


def _quality(x: SelectionInput, scores: torch.Tensor, counts: torch.Tensor, start: int, end: int) -> None:
    """Add one row block's speculation quality to ``selector.quality[layer]``: per row and head, the recall of
    the exact top-k by the speculated top-k at the row's k, and (every 16th row) the Spearman correlation of
    the speculated and exact scores over the row's past."""
    exact = (x.q[:, start:end] * x.scaling) @ x.k.repeat_interleave(x.n_rep, dim=0)[:, :end].transpose(-1, -2)
    exact.masked_fill_(x.blocked(start, end), -math.inf)
    spec_top = keep_top_per_row(scores, counts, None)
    exact_top = keep_top_per_row(exact, counts, None)
    hit = (spec_top & exact_top).sum(-1).float() / exact_top.sum(-1).clamp(min=1).float()  # [H, B]
    acc = x.selector.quality.setdefault(x.layer, {"recall": 0.0, "rows": 0.0, "spearman": 0.0, "ranked": 0.0})
    acc["recall"] += float(hit.sum())
    acc["rows"] += float(hit.numel())
    for r in range(start + (-start) % 16, end, 16):
        n = r + 1
        if n < 3:
            continue
        a = scores[:, r - start, :n].argsort(-1).argsort(-1).float()
        b = exact[:, r - start, :n].argsort(-1).argsort(-1).float()
        a, b = a - a.mean(-1, keepdim=True), b - b.mean(-1, keepdim=True)
        rho = (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1)).clamp(min=1e-12)
        acc["spearman"] += float(rho.sum())
        acc["ranked"] += float(rho.numel())


def select(x: SelectionInput) -> Selection:
    selector, layer, spec = x.selector, x.layer, x.spec
    scaling, cap = x.scaling, x.cap
    H, T, rows, future = x.H, x.T, x.rows, x.future
    if layer == 0 or (layer - 1) not in selector.xa:
        return future.expand(H, -1, -1), torch.clamp(rows + 1, max=x.window or T)
    q_spec = _speculative_query(x.module, selector, layer, scaling)[0]  # [H, T, d]
    qp, kp = _partial(x, q_spec)
    if spec.pool_size < 1.0:
        spec_scores = ((qp * scaling) @ kp.transpose(-1, -2)).masked_fill_(future, -math.inf)  # [H, T-cap, T]
        full = torch.full((H, T, T), -math.inf)
        full[:, cap:] = spec_scores
        keep, counts, _ = evict_with_pool(full, spec.alpha, cap, max(1, int(spec.pool_size * T)), spec.eviction)
        counts = torch.where(rows < cap, torch.clamp(rows + 1, max=x.window or T), counts)
        return ~keep[:, cap:], counts
    per_head = spec.count_rule == "per_head"
    # Row blocks: rows r < e only see keys < e, so each block works on its causal width only.
    drop = torch.ones(H, T - cap, T, dtype=torch.bool)
    sub_counts = torch.empty(T - cap, dtype=torch.float32)
    block = 256
    for start in range(cap, T, block):
        end = min(start + block, T)
        scores = (qp[:, start - cap:end - cap] * scaling) @ kp[:, :end].transpose(-1, -2)  # [H, B, end]
        scores.masked_fill_(x.blocked(start, end), -math.inf)
        c = infinigen_counts(scores, spec.alpha, cap, per_head)
        if selector.quality is not None:
            _quality(x, scores, c, start, end)
        keep = keep_top_per_row(scores, c, None)
        local_rows = torch.arange(end - start)
        keep[:, local_rows, local_rows + start] = True  # the current token's own K/V
        drop[:, start - cap:end - cap, :end] = ~keep
        sub_counts[start - cap:end - cap] = c.float().mean(0) if per_head else c.float()
    return drop, torch.cat([x.dense_counts[:cap].float(), sub_counts])


VARIANTS = ("spec_input", "skew_per", "column_rule", "column_source", "count_rule")


def _label(spec: KVSpec) -> str:
    default = KVSpec()
    variants = "".join(f" {getattr(spec, v)}" for v in VARIANTS if getattr(spec, v) != getattr(default, v))
    cols = f"c{spec.partial_cols}" if spec.partial_cols else f"r{spec.partial_ratio}"
    return f" kv:{spec.method} B{spec.budget} a{spec.alpha} {cols} pool{spec.pool_size}{variants}"


METHOD = KVMethod(select=select, exact_logits=False, needs_skew=True, label=_label)
