"""SmoothQuant (Xiao et al., ICML 2023), as ``mit-han-lab/smoothquant`` runs it (shared/reference/
quant-baselines.md 3, 4.4).

Per input channel j of a norm-fed site (q/k/v and gate/up on Llama, fc1 on OPT), the smoothing factor
s_j = max|X_j|^alpha / (max over the site's linears and their rows of |W[:, j]|)^(1 - alpha), s_j >= 1e-5, moves the
activation outliers into the weights: X diag(s)^-1 and diag(s) W^T, the same product (``smooth.py`` folds 1/s into
the norm's weight; here the division is applied to the site's input, the same values). max|X_j| is taken over
every calibration token at the linear's input in the unquantised model (``calibration.py``). o_proj/out_proj and
down_proj/fc2 inputs are not smoothed. Then symmetric absmax round-to-nearest: weights per output channel (the
Llama path's default), activations per token (dynamic, ``quant.act_scale=per_token``, SmoothQuant's own Llama
setting) or per tensor with the static maximum from calibration (``per_tensor``, the O3 level). ``quant.bits=4``
keeps the recipe with q_max = 7. ``quant.smooth_alpha``: 0.85 for Llama-2-7B/13B (0.5 OPT, 0.9 Llama-2-70B)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from workloads.accuracy import quant
from workloads.accuracy.quantmethods._base import QuantMethod, always
from workloads.accuracy.specs import QuantSpec

if TYPE_CHECKING:
    from workloads.accuracy.emulation import Site

SMOOTHED = ("qkv", "gate_up", "fc1")  # sites fed by a norm (emulation.SHARED's names; OPT's fc1)
MIN_SCALE = 1e-5


@dataclass(frozen=True)
class Smoothing:
    """One site's calibration: the per-channel max |X_j| over the calibration tokens [C], and the smoothing factors
    [C] (None: a site that is not smoothed)."""

    absmax: torch.Tensor
    factors: torch.Tensor | None

    @property
    def smoothed_max(self) -> torch.Tensor:
        """max |X / s| over the calibration tokens (the static per-tensor maximum)."""
        return (self.absmax / self.factors).amax() if self.factors is not None else self.absmax.amax()


def factors(x_absmax: torch.Tensor, w_absmax: torch.Tensor, alpha: float) -> torch.Tensor:
    """s_j = max|X_j|^alpha / max|W_j|^(1 - alpha), at least 1e-5 (``smooth.py``)."""
    return (x_absmax.pow(alpha) / w_absmax.pow(1 - alpha)).clamp(min=MIN_SCALE)


def smoothed(site_name: str) -> bool:
    return site_name.rsplit(".", 1)[-1] in SMOOTHED


def _calibrate(x: torch.Tensor, spec: QuantSpec, site: Site) -> Smoothing:
    absmax = x.abs().amax(0).float()
    if not smoothed(site.name):
        return Smoothing(absmax, None)
    w_absmax = torch.stack([lin.weight.detach().abs().amax(0) for lin in site.linears]).amax(0).float()
    return Smoothing(absmax, factors(absmax, w_absmax.clamp(min=MIN_SCALE), spec.smooth_alpha))


def _transform(x: torch.Tensor, spec: QuantSpec, site: Site) -> torch.Tensor:
    s = site.calib.factors
    return x / s.to(x.dtype) if s is not None else x


def _activation(x: torch.Tensor, spec: QuantSpec, site: Site) -> tuple[torch.Tensor, None]:
    if spec.act_scale == "per_token":
        return quant.symmetric_fake_quant(x, spec.bits, -1), None
    amax = site.calib.smoothed_max.to(x.dtype)
    return quant.symmetric_fake_quant(x, spec.bits, None, amax=amax), None


def _weight(w: torch.Tensor, spec: QuantSpec, site: Site) -> torch.Tensor:
    s = site.calib.factors
    folded = w * s.to(w.dtype)[None, :] if s is not None else w
    return quant.weight_fake_quant(folded, spec.bits) if spec.quantize_weights else folded


def _label(spec: QuantSpec) -> str:
    return f"smoothquant b{spec.bits} a{spec.smooth_alpha:g} {spec.act_scale}"


METHOD = QuantMethod(activation=_activation, weight=_weight, reads=("bits", "smooth_alpha", "act_scale"),
                     needs_calibration=always, transform=_transform, calibrate=_calibrate,
                     calibrate_quantized=False, label=_label)
