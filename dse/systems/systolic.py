"""Family ``systolic``: a plain INT-N systolic accelerator (cost_models/accelerator.py)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any

import numpy as np

from cost_models import accelerator, systolic
from dse.config import Bound, Config
from dse.systems._base import Evaluation, System, other_row, per_op_rows
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
        """Every GEMM, then the leakage: the rows add up to the design's latency and energy."""
        metrics, per_op = accelerator.evaluate(self.design(point), self.ops, self.tech, per_op=True)
        leak = other_row("leakage", "leakage", "all", 0.0, float(metrics["energy_leak_j"][0]))
        return [*per_op_rows(self.ops, per_op), leak]


SYSTEM = SystolicSystem
