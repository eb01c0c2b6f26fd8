"""Family ``tender_infinigen``: Tender as the compute device of offloaded inference with InfiniGen's KV
prefetch (cost_models/joint.py)."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from cost_models import joint, offload, tender
from dse.config import Bound, Config
from dse.systems._base import Evaluation, System, scheme_from_mechanism
from dse.systems._kv import KVCoupling, with_measured_selection
from dse.systems.outlier_array import tender_quant, tender_template
from workloads.accuracy.measured import SelectionStats
from workloads.accuracy.specs import KVSpec, QuantSpec


class TenderInfiniGenSystem(System):
    metrics = joint.JOINT_METRICS
    intrinsic_constraints = {"acc_headroom_bits": Bound(min=0.0), "hbm_headroom_gb": Bound(min=0.0)}
    knob_choices = {"mode": tender.MODES, "int8_pe": tender.INT8_PE}

    def __init__(self, cfg: Config) -> None:
        super().__init__(cfg)
        self.shape = cfg.model.to_shape()
        self.spec = cfg.workload.to_spec()
        self.tech = cfg.tech.to_tech()
        self.scheme = tender.Scheme(name="tender", decomposed=True)
        self.offload = scheme_from_mechanism(offload.OffloadScheme, cfg.system.mechanism, name="infinigen",
                                             kv_fraction="infinigen")
        self.quant = tender_template(cfg)
        self.kv = KVCoupling.from_config(cfg)

    @property
    def knobs(self) -> tuple[str, ...]:
        return tuple(f.name for f in fields(tender.TenderDesign)) + joint.EXTRA_KNOBS

    def design(self, points: dict[str, Any]) -> joint.JointDesign:
        return joint.JointDesign.from_mapping(points)

    def accuracy_spec(self, point: dict[str, Any]) -> tuple[QuantSpec, KVSpec | None] | None:
        return tender_quant(self.quant, point), self.kv.spec(point, self.offload.dense_layers)

    def spec_inputs(self) -> dict[str, dict[str, Any]]:
        return {"quant": self.quant.read(), **({"kv": self.kv.read()} if self.kv.method is not None else {})}

    def evaluate(self, points: dict[str, Any], selection: SelectionStats | None = None) -> Evaluation:
        scheme, points = with_measured_selection(self.offload, points, selection,
                                                 self.spec.prompt_len + self.spec.gen_len)
        design = self.design(points)
        metrics = joint.evaluate(design, self.shape, self.spec, self.tech, self.scheme, scheme)
        return Evaluation(metrics=metrics, invalid=design.invalid_reason())


SYSTEM = TenderInfiniGenSystem
