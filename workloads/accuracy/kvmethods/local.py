"""A local window: each row keeps the k = floor(B T) most recent tokens."""

from __future__ import annotations

from workloads.accuracy.kvmethods._base import KVMethod, Selection, SelectionInput


def select(x: SelectionInput) -> Selection:
    old = (x.sub_rows.view(1, -1, 1) - x.rows.view(1, 1, x.T)) >= x.cap
    return old | x.future, x.dense_counts


METHOD = KVMethod(select=select)
