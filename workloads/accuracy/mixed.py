"""Per-layer mixed precision, as ANT's artifact chooses it (``-n8``; shared/reference/quant-baselines.md 1.4, 4.2).

After a calibration pass with every layer at 4 bits: (1) the last two quantised linear layers in module order are
set to 8 bits (the artifact's "for BERT" step; on a Llama model the last block's up_proj and down_proj); (2) the
other linear layers are ranked by their weight MSE plus input MSE at 4 bits (absolute, not normalised) and promoted,
largest first; (3) every quantiser is calibrated again at its new width. The artifact's knob is a layer count; TIDE's
``quant.int8_share`` is the share of the linear layers' MACs at 8 bits (what the cost model charges, conf/system/
ant.yaml), so after the two forced layers promotion stops at the first layer that brings the share to at least the
target. Unit of promotion:
the emulation's site, so a linear's siblings that read the same activation (q/k/v, gate/up) change width with it
(in the artifact each has its own input quantiser on the same data; one shared input at two widths is not
emulated). The share reached is at least the target (and at least the forced layers' share) and exceeds it by at
most one site's MACs otherwise."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn


@dataclass(frozen=True)
class LinearScore:
    """One linear layer: its name, its site, weight MSE + input MSE at 4 bits, and its MACs per token."""

    name: str
    site: str
    mse: float
    macs: int


def linear_scores(model: nn.Module, calib: Mapping[str, Any]) -> list[LinearScore]:
    """Every quantised linear layer in module order with its 4-bit score, from a calibration's per-site parameters
    (``Static``: the activation's choice and each weight's, keyed by its storage; a weight not searched, as with
    ``quant.quantize_weights=false``, adds nothing)."""
    from workloads.accuracy.emulation import linear_layers, site_name

    out = []
    for full, _parent, child, lin in linear_layers(model):
        site = site_name(full, child)
        static = calib.get(site)
        if static is None:
            continue
        weight = static.weights.get(lin.weight.data_ptr())
        mse = static.activation.mse + (weight.mse if weight is not None else 0.0)
        out.append(LinearScore(full, site, mse, lin.in_features * lin.out_features))
    return out


def promote(scores: Sequence[LinearScore], share: float) -> frozenset[str]:
    """The sites set to 8 bits for a MAC share of at least ``share`` (the module's rule); none for 0."""
    if share <= 0 or not scores:
        return frozenset()
    macs = {s.site: 0 for s in scores}
    for s in scores:
        macs[s.site] += s.macs
    total = sum(macs.values())
    chosen = dict.fromkeys(s.site for s in scores[-2:])  # forced, whatever the target
    for s in sorted(scores[:-2], key=lambda s: -s.mse):
        if sum(macs[name] for name in chosen) >= share * total:
            break
        chosen.setdefault(s.site)
    return frozenset(chosen)


def mac_share(scores: Sequence[LinearScore], sites: frozenset[str]) -> float:
    """The share of the layers' MACs that runs at 8 bits when ``sites`` do."""
    total = sum(s.macs for s in scores)
    return sum(s.macs for s in scores if s.site in sites) / total if total else 0.0
