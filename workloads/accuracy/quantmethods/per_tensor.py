"""Symmetric round-to-nearest per tensor (one max-abs scale per activation tensor); weights per output channel."""

from __future__ import annotations

import torch

from workloads.accuracy import quant
from workloads.accuracy.quantmethods._base import QuantMethod
from workloads.accuracy.specs import QuantSpec


def _activation(x: torch.Tensor, spec: QuantSpec, site: object) -> tuple[torch.Tensor, None]:
    return quant.symmetric_fake_quant(x, spec.bits, None), None


def per_channel_weight(w: torch.Tensor, spec: QuantSpec, site: object = None) -> torch.Tensor:
    """Per-output-channel symmetric max-abs quantisation at the spec's width (every method but OLAccel)."""
    return quant.weight_fake_quant(w, spec.bits)


METHOD = QuantMethod(activation=_activation, weight=per_channel_weight, reads=("bits", "quantize_weights"))
