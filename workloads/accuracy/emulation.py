"""Applying a quantisation method (``quantmethods/``) to every linear layer of a real model (the accuracy emulation).

Every ``nn.Linear`` except the LM head is wrapped. Linear layers that read the same activation (q/k/v;
gate/up) share one *site*: its activation is quantised once per forward. Per tender.md 2.6 (Llama-
and OPT-style names):

| site input               | bias subtraction | signed |
|--------------------------|------------------|--------|
| q/k/v, gate/up, fc1      | yes              | yes    |
| o_proj (Llama)           | no               | yes    |
| out_proj (OPT)           | yes              | yes    |
| down_proj (Llama)        | no               | yes    |
| fc2 (OPT, after ReLU)    | no               | no     |

Weights are quantised by the method (per output channel at the same bit width for all but OLAccel), once, and
restored afterwards.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from workloads.accuracy import quant
from workloads.accuracy.quantmethods._base import QuantMethod
from workloads.accuracy.specs import QuantSpec

SHARED = {"q_proj": "qkv", "k_proj": "qkv", "v_proj": "qkv", "gate_proj": "gate_up", "up_proj": "gate_up"}
NO_BIAS = {"o_proj", "down_proj", "fc2"}
UNSIGNED = {"fc2"}


@functools.cache
def quant_method(name: str) -> QuantMethod:
    """The quantisation method ``name`` (the module ``quantmethods/<name>.py``)."""
    return importlib.import_module(f"workloads.accuracy.quantmethods.{name}").METHOD


@dataclass
class Held:
    """The input tensor an activation was computed from: the object itself (kept alive) and its version.

    Layers that share an activation receive the very same tensor object (``q_proj(h)``, ``k_proj(h)``), so
    identity plus an unchanged version counter says "the same data". A storage address is no key: a later
    window's activation can be allocated where an earlier, freed one lay, and would be served the earlier
    window's result."""

    tensor: torch.Tensor
    version: int

    @classmethod
    def of(cls, x: torch.Tensor) -> Held:
        return cls(x, x._version)

    def matches(self, x: torch.Tensor) -> bool:
        return x is self.tensor and x._version == self.version


@dataclass
class Site:
    """One quantised activation, shared by the linear layers that read it (``linears``). ``calib``: the method's
    static parameters for this site (Tender's chunk statistics, ANT's type and clip, ...), or None (runtime).
    ``calibrating``: the calibration pass (``calibrate_sites``): parameters are computed from the first input."""

    name: str
    use_bias: bool
    signed: bool
    spec: QuantSpec
    calib: Any = None
    linears: list[nn.Linear] = field(default_factory=list, repr=False)
    calibrating: bool = False
    _input: Held | None = field(default=None, repr=False)
    _value: tuple | None = field(default=None, repr=False)

    @property
    def method(self) -> QuantMethod:
        return quant_method(self.spec.method)

    @property
    def passthrough(self) -> bool:
        """Whether this pass runs the site as loaded (the calibration pass of a method calibrated unquantised)."""
        return self.calibrating and not self.method.calibrate_quantized

    def quantize(self, x_in: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Quantised ``x_in`` as 2-D rows (and Tender's per-chunk bias), computed once per activation."""
        if self._value is not None and self._input is not None and self._input.matches(x_in):
            return self._value  # the other linear layers reading this activation (q/k/v, gate/up)
        x = x_in.reshape(-1, x_in.shape[-1])
        method = self.method
        if self.calib is None and method.calibrate is not None:
            if not self.calibrating:
                raise ValueError(f"quant.method={self.spec.method} has static parameters: site {self.name} needs "
                                 f"its calibration (emulation.calibrate_sites) first")
            self.calib = method.calibrate(x, self.spec, self)
        if self.passthrough:
            value: tuple = (x, None)
        else:
            if method.transform is not None:
                x = method.transform(x, self.spec, self)
            quantise = method.activation is not None and self.spec.quantize_activations
            value = method.activation(x, self.spec, self) if quantise else (x, None)  # type: ignore[misc]
        self._input, self._value = Held.of(x_in), value
        return value

    def reset(self) -> None:
        self._input = self._value = None


class QuantLinear(nn.Module):
    """``y = Q(x) W_q^T + b (+ beta W^T per chunk)`` around an existing linear layer; ``W_q`` is computed on the
    first forward (a method's weight may depend on its site's calibrated parameters) and kept."""

    def __init__(self, linear: nn.Linear, site: Site) -> None:
        super().__init__()
        self.linear = linear
        self.site = site
        self.w_hat: torch.Tensor | None = None

    def weight(self) -> torch.Tensor:
        if self.site.passthrough:
            return self.linear.weight
        if self.w_hat is None:
            spec, method = self.site.spec, self.site.method
            use = method.weight is not None and (spec.quantize_weights or method.transform is not None)
            self.w_hat = method.weight(self.linear.weight.data, spec, self.site) if use else self.linear.weight
        return self.w_hat

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        xq, beta = self.site.quantize(x)
        y = F.linear(xq, self.weight(), self.linear.bias)
        if beta is not None:
            y = add_per_chunk(y, beta @ self.linear.weight.T, self.site.spec.chunk)  # exact add-back, FP weight
        return y.reshape(*shape[:-1], y.shape[-1])


def add_per_chunk(y: torch.Tensor, corr: torch.Tensor, chunk: int) -> torch.Tensor:
    """``y`` [T, N] plus row chunk ``i``'s ``corr[i]`` [n, N] on each of its ``chunk`` rows (in place, broadcast
    over a view when the chunks tile the rows: the same sums as adding the repeated rows, without building them)."""
    rows = y.shape[0]
    if rows % chunk == 0 and y.is_contiguous():
        y.view(rows // chunk, chunk, -1).add_(corr[:, None, :])
        return y
    return y + corr.repeat_interleave(chunk, dim=0)[:rows]


def linear_layers(model: nn.Module) -> list[tuple[str, nn.Module, str, nn.Linear]]:
    """(full name, parent, child name, module) of every linear layer except the LM head."""
    out = []
    for parent_name, parent in model.named_modules():
        for child_name, child in parent.named_children():
            full = f"{parent_name}.{child_name}" if parent_name else child_name
            if isinstance(child, nn.Linear) and child_name != "lm_head":
                out.append((full, parent, child_name, child))
    return out


def site_name(full: str, child: str) -> str:
    parent = full.rsplit(".", 1)[0]
    return f"{parent}.{SHARED.get(child, child)}"


ATTN_NAME = "tide_tender_all"
CAPTURE_NAME = "tide_capture_kv"


@dataclass(frozen=True)
class AttentionStats:
    """One layer's static Tender (all) statistics from the calibration windows (tender.md 4: "a per-key-token K
    scale and a per-channel V scale"): per KV head, the maximum over the windows of max_c |K - b_K| at each key
    position [H_kv, T], and of |V| per head-dim channel over all tokens [H_kv, d]."""

    k_absmax: torch.Tensor
    v_absmax: torch.Tensor


def tender_all_attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                         attention_mask: torch.Tensor | None, scaling: float, dropout: float = 0.0,
                         sliding_window: int | None = None, **kwargs: object) -> tuple[torch.Tensor, None]:
    """Causal attention (within the layer's sliding window, if any) with Tender-quantised QK^T and PV (batch items
    one by one); with the layer's :class:`AttentionStats` (calibrated mode) the K and V scales are static."""
    spec: QuantSpec = module.tide_quant_spec  # type: ignore[assignment]
    stats: AttentionStats | None = getattr(module, "tide_attn_stats", None)
    n_rep = query.shape[1] // key.shape[1]
    k_full, v_full = key.repeat_interleave(n_rep, dim=1), value.repeat_interleave(n_rep, dim=1)
    static = {} if stats is None else {"k_absmax": stats.k_absmax.repeat_interleave(n_rep, dim=0),
                                       "v_absmax": stats.v_absmax.repeat_interleave(n_rep, dim=0)}
    out = torch.stack([quant.tender_attention(query[i], k_full[i], v_full[i], scaling, bits=spec.bits,
                                              groups=spec.groups, chunk=spec.chunk, window=sliding_window, **static)
                       for i in range(query.shape[0])])
    return out.transpose(1, 2).contiguous(), None


def capture_kv_attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                         attention_mask: torch.Tensor | None, **kwargs: object) -> tuple[torch.Tensor, None]:
    """The model's own (SDPA) attention, recording the layer's post-RoPE keys and values on the way."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    module.tide_kv_seen.append((key[0].detach().float(), value[0].detach().float()))  # type: ignore[union-attr]
    return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)  # type: ignore[arg-type]


@torch.no_grad()
def collect_attention_calibration(model: nn.Module, windows: torch.Tensor, device: torch.device
                                  ) -> dict[int, AttentionStats]:
    """Tender (all)'s static K and V statistics per layer from the calibration windows (:class:`AttentionStats`)."""
    from transformers import AttentionInterface

    AttentionInterface.register(CAPTURE_NAME, capture_kv_attention)
    previous = model.config._attn_implementation  # type: ignore[union-attr]
    modules = [m for m in model.modules() if hasattr(m, "layer_idx") and hasattr(m, "q_proj")]
    for m in modules:
        m.tide_kv_seen = []
    try:
        model.set_attn_implementation(CAPTURE_NAME)  # type: ignore[operator]
        for i in range(windows.shape[0]):
            model.model(input_ids=windows[i:i + 1].to(device), use_cache=False)  # type: ignore[attr-defined]
        out = {}
        for m in modules:
            k_max = torch.stack([quant.key_bias_and_max(k)[1][..., 0] for k, _ in m.tide_kv_seen]).amax(0)
            v_max = torch.stack([v.abs().amax(-2) for _, v in m.tide_kv_seen]).amax(0)
            out[int(m.layer_idx)] = AttentionStats(k_absmax=k_max, v_absmax=v_max)
        return out
    finally:
        for m in modules:
            del m.tide_kv_seen
        model.set_attn_implementation(previous)  # type: ignore[operator]


@contextlib.contextmanager
def quantized(model: nn.Module, spec: QuantSpec, calib: dict[str, Any] | None = None,
              attn_calib: dict[int, AttentionStats] | None = None, calibrating: bool = False,
              promoted: frozenset[str] = frozenset()) -> Iterator[dict[str, Site]]:
    """Wrap every linear layer for the duration of the block; the model is restored afterwards. ``calib``: the
    method's static parameters per site; ``attn_calib`` (Tender (all) in calibrated mode): the static K and V
    statistics per layer; ``calibrating``: the pass that computes the parameters (``calibrate_sites``);
    ``promoted``: the sites that run at 8 bits (``quant.int8_share``, ``mixed.promote``)."""
    method = quant_method(spec.method)
    if method.activation is None:  # the model as loaded
        yield {}
        return
    sites: dict[str, Site] = {}
    swapped = []
    try:
        for full, parent, child, lin in linear_layers(model):
            name = site_name(full, child)
            if spec.sites and not re.search(spec.sites, name):
                continue  # quant.sites: this site stays as loaded
            if name not in sites:
                site_spec = dataclasses.replace(spec, bits=8) if name in promoted else spec
                sites[name] = Site(name, use_bias=child not in NO_BIAS, signed=child not in UNSIGNED, spec=site_spec,
                                   calib=(calib or {}).get(name) if method.needs_calibration(spec) else None,
                                   calibrating=calibrating)
            sites[name].linears.append(lin)
            setattr(parent, child, QuantLinear(lin, sites[name]))
            swapped.append((parent, child, lin))
        if spec.quantize_attention:
            from transformers import AttentionInterface

            AttentionInterface.register(ATTN_NAME, tender_all_attention)
            previous = model.config._attn_implementation  # type: ignore[union-attr]
            for m in model.modules():
                if hasattr(m, "layer_idx") and hasattr(m, "q_proj"):
                    m.tide_quant_spec = spec
                    m.tide_attn_stats = (attn_calib or {}).get(int(m.layer_idx))
            model.set_attn_implementation(ATTN_NAME)  # type: ignore[operator]
        yield sites
    finally:
        for parent, child, lin in swapped:
            setattr(parent, child, lin)
        if spec.quantize_attention:
            for m in model.modules():
                for attr in ("tide_quant_spec", "tide_attn_stats"):
                    if hasattr(m, attr):
                        delattr(m, attr)
            model.set_attn_implementation(previous)  # type: ignore[operator]


@torch.no_grad()
def calibrate_sites(model: nn.Module, spec: QuantSpec, windows: torch.Tensor, device: torch.device,
                    promoted: frozenset[str] = frozenset()) -> dict[str, Any]:
    """A method's static parameters per site (``QuantMethod.calibrate``), from one pass of the calibration windows
    as one batch: every site computes its parameters from all the calibration tokens it sees (the artifacts'
    "first batch"), quantising from then on if the method calibrates quantised; ``promoted`` sites at 8 bits."""
    with quantized(model, spec, calibrating=True, promoted=promoted) as sites:
        model.model(input_ids=windows.to(device), use_cache=False)  # type: ignore[attr-defined]
    return {name: site.calib for name, site in sites.items() if site.calib is not None}


@torch.no_grad()
def collect_calibration(model: nn.Module, windows: torch.Tensor, chunk: int, device: torch.device
                        ) -> dict[str, quant.ChunkStats]:
    """Tender's calibrated statistics per site and chunk index (tender.md 4): bias = mean over samples of
    the per-sample (max+min)/2; tensor and channel maxima = max over samples (after the sample's bias)."""
    acc: dict[str, dict[str, list[torch.Tensor]]] = {}
    seen: dict[str, Held] = {}  # the last input per site
    hooks = []
    for full, _parent, child, lin in linear_layers(model):
        name = site_name(full, child)
        use_bias = child not in NO_BIAS

        def hook(_mod: nn.Module, args: tuple, name: str = name, use_bias: bool = use_bias) -> None:
            last = seen.get(name)
            if last is not None and last.matches(args[0]):
                return  # another linear layer of the same site reading the same activation
            seen[name] = Held.of(args[0])
            x = args[0].reshape(-1, args[0].shape[-1])
            st = quant.chunk_stats(x.float(), chunk, use_bias)
            d = acc.setdefault(name, {"bias": [], "tmax": [], "cmax": []})
            if st.bias is not None:
                d["bias"].append(st.bias)
            d["tmax"].append(st.tmax)
            d["cmax"].append(st.cmax)

        hooks.append(lin.register_forward_pre_hook(hook))
    try:
        for i in range(windows.shape[0]):
            model.model(input_ids=windows[i:i + 1].to(device), use_cache=False)  # type: ignore[attr-defined]
    finally:
        for h in hooks:
            h.remove()
    return {
        name: quant.ChunkStats(
            bias=torch.stack(d["bias"]).mean(0) if d["bias"] else None,
            tmax=torch.stack(d["tmax"]).amax(0),
            cmax=torch.stack(d["cmax"]).amax(0),
        )
        for name, d in acc.items()
    }
