"""Tender (tender.md 2): per row chunk, channels grouped by their maxima on a power-of-two ladder of scales
(``quant.tender_fake_quant``), the per-chunk bias subtracted where the site allows it and added back exactly; in
calibrated mode the chunk statistics come from the calibration text (``emulation.collect_calibration``), and
with ``quantize_attention`` (Tender (all)) QK^T and PV are quantised too (``emulation.tender_all_attention``).
Weights per output channel at the same width."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from workloads.accuracy import quant
from workloads.accuracy.quantmethods._base import QuantMethod
from workloads.accuracy.quantmethods.per_tensor import per_channel_weight
from workloads.accuracy.specs import QuantSpec

if TYPE_CHECKING:
    from workloads.accuracy.emulation import Site


def _activation(x: torch.Tensor, spec: QuantSpec, site: Site) -> tuple[torch.Tensor, torch.Tensor | None]:
    return quant.tender_fake_quant(x, bits=spec.bits, groups=spec.groups, chunk=spec.chunk, signed=site.signed,
                                   use_bias=site.use_bias, calib=site.calib, rounding=spec.rounding)


def _label(spec: QuantSpec) -> str:
    return f"tender b{spec.bits} G{spec.groups} S{spec.chunk} {spec.mode}"


METHOD = QuantMethod(activation=_activation, weight=per_channel_weight,
                     reads=("bits", "groups", "chunk", "mode", "rounding", "quantize_weights", "quantize_attention"),
                     needs_calibration=lambda spec: spec.mode == "calibrated", label=_label)
