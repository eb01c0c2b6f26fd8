"""ANT (Guo et al., MICRO 2022), as its artifact runs it (shared/reference/quant-baselines.md 1.2-1.4, 4.2).

A fixed-length code whose *type* is chosen per tensor among int, PoT and flint at 4 bits (mode
"ant-int-pot-flint"; 8 bits are always int). Each tensor's clip alpha is searched over alpha = b0 i / 100,
i = 75..149 (95..149 at 8 bits), b0 = max |x| (per output row for weights, per tensor for activations), by the
quantisation MSE of the whole tensor; weights keep the best alpha per row and the type with the lowest summed
error, activations one alpha and one type per tensor, static after calibration (the artifact calibrates on the
first batch each quantiser sees; here the calibration windows, as one batch, behind the quantised layers before
it). A tensor is unsigned when its calibration data has no negative value; weights are always signed. Uniform
precision by default (Tender's tables show ANT at uniform INT4 and INT8, 1.4); ``quant.int8_share`` > 0 applies
the artifact's mixed-precision rule (``-n8``, ``workloads/accuracy/mixed.py``). Attention matmuls, embeddings,
norms and the LM head stay in float, as in OliVe's LLM path."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from workloads.accuracy import formats
from workloads.accuracy.quantmethods._base import QuantMethod, Static, always
from workloads.accuracy.specs import QuantSpec

if TYPE_CHECKING:
    from workloads.accuracy.emulation import Site

#: clip candidates, in hundredths of b0 (``lo`` .. ``hi`` - 1; quant-baselines.md 1.3 step 2)
SEARCH = {4: (75, 150), 8: (95, 150)}


@dataclass(frozen=True)
class Choice:
    """The type chosen for a tensor, its clip per row ([R]; one row for an activation), its signedness, the width,
    the summed squared error of every type at its best clips (what the choice was made on) and the number of values
    it was summed over."""

    kind: str
    alpha: torch.Tensor
    signed: bool
    bits: int
    errors: dict[str, float]
    count: int = 1

    @property
    def grid(self) -> torch.Tensor:
        return formats.ant_grid(self.kind, self.bits, self.signed)

    @property
    def mse(self) -> float:
        """The chosen type's mean squared error (the mixed-precision rule's ranking input, 1.4)."""
        return self.errors[self.kind] / max(self.count, 1)


def search(x: torch.Tensor, bits: int, signed: bool) -> Choice:
    """ANT's clip search and type choice on rows ``x`` [R, K] (quant-baselines.md 1.3)."""
    lo, hi = SEARCH[bits]
    base = x.abs().amax(-1).double()
    base = torch.where(base > 0, base, torch.ones_like(base))
    alphas = base[:, None] * (torch.arange(lo, hi, dtype=torch.float64) / 100)[None, :]  # [R, A]
    rows = formats.Sorted.of(x) if bits == 4 or x.shape[0] == 1 else None  # int8 rows: arithmetic, no sort
    best: dict[str, tuple[float, torch.Tensor]] = {}
    for kind in formats.ANT_TYPES[bits]:
        grid = formats.ant_grid(kind, bits, signed)
        err = formats.sse(x, rows, grid, alphas / grid[-1])
        m, i = err.min(-1)
        best[kind] = (float(m.sum()), alphas.gather(1, i[:, None])[:, 0])
    kind = min(best, key=lambda k: best[k][0])  # ties: the first type in the mode's order
    return Choice(kind, best[kind][1], signed, bits, {k: v[0] for k, v in best.items()}, x.numel())


def fake_quant(x: torch.Tensor, choice: Choice) -> torch.Tensor:
    """``s * nearest(x / s)`` on the chosen grid, s = alpha / grid max (per row of ``x`` [R, K], or one alpha)."""
    grid = choice.grid
    scale = (choice.alpha / grid[-1]).to(x.dtype)
    return formats.quantize(x, grid, scale[:, None] if scale.numel() == x.shape[0] else scale.reshape(()))


def _calibrate(x: torch.Tensor, spec: QuantSpec, site: Site) -> Static:
    signed = bool((x < 0).any())
    return Static(search(x.reshape(1, -1), spec.bits, signed))


def _activation(x: torch.Tensor, spec: QuantSpec, site: Site) -> tuple[torch.Tensor, None]:
    return fake_quant(x, site.calib.activation), None


def _weight(w: torch.Tensor, spec: QuantSpec, site: Site) -> torch.Tensor:
    return fake_quant(w, site.calib.weight(w, lambda t: search(t, spec.bits, signed=True)))


METHOD = QuantMethod(activation=_activation, weight=_weight, reads=("bits", "int8_share"), needs_calibration=always,
                     calibrate=_calibrate, mixed_precision=True)
