"""H2O as it runs (Zhang et al., NeurIPS 2023; the reference's real-drop cache): a KV cache of k = floor(B T)
entries per head, k/2 recent and the rest heavy hitters, kept by the attention each entry has accumulated while
in the cache, and evicted for good.

Every row t is one decode step: it attends to the cache plus its own token (k entries in all), adds the
attention probabilities it gives each entry to that entry's accumulated score, and then the entry with the
lowest score outside the k/2 most recent tokens is evicted (the reference keeps the top k - k/2 scores among
the non-recent entries). Rows below k attend densely and accumulate the same way (the prompt's column sums).
Per query head, like the other baselines. Unlike ``h2o`` (heavy hitters by the mass received from every
earlier row of dense attention), an evicted token never returns and scores come from the rows that saw it.
"""

from __future__ import annotations

import math

import torch

from workloads.accuracy.kvmethods._base import KVMethod, Selection, SelectionInput


def select(x: SelectionInput) -> Selection:
    assert x.logits is not None
    H, T, cap = x.H, x.T, x.cap
    recent = max(1, cap // 2)
    # exp(logit - row max over all visible keys): a row's probabilities over its cache are these, renormalised
    # over the cached entries (the row's own token is always cached, so the sum is never zero in practice).
    weights = torch.exp(x.logits - x.logits.amax(dim=-1, keepdim=True))  # [H, T, T], blocked entries 0
    alive = torch.ones(H, T, dtype=weights.dtype)  # not evicted (a token joins the cache at its own row)
    score = torch.zeros(H, T, dtype=weights.dtype)  # accumulated attention; +inf once evicted
    evicted_at = torch.full((H, T), T, dtype=torch.long)  # the row after whose attention a token was evicted
    heads = torch.arange(H)
    for t in range(T):
        w = weights[:, t, : t + 1] * alive[:, : t + 1]
        score[:, : t + 1] += w / w.sum(dim=-1, keepdim=True).clamp_min(1e-30)
        old = t + 1 - recent
        if t + 1 >= cap and old > 0:  # the cache is full: evict the weakest entry outside the recent window
            victim = score[:, :old].argmin(dim=-1)
            alive[heads, victim] = 0.0
            score[heads, victim] = math.inf
            evicted_at[heads, victim] = t
    rows = x.sub_rows.view(1, -1, 1)
    keep = ~x.future & (evicted_at.unsqueeze(1) >= rows)  # [H, T-cap, T]: cached when the row attends
    return ~keep, x.dense_counts


METHOD = KVMethod(select=select)
