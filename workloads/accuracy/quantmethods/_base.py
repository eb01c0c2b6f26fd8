"""What a quantisation method is: how it quantises an activation and a weight, which ``QuantSpec`` fields it
reads (they, and nothing else, enter the measurement's key), whether it reads the calibration text, and its label
(shared by the method modules)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from workloads.accuracy.specs import QuantSpec

if TYPE_CHECKING:
    from workloads.accuracy.emulation import Site

#: (activation rows [T, C], the spec, the site it is read at) -> (fake-quantised rows, per-chunk bias [n, C] to add
#: back as beta W^T with the unquantised weight, or None)
Activation = Callable[[torch.Tensor, QuantSpec, "Site"], tuple[torch.Tensor, torch.Tensor | None]]
#: (weight [N, K], the spec) -> the fake-quantised weight
Weight = Callable[[torch.Tensor, QuantSpec], torch.Tensor]


def _never(spec: QuantSpec) -> bool:
    return False


def bits_label(spec: QuantSpec) -> str:
    return f"{spec.method} b{spec.bits}"


@dataclass(frozen=True)
class QuantMethod:
    """A quantisation method of the emulation.

    ``activation`` is None for a method that runs the model as loaded (nothing is wrapped). ``weight`` applies
    when ``quant.quantize_weights``. ``reads``: the ``QuantSpec`` fields besides ``method`` that change what the
    method computes. ``needs_calibration``: whether a spec reads statistics of the calibration text (then the
    measurement depends on that text, and ``quant.rounding=auto`` chooses its rounding on it)."""

    activation: Activation | None
    weight: Weight | None = None
    reads: tuple[str, ...] = ()
    needs_calibration: Callable[[QuantSpec], bool] = _never
    label: Callable[[QuantSpec], str] = bits_label

    def key_fields(self, spec: QuantSpec) -> dict[str, Any]:
        """What identifies this spec's measurement: the method and the fields it reads."""
        return {"method": spec.method, **{name: getattr(spec, name) for name in self.reads}}
