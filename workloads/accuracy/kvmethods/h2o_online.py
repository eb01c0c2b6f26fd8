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
    logits = x.logits  # [H, T, T], blocked entries -inf
    cached = torch.zeros(H, T, dtype=torch.bool)  # in the cache after the previous row
    score = torch.zeros(H, T, dtype=logits.dtype)
    keep = torch.zeros(H, T - cap, T, dtype=torch.bool)
    heads = torch.arange(H)
    for t in range(T):
        cached[:, t] = True  # the row's own token joins the cache
        visible = cached[:, : t + 1] & (logits[:, t, : t + 1] > -math.inf)
        probs = torch.softmax(logits[:, t, : t + 1].masked_fill(~visible, -math.inf), dim=-1)
        score[:, : t + 1] += probs
        if t >= cap:
            keep[:, t - cap, : t + 1] = visible
        if t + 1 >= cap:  # the cache is full: evict the weakest entry outside the recent window
            old = t + 1 - recent
            if old > 0:
                cand = torch.where(cached[:, :old], score[:, :old], math.inf)
                victim = cand.argmin(dim=-1)
                has = cached[:, :old].any(dim=-1)
                cached[heads[has], victim[has]] = False
    return ~keep, x.dense_counts


METHOD = KVMethod(select=select)
