"""What a quantisation method is: how it quantises an activation and a weight, which ``QuantSpec`` fields it
reads (they, and nothing else, enter the measurement's key), whether and how it reads the calibration text, and
its label (shared by the method modules)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from workloads.accuracy.specs import QuantSpec

if TYPE_CHECKING:
    from workloads.accuracy.emulation import Site

#: (activation rows [T, C], the spec, the site it is read at) -> (fake-quantised rows, per-chunk bias [n, C] to add
#: back as beta W^T with the unquantised weight, or None)
Activation = Callable[[torch.Tensor, QuantSpec, "Site"], tuple[torch.Tensor, torch.Tensor | None]]
#: (weight [N, K], the spec, the site whose activation it multiplies) -> the fake-quantised weight
Weight = Callable[[torch.Tensor, QuantSpec, "Site"], torch.Tensor]
#: (activation rows [T, C], the spec, the site) -> rows: an exact rewrite applied before the quantiser whether or not
#: activations are quantised (SmoothQuant's division by the smoothing factors, folded into the weights)
Transform = Callable[[torch.Tensor, QuantSpec, "Site"], torch.Tensor]
#: (the calibration batch's rows at a site [T, C], the spec, the site) -> the site's static parameters
Calibrate = Callable[[torch.Tensor, QuantSpec, "Site"], Any]


def _never(spec: QuantSpec) -> bool:
    return False


def always(spec: QuantSpec) -> bool:
    """``needs_calibration`` of a method whose parameters are all static (calibrated)."""
    return True


def bits_label(spec: QuantSpec) -> str:
    return f"{spec.method} b{spec.bits}" + (f" 8b-share {spec.int8_share:g}" if spec.int8_share > 0 else "")


@dataclass(frozen=True)
class QuantMethod:
    """A quantisation method of the emulation.

    ``activation`` is None for a method that runs the model as loaded (nothing is wrapped); it applies when
    ``quant.quantize_activations``. ``weight`` applies when ``quant.quantize_weights`` (and always for a method
    with a ``transform``, whose weight folds it in, quantised or not). ``reads``: the ``QuantSpec`` fields besides
    ``method`` that change what the method computes. ``needs_calibration``: whether a spec reads
    statistics of the calibration text (then the measurement depends on that text).

    ``calibrate``: a method with static per-site parameters (ANT, OliVe, SmoothQuant) computes them from the
    calibration batch at each site (``emulation.calibrate_sites``); ``calibrate_quantized``: whether the sites
    already calibrated quantise during that pass (the ANT/OliVe artifacts initialise each quantiser on the first
    batch it sees, behind the quantised layers before it), or the pass runs the model as loaded (SmoothQuant's
    activation scales come from the unquantised model). Methods without ``calibrate`` that need calibration
    (Tender) read per-chunk statistics (``emulation.collect_calibration``). ``mixed_precision``: the method reads
    ``quant.int8_share`` and its calibrated parameters (activation and weights) carry the ``mse`` that ANT's
    mixed-precision rule ranks layers by (``workloads/accuracy/mixed.py``)."""

    activation: Activation | None
    weight: Weight | None = None
    reads: tuple[str, ...] = ()
    needs_calibration: Callable[[QuantSpec], bool] = _never
    label: Callable[[QuantSpec], str] = bits_label
    transform: Transform | None = None
    calibrate: Calibrate | None = None
    calibrate_quantized: bool = True
    mixed_precision: bool = False

    def canonical(self, spec: QuantSpec) -> QuantSpec:
        """The spec this method measures ``spec`` as: with every layer promoted (``int8_share`` 1) a mixed-precision
        method runs uniform 8 bits, bit for bit (tests/test_quant_baselines.py), so it is measured and keyed so."""
        if self.mixed_precision and spec.bits == 4 and spec.int8_share >= 1:
            return dataclasses.replace(spec, bits=8, int8_share=0.0)
        return spec

    def key_fields(self, spec: QuantSpec) -> dict[str, Any]:
        """What identifies this spec's measurement: the method and the fields it reads (and, for a method that
        quantises, which of activations and weights it quantises)."""
        spec = self.canonical(spec)
        fields = {"method": spec.method, **{name: getattr(spec, name) for name in self.reads}}
        if self.activation is not None:
            fields["quantize_activations"] = spec.quantize_activations
            fields["quantize_weights"] = spec.quantize_weights
            if spec.sites:
                fields["sites"] = spec.sites
        return fields



@dataclass
class Static:
    """A site's static parameters (ANT, OliVe): the activation's, from the calibration batch, and each of its
    weights' (searched once, on first use, and kept with the calibration: later measurements of the same
    calibration reuse them), keyed by the weight's storage."""

    activation: Any
    weights: dict[int, Any] = field(default_factory=dict, repr=False)

    def weight(self, w: torch.Tensor, choose: Callable[[torch.Tensor], Any]) -> Any:
        key = w.data_ptr()
        if key not in self.weights:
            self.weights[key] = choose(w)
        return self.weights[key]
