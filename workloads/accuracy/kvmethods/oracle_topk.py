"""The oracle: per head, each row keeps the top-k tokens by their exact scores (k = floor(B T))."""

from __future__ import annotations

from workloads.accuracy.kvmethods._base import KVMethod, Selection, SelectionInput, keep_top_per_row


def select(x: SelectionInput) -> Selection:
    assert x.logits is not None
    keep = keep_top_per_row(x.logits[:, x.cap:], x.budget_counts(x.cap), ~x.future)
    return ~keep, x.dense_counts


METHOD = KVMethod(select=select)
