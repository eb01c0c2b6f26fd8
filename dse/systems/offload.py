"""Family ``offload``: FlexGen, H2O, INT4-KV and InfiniGen, offloaded inference on a GPU + CPU platform
(cost_models/offload.py; the scheme's ``kv_fraction`` is a key of ``offload.KV_SCHEMES``)."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import numpy as np

from cost_models import offload
from dse.config import Bound, Config, ConfigError
from dse.systems._base import Evaluation, System, scheme_from_mechanism
from dse.systems._kv import KVCoupling, with_measured_selection
from workloads.accuracy.measured import SelectionStats
from workloads.accuracy.specs import KVSpec, QuantSpec
from workloads.checks import require_choice


class OffloadSystem(System):
    metrics = offload.METRICS
    intrinsic_constraints = {"gpu_mem_headroom_gb": Bound(min=0.0), "cpu_mem_headroom_gb": Bound(min=0.0)}

    def __init__(self, cfg: Config) -> None:
        super().__init__(cfg)
        self.shape = cfg.model.to_shape()
        self.prompt, self.gen = cfg.workload.prompt_len, cfg.workload.gen_len
        self.scheme = scheme_from_mechanism(offload.OffloadScheme, cfg.system.mechanism, name=self.name)
        require_choice("system.mechanism.kv_fraction", self.scheme.kv_fraction, offload.KV_SCHEMES, ConfigError)
        require_choice("system.mechanism.budget_base", self.scheme.budget_base, offload.BUDGET_BASES, ConfigError)
        self.kv = KVCoupling.from_config(cfg, extra=("pool_size", "cache_bits", "cache_group"))

    @property
    def knobs(self) -> tuple[str, ...]:
        return tuple(f.name for f in fields(offload.OffloadDesign)) + tuple(
            f.name for f in fields(offload.EnergyTable)) + ("alpha",)

    def design(self, points: dict[str, Any]) -> offload.OffloadDesign:
        return offload.OffloadDesign.from_mapping(points)

    def accuracy_spec(self, point: dict[str, Any]) -> tuple[QuantSpec, KVSpec | None] | None:
        kv = self.kv.spec(point, self.scheme.dense_layers, pool_size=float(point["pool_fraction"]),
                          cache_bits=self.scheme.cache_bits, cache_group=self.scheme.cache_group)
        return None if kv is None else (QuantSpec(), kv)

    def spec_inputs(self) -> dict[str, dict[str, Any]]:
        return {"kv": self.kv.read()} if self.kv.method is not None else {}

    def evaluate(self, points: dict[str, Any], selection: SelectionStats | None = None) -> Evaluation:
        """With measured selected-token fractions (InfiniGen on the proxy model, by relative position in
        its window), they replace the published k table, mapped onto this workload's context lengths."""
        scheme = self.scheme
        if offload.KV_SCHEMES[scheme.kv_fraction].selects_tokens:
            scheme, points = with_measured_selection(scheme, points, selection, self.prompt + self.gen)
        design = self.design(points)
        energy = offload.EnergyTable(**{f.name: float(np.asarray(points[f.name]).reshape(-1)[0])
                                        for f in fields(offload.EnergyTable)})
        metrics = offload.evaluate(design, self.shape, self.prompt, self.gen, scheme, energy)
        return Evaluation(metrics=metrics, invalid=design.invalid_reason())


SYSTEM = OffloadSystem
