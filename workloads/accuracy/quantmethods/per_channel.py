"""Symmetric round-to-nearest per input channel (one max-abs scale per activation column, over the tokens of the
tensor); weights per output channel.

An accuracy reference more than a hardware scheme: a per-channel activation scale lies along the reduction
dimension, so an integer GEMM would have to rescale every product (the cost Tender's power-of-two groups remove,
tender.md 1); it shows how much of a per-tensor loss is the outlier channels' shared step."""

from __future__ import annotations

import torch

from workloads.accuracy import quant
from workloads.accuracy.quantmethods._base import QuantMethod
from workloads.accuracy.quantmethods.per_tensor import per_channel_weight
from workloads.accuracy.specs import QuantSpec


def _activation(x: torch.Tensor, spec: QuantSpec, site: object) -> tuple[torch.Tensor, None]:
    return quant.symmetric_fake_quant(x, spec.bits, 0), None


METHOD = QuantMethod(activation=_activation, weight=per_channel_weight, reads=("bits", "quantize_weights"))
