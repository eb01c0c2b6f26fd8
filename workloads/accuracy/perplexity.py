"""Perplexity of a causal LM over token windows: exp(mean over windows of the mean token NLL)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from workloads.accuracy.text import Windows

ROWS = 512  # LM-head rows per block


@dataclass(frozen=True)
class Perplexity:
    ppl: float
    tokens: int  # predicted tokens
    window_nll: tuple[float, ...]


@torch.no_grad()
def perplexity(model: torch.nn.Module, windows: Windows, *, device: torch.device,
               progress: Callable[[int], None] | None = None) -> Perplexity:
    """Per window the mean cross-entropy of the seq_len - 1 next-token predictions (HF protocol). The LM head runs
    over row blocks (a 262k vocabulary makes one window's logits 2 GB) and applies the model's final logit
    soft-capping when it has one, as its own forward does."""
    cap = getattr(getattr(model, "config", None), "final_logit_softcapping", None)
    nlls = []
    for i in range(windows.count):
        ids = windows.ids[i:i + 1].to(device)
        hidden = model.model(input_ids=ids, use_cache=False).last_hidden_state[0, :-1]  # type: ignore[attr-defined]
        total = torch.zeros((), dtype=torch.float64)
        for start in range(0, hidden.shape[0], ROWS):
            logits = model.lm_head(hidden[start:start + ROWS]).float()  # type: ignore[attr-defined]
            if cap:
                logits = torch.tanh(logits / cap) * cap
            total += torch.nn.functional.cross_entropy(logits, ids[0, 1 + start:1 + start + ROWS],
                                                       reduction="sum").double()
        loss = total / hidden.shape[0]
        nlls.append(float(loss))
        if progress is not None:
            progress(1)
    mean = sum(nlls) / len(nlls)
    ppl = math.exp(mean) if mean < 700 else math.inf
    return Perplexity(ppl=ppl, tokens=windows.count * (windows.seq_len - 1), window_nll=tuple(nlls))
