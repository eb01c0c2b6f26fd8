"""H2O at budget B: k/2 recent tokens plus k/2 heavy hitters by the attention mass each key received
from earlier rows, measured on dense attention (an approximation of H2O's online accumulation)."""

from __future__ import annotations

import torch

from workloads.accuracy.kvmethods._base import KVMethod, Selection, SelectionInput, keep_top_per_row


def select(x: SelectionInput) -> Selection:
    assert x.logits is not None
    cap = x.cap
    probs = torch.softmax(x.logits, dim=-1)
    received = (probs.cumsum(dim=1) - probs)[:, cap:]  # mass each key got from the rows before this one
    recent = ~x.future & ((x.sub_rows.view(1, -1, 1) - x.rows.view(1, 1, x.T)) < max(1, cap // 2))
    heavy = keep_top_per_row(received, x.budget_counts(cap - cap // 2), ~x.future & ~recent)
    return ~(recent | heavy), x.dense_counts


METHOD = KVMethod(select=select)
