"""Systems the search can explore: each maps design points (dicts of knob arrays) to metrics.

A system owns its workload and technology (built once from the config) and exposes a vectorised
``evaluate``. New systems (Tender, InfiniGen, ...) register here behind the same interface.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from cost_models import accelerator, joint, offload, systolic, tender
from dse.config import Bound, Config, ConfigError
from workloads import build_operators
from workloads.checks import require_choice


@dataclass(frozen=True)
class Evaluation:
    """Metrics for P design points, and why a point could not be evaluated ('' when it could)."""

    metrics: dict[str, np.ndarray]
    invalid: np.ndarray


def split_points(points: dict[str, Any]) -> list[dict[str, Any]]:
    """Design points given as knob -> scalar or array, as one dict of scalars per point (arrays of one
    element broadcast)."""
    n = max((np.size(v) for v in points.values() if isinstance(v, np.ndarray)), default=1)
    return [{k: (np.asarray(v).reshape(-1)[i if np.size(v) > 1 else 0] if isinstance(v, np.ndarray) else v)
             for k, v in points.items()} for i in range(n)]


def measured_fractions(measured: dict[str, np.ndarray]) -> np.ndarray | None:
    """Selected-token fractions by relative window position from an accuracy measurement, if usable."""
    frac = measured.get("selected_fraction_by_position")
    return frac if frac is not None and np.all(np.isfinite(frac)) else None


class System(ABC):
    name: str
    #: metric name -> description with unit in brackets
    metrics: dict[str, str]
    #: bounds every design must meet whatever the user asks (e.g. accumulator overflow)
    intrinsic_constraints: dict[str, Bound] = {}

    @property
    @abstractmethod
    def knobs(self) -> tuple[str, ...]:
        """Names of every hardware knob (the keys a complete design has)."""

    @abstractmethod
    def evaluate(self, points: dict[str, Any]) -> Evaluation:
        """Metrics for design points given as knob -> scalar or 1-D array."""

    def breakdown(self, point: dict[str, Any]) -> list[dict[str, Any]]:
        """Per-operator rows for one design (for reports); systems may override."""
        return []

    def accuracy_spec(self, point: dict[str, Any]) -> tuple[Any, Any] | None:
        """(QuantSpec, KVSpec or None) of the algorithms this design runs, for the accuracy oracle, or
        None if the system has no accuracy coupling. Knobs shared by hardware and algorithm drive both."""
        return None

    def evaluate_measured(self, points: dict[str, Any], measured: dict[str, np.ndarray]) -> Evaluation:
        """Re-evaluate with what the accuracy measurement observed (default: nothing changes)."""
        return self.evaluate(points)


class SystolicSystem(System):
    name = "systolic"
    metrics = accelerator.METRICS
    intrinsic_constraints = {"acc_headroom_bits": Bound(min=0.0)}

    def __init__(self, cfg: Config) -> None:
        self.ops = build_operators(cfg.model.to_shape(), cfg.workload.to_spec())
        self.tech = cfg.tech.to_tech()

    @property
    def knobs(self) -> tuple[str, ...]:
        return tuple(f.name for f in fields(accelerator.SystolicDesign))

    def _design(self, points: dict[str, Any]) -> accelerator.SystolicDesign:
        return accelerator.SystolicDesign.from_mapping(points)

    def evaluate(self, points: dict[str, Any]) -> Evaluation:
        design = self._design(points)
        metrics, _ = accelerator.evaluate(design, self.ops, self.tech)
        return Evaluation(metrics=metrics, invalid=design.invalid_reason())

    def breakdown(self, point: dict[str, Any]) -> list[dict[str, Any]]:
        design = self._design(point)
        _, per_op = accelerator.evaluate(design, self.ops, self.tech, per_op=True)
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


class OutlierArraySystem(System):
    """Tender and the outlier-aware baselines (ANT, OLAccel, OliVe): one model, one ``Scheme`` each.

    The scheme's mechanism parameters come from ``system.mechanism`` (each with its source)."""

    metrics = tender.METRICS
    intrinsic_constraints = {"acc_headroom_bits": Bound(min=0.0)}

    def __init__(self, cfg: Config) -> None:
        self.ops = build_operators(cfg.model.to_shape(), cfg.workload.to_spec())
        self.tech = cfg.tech.to_tech()
        self.name = cfg.system.name
        allowed = {f.name for f in fields(tender.Scheme)} - {"name"}
        values: dict[str, Any] = {}
        for key, q in cfg.system.mechanism.items():
            if key not in allowed:
                raise ConfigError(f"system.mechanism.{key}: unknown parameter; allowed: {sorted(allowed)}")
            values[key] = bool(q.value) if key == "decomposed" else float(q.value)
        self.scheme = tender.Scheme(name=self.name, **values)

    @property
    def knobs(self) -> tuple[str, ...]:
        return tuple(f.name for f in fields(tender.TenderDesign))

    def accuracy_spec(self, point: dict[str, Any]) -> tuple[Any, Any] | None:
        if not self.scheme.decomposed:
            return None  # ANT/OLAccel/OliVe algorithms are not emulated on the real model
        from workloads.emulation import QuantSpec

        return QuantSpec(method="tender", bits=int(point["bits"]), groups=int(point["groups"]),
                         chunk=int(point["chunk"]), mode=str(point["mode"])), None

    def evaluate(self, points: dict[str, Any]) -> Evaluation:
        design = tender.TenderDesign.from_mapping(points)
        metrics = tender.evaluate(design, self.ops, self.tech, self.scheme)
        return Evaluation(metrics=metrics, invalid=design.invalid_reason())


class OffloadSystem(System):
    """FlexGen, H2O, INT4-KV and InfiniGen: offloaded inference on a GPU + CPU platform."""

    metrics = offload.METRICS
    intrinsic_constraints = {"gpu_mem_headroom_gb": Bound(min=0.0), "cpu_mem_headroom_gb": Bound(min=0.0)}

    def __init__(self, cfg: Config) -> None:
        self.name = cfg.system.name
        self.shape = cfg.model.to_shape()
        self.prompt, self.gen = cfg.workload.prompt_len, cfg.workload.gen_len
        allowed = {f.name for f in fields(offload.OffloadScheme)} - {"name"}
        values: dict[str, Any] = {}
        for key, q in cfg.system.mechanism.items():
            if key not in allowed:
                raise ConfigError(f"system.mechanism.{key}: unknown parameter; allowed: {sorted(allowed)}")
            v = q.value
            values[key] = tuple(float(x) for x in v) if isinstance(v, list | tuple) else (
                v if isinstance(v, str) else int(v) if key == "dense_layers" else float(v))
        self.scheme = offload.OffloadScheme(name=self.name, **values)

    @property
    def knobs(self) -> tuple[str, ...]:
        return tuple(f.name for f in fields(offload.OffloadDesign)) + tuple(
            f.name for f in fields(offload.EnergyTable)) + ("alpha",)

    KV_METHOD = {"flexgen": "dense", "h2o": "h2o", "infinigen": "infinigen"}  # int4kv: not emulated yet

    def accuracy_spec(self, point: dict[str, Any]) -> tuple[Any, Any] | None:
        from workloads.emulation import QuantSpec
        from workloads.kvselect import KVSpec

        method = self.KV_METHOD.get(self.scheme.kv_fraction if self.scheme.kv_fraction != "full" else "flexgen")
        if method is None:
            return None
        kv = KVSpec(method=method, budget=float(point["budget"]), alpha=float(point["alpha"]),
                    partial_ratio=float(point["partial_ratio"]), pool_size=float(point["pool_fraction"]),
                    dense_layers=self.scheme.dense_layers)
        return QuantSpec(), kv

    def evaluate_measured(self, points: dict[str, Any], measured: dict[str, np.ndarray]) -> Evaluation:
        """InfiniGen with the selected-token fractions measured on the proxy model (by relative position in
        its window) in place of the published table, mapped onto this workload's context lengths."""
        frac = measured_fractions(measured)
        if self.scheme.kv_fraction != "infinigen" or frac is None:
            return self.evaluate(points)
        scheme = offload.with_measured_selection(self.scheme, frac, self.prompt + self.gen)
        return self.evaluate({**points, "k_scale": 1.0}, scheme)

    def evaluate(self, points: dict[str, Any], scheme: offload.OffloadScheme | None = None) -> Evaluation:
        design = offload.OffloadDesign.from_mapping(points)
        energy = offload.EnergyTable(**{f.name: float(np.asarray(points[f.name]).reshape(-1)[0])
                                        for f in fields(offload.EnergyTable)})
        bad = design.invalid_reason()
        safe = offload.OffloadDesign(**{f.name: np.where(bad != "", 1.0 if f.name != "budget" else 0.2,
                                                        getattr(design, f.name)) for f in fields(design)})
        metrics = offload.evaluate(safe, self.shape, self.prompt, self.gen, scheme or self.scheme, energy)
        metrics = {k: np.where(bad != "", np.nan, np.broadcast_to(v, bad.shape)) for k, v in metrics.items()}
        return Evaluation(metrics=metrics, invalid=bad)


class TenderInfiniGenSystem(System):
    """Tender as the compute device of offloaded inference with InfiniGen's KV prefetch."""

    metrics = joint.JOINT_METRICS
    intrinsic_constraints = {"acc_headroom_bits": Bound(min=0.0), "hbm_headroom_gb": Bound(min=0.0)}
    EXTRA = ("batch", "budget", "alpha", "partial_ratio", "k_scale", "host_link_gbps", "host_pj_per_byte", "hbm_gb")

    def __init__(self, cfg: Config) -> None:
        self.name = cfg.system.name
        self.shape = cfg.model.to_shape()
        self.spec = cfg.workload.to_spec()
        self.tech = cfg.tech.to_tech()
        mech = {k: q.value for k, q in cfg.system.mechanism.items()}
        self.scheme = tender.Scheme(name="tender", decomposed=True)
        self.offload = offload.OffloadScheme(
            name="infinigen", kv_fraction="infinigen", dense_layers=int(mech.get("dense_layers", 2)),
            k_table_ctx=tuple(float(x) for x in mech["k_table_ctx"]),
            k_table_tokens=tuple(float(x) for x in mech["k_table_tokens"]))

    @property
    def knobs(self) -> tuple[str, ...]:
        return tuple(f.name for f in fields(tender.TenderDesign)) + self.EXTRA

    def accuracy_spec(self, point: dict[str, Any]) -> tuple[Any, Any] | None:
        from workloads.emulation import QuantSpec
        from workloads.kvselect import KVSpec

        return (QuantSpec(method="tender", bits=int(point["bits"]), groups=int(point["groups"]),
                          chunk=int(point["chunk"]), mode=str(point["mode"])),
                KVSpec(method="infinigen", budget=float(point["budget"]), alpha=float(point["alpha"]),
                       partial_ratio=float(point["partial_ratio"]), dense_layers=self.offload.dense_layers))

    def evaluate(self, points: dict[str, Any], offload_scheme: Any = None) -> Evaluation:
        rows = split_points(points)
        design = tender.TenderDesign.from_mapping({k: np.array([r[k] for r in rows]) for k in
                                                   (f.name for f in fields(tender.TenderDesign))})
        invalid = design.invalid_reason()
        results = [joint.evaluate(r, self.shape, self.spec, self.tech, self.scheme, offload_scheme or self.offload)
                   if not invalid[i] else {} for i, r in enumerate(rows)]
        keys = list(self.metrics)
        metrics = {k: np.array([res.get(k, np.nan) for res in results]) for k in keys}
        return Evaluation(metrics=metrics, invalid=invalid)

    def evaluate_measured(self, points: dict[str, Any], measured: dict[str, np.ndarray]) -> Evaluation:
        frac = measured_fractions(measured)
        if frac is None:
            return self.evaluate(points)
        scheme = offload.with_measured_selection(self.offload, frac, self.spec.prompt_len + self.spec.gen_len)
        return self.evaluate({**points, "k_scale": 1.0}, scheme)


SYSTEMS: dict[str, type[System]] = {
    "systolic": SystolicSystem,
    "tender": OutlierArraySystem,
    "ant": OutlierArraySystem,
    "olaccel": OutlierArraySystem,
    "olive": OutlierArraySystem,
    "flexgen": OffloadSystem,
    "h2o": OffloadSystem,
    "int4kv": OffloadSystem,
    "infinigen": OffloadSystem,
    "tender_infinigen": TenderInfiniGenSystem,
}


def make_system(cfg: Config) -> System:
    """Build the configured system and check every name the config uses against it."""
    name = cfg.system.name
    require_choice("system.name", name, sorted(SYSTEMS), ConfigError)
    system = SYSTEMS[name](cfg)
    check_system_config(cfg, system)
    return system


def check_system_config(cfg: Config, system: System) -> None:
    knobs = set(system.knobs)
    hw = cfg.system.hw
    unknown = sorted(set(hw) - knobs)
    if unknown:
        raise ConfigError(f"system.hw.{unknown[0]}: unknown knob; allowed knobs: {sorted(knobs)}")
    missing = sorted(knobs - set(hw))
    if missing:
        raise ConfigError(f"system.hw.{missing[0]}: missing; every knob needs a default: {sorted(knobs)}")
    for key in cfg.system.space:
        if key not in knobs:
            raise ConfigError(f"system.space.{key}: unknown knob; allowed knobs: {sorted(knobs)}")
    for section, names in (("objectives", cfg.system.objectives), ("constraints", cfg.system.constraints)):
        for metric in names:
            if metric not in system.metrics:
                raise ConfigError(
                    f"system.{section}.{metric}: unknown metric; allowed metrics: {sorted(system.metrics)}"
                )
    for key, allowed in (("dataflow", systolic.DATAFLOWS), ("mode", tender.MODES), ("int8_pe", tender.INT8_PE)):
        if key in hw:
            require_choice(f"system.hw.{key}", str(hw[key]), allowed, ConfigError)
