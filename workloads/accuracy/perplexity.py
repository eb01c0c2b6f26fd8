"""Perplexity of a causal LM over token windows: exp(mean over windows of the mean token NLL)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from workloads.accuracy.text import Windows


@dataclass(frozen=True)
class Perplexity:
    ppl: float
    tokens: int  # predicted tokens
    window_nll: tuple[float, ...]


@torch.no_grad()
def perplexity(model: torch.nn.Module, windows: Windows, *, device: torch.device,
               progress: Callable[[int], None] | None = None) -> Perplexity:
    """Per window the mean cross-entropy of the seq_len - 1 next-token predictions (HF protocol)."""
    nlls = []
    for i in range(windows.count):
        ids = windows.ids[i:i + 1].to(device)
        hidden = model.model(input_ids=ids, use_cache=False).last_hidden_state  # type: ignore[attr-defined]
        logits = model.lm_head(hidden[:, :-1]).float()  # type: ignore[attr-defined]
        loss = torch.nn.functional.cross_entropy(logits.view(-1, logits.shape[-1]), ids[0, 1:], reduction="mean")
        nlls.append(float(loss))
        if progress is not None:
            progress(1)
    mean = sum(nlls) / len(nlls)
    ppl = math.exp(mean) if mean < 700 else math.inf
    return Perplexity(ppl=ppl, tokens=windows.count * (windows.seq_len - 1), window_nll=tuple(nlls))
