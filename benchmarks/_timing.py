"""Shared by the model benchmark scripts: the proxy model with one evaluation window, and the minimum
wall time of full forward passes (body + LM head)."""

from __future__ import annotations

import time

import torch

from dse.config import AccuracyConfig
from workloads.real_model import LoadedModel, load
from workloads.text import read_wikitext, token_windows


def proxy_window(seq_len: int) -> tuple[AccuracyConfig, LoadedModel, torch.Tensor]:
    """The default accuracy config, the proxy model it names, and its first evaluation window."""
    cfg = AccuracyConfig()
    lm = load(cfg.model_path)
    ids = token_windows(lm.tokenizer, read_wikitext(cfg.path("text_path")), seq_len, 1).ids.to(lm.device)
    return cfg, lm, ids


def forward_time(model: torch.nn.Module, ids: torch.Tensor, repeats: int) -> float:
    best = float("inf")
    with torch.no_grad():
        for _ in range(repeats):
            t0 = time.perf_counter()
            model.lm_head(model.model(input_ids=ids, use_cache=False).last_hidden_state)
            best = min(best, time.perf_counter() - t0)
    return best
