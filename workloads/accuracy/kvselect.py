"""KV-token selection on a real model: InfiniGen's speculation and the baselines it is compared with.

Emulation (infinigen.md section 5): one full-sequence forward pass per window; every query row plays one
decode step and attends only to the past tokens selected for it. A custom attention function (registered
with transformers' attention registry) applies causality itself and, per the method's needs, masks the
real attention logits or runs fused attention under the selection mask. Layers < ``dense_layers`` and
rows below the cap floor(budget * T) stay dense.

The methods are the modules of ``kvmethods/`` (``dense``, ``infinigen``, and at the same budget B, i.e.
k = floor(B T) tokens per row: ``local``, ``h2o``, ``oracle_topk``); :func:`kv_method` loads one by name.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from workloads.accuracy.kvmethods._base import KVMethod, SelectionInput, blocked_mask
from workloads.accuracy.kvmethods.infinigen import Skew, calibrated_skew
from workloads.accuracy.measured import ContextBucket, SelectionStats, SpeculationQuality
from workloads.accuracy.quant import group_fake_quant
from workloads.accuracy.specs import KVSpec

ATTN_NAME = "tide_select"


@functools.cache
def kv_method(name: str) -> KVMethod:
    """The KV-selection method ``name`` (the module ``kvmethods/<name>.py``)."""
    return importlib.import_module(f"workloads.accuracy.kvmethods.{name}").METHOD


def causal_mask(T: int, device: torch.device) -> torch.Tensor:
    return torch.ones(T, T, dtype=torch.bool, device=device).tril()


# ---------------------------------------------------------------- the model-facing part

@dataclass
class Selector:
    """Per-forward state shared by the attention layers of one model."""

    spec: KVSpec
    skew: dict[int, Skew] | None = None  # layer -> skewing matrices and offline column masses
    xa: dict[int, torch.Tensor] = field(default_factory=dict)  # layer -> normed attention input
    resid: dict[int, torch.Tensor] = field(default_factory=dict)  # layer -> residual stream entering the layer
    norms: dict[int, nn.Module] = field(default_factory=dict)  # layer -> its attention input norm
    pos: dict[int, Any] = field(default_factory=dict)  # layer -> (cos, sin) or None
    counts: dict[int, list[torch.Tensor]] = field(default_factory=dict)  # layer -> per-row selected counts
    capture: dict[int, tuple[torch.Tensor, torch.Tensor]] | None = None  # calibration: layer -> (q, k)
    quality: dict[int, dict[str, float]] | None = None  # kv.report: layer -> summed speculation-quality stats


def select_attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                     attention_mask: torch.Tensor | None, scaling: float, dropout: float = 0.0,
                     sliding_window: int | None = None, **kwargs: Any) -> tuple[torch.Tensor, None]:
    """Causal attention (within the layer's sliding window, if any) where each row sees only the keys selected
    for it, over the KV cache as stored (``kv.cache_bits``) (batch 1)."""
    selector: Selector | None = getattr(module, "tide_selector", None)
    layer = int(module.layer_idx)
    spec = selector.spec if selector is not None else KVSpec()
    if spec.cache_bits < 16:  # every row reads K and V from the compressed cache
        key = group_fake_quant(key, spec.cache_bits, spec.cache_group)
        value = group_fake_quant(value, spec.cache_bits, spec.cache_group)
    n_rep = query.shape[1] // key.shape[1]
    if selector is not None and selector.capture is not None:
        selector.capture[layer] = (query[0].detach(), key[0].detach())
    k_full = key.repeat_interleave(n_rep, dim=1)
    v_full = value.repeat_interleave(n_rep, dim=1)
    T = query.shape[2]
    blocked = blocked_mask(T, sliding_window, query.device)
    method = kv_method(spec.method)
    sparse = method.select is not None and layer >= spec.dense_layers and selector is not None
    cap = max(1, int(math.floor(spec.budget * T)))

    def selection(logits: torch.Tensor | None) -> torch.Tensor:
        drop, counts = method.select(SelectionInput(module, selector, layer, query[0], key[0], logits, scaling,
                                                    n_rep, cap, sliding_window))
        selector.counts.setdefault(layer, []).append(counts)
        return drop

    if not sparse or not method.exact_logits:
        # Nothing reads the exact logits, so the attention itself runs fused (SDPA) under the mask.
        keep = ~blocked
        if sparse and cap < T:
            keep = keep.unsqueeze(0).repeat(query.shape[1], 1, 1)
            keep[:, cap:, :] &= ~selection(None)
        out = torch.nn.functional.scaled_dot_product_attention(query, k_full, v_full, attn_mask=keep.unsqueeze(0),
                                                               scale=scaling)
        return out.transpose(1, 2).contiguous(), None
    logits = (query * scaling) @ k_full.transpose(-1, -2)  # [b, H, T, T]
    logits.masked_fill_(blocked, -math.inf)
    if cap < T:
        logits[0, :, cap:, :].masked_fill_(selection(logits[0]), -math.inf)  # rows below the cap stay dense
    probs = torch.softmax(logits, dim=-1, dtype=torch.float32).to(query.dtype)
    out = probs @ v_full
    return out.transpose(1, 2).contiguous(), None


def attention_modules(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if hasattr(m, "layer_idx") and hasattr(m, "q_proj")]


#: the attention-input norm of a decoder layer (Llama/Gemma-style names, then OPT's)
INPUT_NORMS = ("input_layernorm", "self_attn_layer_norm")


def decoder_layers(model: nn.Module) -> dict[int, nn.Module]:
    """Layer index -> decoder layer (the module whose ``self_attn`` is that layer's attention)."""
    return {int(m.self_attn.layer_idx): m for m in model.modules()
            if hasattr(m, "self_attn") and hasattr(m.self_attn, "layer_idx")}


def _register() -> None:
    from transformers import AttentionInterface

    AttentionInterface.register(ATTN_NAME, select_attention)


@contextlib.contextmanager
def kv_selection(model: nn.Module, selector: Selector) -> Iterator[Selector]:
    """Run the model's attention through ``select_attention`` with this selector (restored afterwards)."""
    _register()
    previous = model.config._attn_implementation
    modules = attention_modules(model)
    hooks = []

    def capture(module: nn.Module, args: tuple, kwargs: dict) -> None:
        hidden = kwargs.get("hidden_states", args[0] if args else None)
        selector.xa[int(module.layer_idx)] = hidden.detach()
        selector.pos[int(module.layer_idx)] = kwargs.get("position_embeddings")

    def capture_resid(index: int) -> Any:
        def hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
            hidden = kwargs.get("hidden_states", args[0] if args else None)
            selector.resid[index] = hidden.detach()
        return hook

    try:
        model.set_attn_implementation(ATTN_NAME)
        for m in modules:
            m.tide_selector = selector
            hooks.append(m.register_forward_pre_hook(capture, with_kwargs=True))
        if selector.spec.spec_input == "prev_own_norm":  # the residual stream and each layer's own norm
            for index, layer in decoder_layers(model).items():
                norm = next((getattr(layer, n) for n in INPUT_NORMS if hasattr(layer, n)), None)
                if norm is None:
                    raise ValueError(f"kv.spec_input=prev_own_norm: layer {index} ({type(layer).__name__}) has none "
                                     f"of the attention-input norms {INPUT_NORMS}")
                selector.norms[index] = norm
                hooks.append(layer.register_forward_pre_hook(capture_resid(index), with_kwargs=True))
        yield selector
    finally:
        for h in hooks:
            h.remove()
        for m in modules:
            if hasattr(m, "tide_selector"):
                del m.tide_selector
        model.set_attn_implementation(previous)


@torch.no_grad()
def calibrate_skew(model: nn.Module, windows: torch.Tensor, device: torch.device) -> dict[int, Skew]:
    """Per layer, from the post-RoPE queries and keys of the calibration windows: the skewing matrices (per KV
    head and per query head) and the offline column masses of the skewed queries and keys."""
    selector = Selector(KVSpec(), capture={})
    queries: dict[int, list[torch.Tensor]] = {}
    keys: dict[int, list[torch.Tensor]] = {}
    with kv_selection(model, selector):
        for i in range(windows.shape[0]):
            selector.capture = {}
            model.model(input_ids=windows[i:i + 1].to(device), use_cache=False)  # type: ignore[attr-defined]
            for layer, (q, k) in selector.capture.items():
                queries.setdefault(layer, []).append(q.float())
                keys.setdefault(layer, []).append(k.float())
    return {layer: calibrated_skew(torch.cat(qs, dim=1), torch.cat(keys[layer], dim=1))  # [H, sum T, d]
            for layer, qs in queries.items()}


def selected_token_stats(selector: Selector, T: int, bucket: int | None = None) -> SelectionStats | None:
    """Mean selected tokens per (sparse) layer and query row, overall and by context-length bucket (256 tokens, or
    T/8 for shorter windows), with the speculation quality when ``kv.report`` collected it; None when no layer
    selected."""
    if not selector.counts:
        return None
    bucket = bucket or max(1, min(256, T // 8))
    per_layer = {layer: torch.stack(c).float().mean(0) for layer, c in selector.counts.items()}  # [T]
    mean_rows = torch.stack(list(per_layer.values())).mean(0)
    buckets = tuple(ContextBucket(s + 1, min(s + bucket, T), float(mean_rows[s:s + bucket].mean()))
                    for s in range(0, T, bucket))
    return SelectionStats(float(mean_rows.mean()), buckets, {k: float(v.mean()) for k, v in per_layer.items()},
                          quality_stats(selector))


def quality_stats(selector: Selector) -> SpeculationQuality | None:
    """``kv.report``: per sparse layer, the mean recall of the exact per-head top-k by the speculated top-k
    (at each row's k) and the mean Spearman correlation of speculated and exact scores."""
    if not selector.quality:
        return None
    return SpeculationQuality({layer: (q["recall"] / max(q["rows"], 1.0), q["spearman"] / max(q["ranked"], 1.0))
                               for layer, q in sorted(selector.quality.items())})
