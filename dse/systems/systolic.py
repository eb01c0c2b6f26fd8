"""Family ``systolic``: a plain INT-N systolic accelerator (cost_models/accelerator.py)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any

import numpy as np

from cost_models import accelerator, systolic
from dse.config import Bound, Config
from dse.systems._base import Evaluation, System
from workloads import build_operators


class SystolicSystem(System):
    metrics = accelerator.METRICS
    intrinsic_constraints = {"acc_headroom_bits": Bound(min=0.0)}
    knob_choices = {"dataflow": systolic.DATAFLOWS}

    def __init__(self, cfg: Config) -> None:
        super().__init__(cfg)
        self.ops = build_operators(cfg.model.to_shape(), cfg.workload.to_spec())
        self.tech = cfg.tech.to_tech()

    @property
    def knobs(self) -> tuple[str, ...]:
        return tuple(f.name for f in fields(accelerator.SystolicDesign))

    def design(self, points: dict[str, Any]) -> accelerator.SystolicDesign:
        return accelerator.SystolicDesign.from_mapping(points)

    def evaluate(self, points: dict[str, Any], measured: Mapping[str, np.ndarray] | None = None) -> Evaluation:
        design = self.design(points)
        metrics, _ = accelerator.evaluate(design, self.ops, self.tech)
        return Evaluation(metrics=metrics, invalid=design.invalid_reason())

    def breakdown(self, point: dict[str, Any]) -> list[dict[str, Any]]:
        _, per_op = accelerator.evaluate(self.design(point), self.ops, self.tech, per_op=True)
        assert per_op is not None
        ops = self.ops
        return [
            {
                "op": ops.names[i], "kind": ops.kinds[i], "M": float(ops.M[i]), "K": float(ops.K[i]),
                "N": float(ops.N[i]), "count": float(ops.count[i]),
                "cycles": float(per_op.cycles[0, i]), "latency_s": float(per_op.latency_s[0, i]),
                "energy_j": float(per_op.energy_j[0, i]), "dram_bytes": float(per_op.dram_bytes[0, i]),
            }
            for i in range(len(ops))
        ]


SYSTEM = SystolicSystem
