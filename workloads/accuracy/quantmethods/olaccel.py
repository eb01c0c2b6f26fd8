"""OLAccel (Park et al., ISCA 2018): the largest ``outlier_ratio`` of each activation tensor's magnitudes, and of
each weight row's, stay at high precision; the rest are quantised max-abs over the normal range
(``quant.outlier_fake_quant``)."""

from __future__ import annotations

import torch

from workloads.accuracy import quant
from workloads.accuracy.quantmethods._base import QuantMethod
from workloads.accuracy.specs import QuantSpec


def _activation(x: torch.Tensor, spec: QuantSpec, site: object) -> tuple[torch.Tensor, None]:
    return quant.outlier_fake_quant(x, spec.bits, spec.outlier_ratio), None


def _weight(w: torch.Tensor, spec: QuantSpec, site: object) -> torch.Tensor:
    return quant.outlier_fake_quant(w, spec.bits, spec.outlier_ratio, dim=-1)


METHOD = QuantMethod(activation=_activation, weight=_weight, reads=("bits", "quantize_weights", "outlier_ratio"))
