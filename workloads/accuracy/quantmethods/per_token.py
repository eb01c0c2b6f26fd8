"""Symmetric round-to-nearest per token (one max-abs scale per activation row); weights per output channel."""

from __future__ import annotations

import torch

from workloads.accuracy import quant
from workloads.accuracy.quantmethods._base import QuantMethod
from workloads.accuracy.quantmethods.per_tensor import per_channel_weight
from workloads.accuracy.specs import QuantSpec


def _activation(x: torch.Tensor, spec: QuantSpec, site: object) -> tuple[torch.Tensor, None]:
    return quant.symmetric_fake_quant(x, spec.bits, -1), None


METHOD = QuantMethod(activation=_activation, weight=per_channel_weight, reads=("bits", "quantize_weights"))
