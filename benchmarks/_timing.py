"""Shared by the benchmark scripts: the minimum wall time of full forward passes (body + LM head)."""

from __future__ import annotations

import time

import torch


def forward_time(model: torch.nn.Module, ids: torch.Tensor, repeats: int) -> float:
    best = float("inf")
    with torch.no_grad():
        for _ in range(repeats):
            t0 = time.perf_counter()
            model.lm_head(model.model(input_ids=ids, use_cache=False).last_hidden_state)
            best = min(best, time.perf_counter() - t0)
    return best
