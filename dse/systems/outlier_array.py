"""Family ``outlier_array``: Tender and the outlier-aware accelerators it is compared with (ANT,
OLAccel, OliVe), one model (cost_models/tender.py) with one ``Scheme`` each, whose mechanism parameters
come from ``system.mechanism`` (each with its source)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any

import numpy as np

from cost_models import tender
from dse.config import Bound, Config
from dse.systems._base import Evaluation, System, other_row, per_op_rows, scheme_from_mechanism
from workloads import build_operators
from workloads.accuracy.specs import KVSpec, QuantSpec


def tender_quant(point: Mapping[str, Any]) -> QuantSpec:
    """The Tender quantisation a design point's knobs imply (bits, groups, chunk, mode, Tender (all)): the
    cost model and the measured accuracy describe the same design."""
    mode = point["mode"]
    return QuantSpec(method="tender", bits=int(point["bits"]), groups=int(point["groups"]),
                     chunk=int(point["chunk"]), mode=mode if isinstance(mode, str) else tender.MODES[int(mode)],
                     quantize_attention=bool(point["quantize_attention"]))


class OutlierArraySystem(System):
    metrics = tender.METRICS
    intrinsic_constraints = {"acc_headroom_bits": Bound(min=0.0)}
    knob_choices = {"mode": tender.MODES, "int8_pe": tender.INT8_PE}

    def __init__(self, cfg: Config) -> None:
        super().__init__(cfg)
        self.ops = build_operators(cfg.model.to_shape(), cfg.workload.to_spec())
        self.tech = cfg.tech.to_tech()
        # the model's own inputs (model.baseline_inputs.<system>) replace the system's defaults
        mechanism = {**cfg.system.mechanism, **cfg.model.baseline_inputs.get(self.name, {})}
        self.scheme = scheme_from_mechanism(tender.Scheme, mechanism, name=self.name)

    @property
    def knobs(self) -> tuple[str, ...]:
        return tuple(f.name for f in fields(tender.TenderDesign))

    def design(self, points: dict[str, Any]) -> tender.TenderDesign:
        return tender.TenderDesign.from_mapping(points)

    def accuracy_spec(self, point: dict[str, Any]) -> tuple[QuantSpec, KVSpec | None] | None:
        if not self.scheme.decomposed:
            return None  # ANT/OLAccel/OliVe algorithms are not emulated on the real model
        return tender_quant(point), None

    def breakdown(self, point: dict[str, Any]) -> list[dict[str, Any]]:
        """Every GEMM, then the non-GEMM vector work of each phase (norms, softmax, activations on the VPU) and
        the leakage: the rows add up to the design's latency and energy."""
        b = tender.breakdown(self.design(point), self.ops, self.tech, self.scheme)
        vector = [other_row(f"vector ({phase})", "vector", phase, float(b.vector_latency_s[0, i]),
                            float(b.vector_energy_j[0, i])) for i, phase in enumerate(("prefill", "decode"))]
        return [*per_op_rows(self.ops, b.per_op), *vector, other_row("leakage", "leakage", "all", 0.0,
                                                                      float(b.leakage_j[0]))]

    def evaluate(self, points: dict[str, Any], measured: Mapping[str, np.ndarray] | None = None) -> Evaluation:
        design = self.design(points)
        return Evaluation(metrics=tender.evaluate(design, self.ops, self.tech, self.scheme),
                          invalid=design.invalid_reason())


SYSTEM = OutlierArraySystem
