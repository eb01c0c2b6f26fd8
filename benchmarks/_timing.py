"""Shared by the model benchmark scripts: their command line, the proxy model with one evaluation
window, and the minimum wall time of full forward passes (body + LM head)."""

from __future__ import annotations

import argparse
import time

import torch

from dse.config import AccuracyConfig
from workloads.accuracy.real_model import LoadedModel, load
from workloads.accuracy.text import read_wikitext, token_windows


def model_bench_parser(doc: str | None, repeats: int) -> argparse.ArgumentParser:
    """``--seq-len`` (tokens of the window, default 2048) and ``--repeats`` (timed runs, minimum kept)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seq-len", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=repeats)
    return parser


def proxy_window(seq_len: int) -> tuple[AccuracyConfig, LoadedModel, torch.Tensor]:
    """The default accuracy config, the proxy model it names, and its first evaluation window."""
    cfg = AccuracyConfig()
    lm = load(cfg.model_path, proxy=cfg.proxy.to_packaged())
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
