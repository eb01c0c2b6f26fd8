"""What every explored system is: design points (dicts of knob arrays) -> metrics, through one
cost-model family, with what its accuracy emulation runs."""

from __future__ import annotations

import typing
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, TypeVar

import numpy as np

from cost_models.design import DesignPoints
from dse.config import Bound, Config, ConfigError, Quantity
from dse.hardware import Hardware
from workloads.accuracy.measured import SelectionStats
from workloads.accuracy.specs import KVSpec, QuantSpec

S = TypeVar("S")


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


def _coerce(value: Any, hint: Any) -> Any:
    if hint is bool:
        return bool(value)
    if hint is int:
        return int(value)
    if hint is float:
        return float(value)
    if typing.get_origin(hint) is tuple:
        return tuple(float(x) for x in value)
    return value


def scheme_from_mechanism(cls: type[S], mechanism: Mapping[str, Quantity], **fixed: Any) -> S:
    """A scheme dataclass from ``system.mechanism`` (each value converted to its field's type); an
    unknown parameter is a configuration error naming the allowed ones."""
    hints = typing.get_type_hints(cls)
    allowed = sorted(f.name for f in fields(cls) if f.name not in fixed)  # type: ignore[arg-type]
    values: dict[str, Any] = {}
    for key, q in mechanism.items():
        if key not in allowed:
            raise ConfigError(f"system.mechanism.{key}: unknown parameter; allowed: {allowed}")
        values[key] = _coerce(q.value, hints[key])
    return cls(**fixed, **values)


class System(ABC):
    """One cost-model family behind a uniform, vectorised interface.

    A family is a module of ``dse/systems/`` that defines ``SYSTEM`` (a subclass of this); a
    ``conf/system/*.yaml`` names it with ``family:``. The family declares its metrics, the bounds every
    design must meet (``intrinsic_constraints``), its knobs and the allowed values of its categorical
    knobs (``knob_choices``)."""

    #: metric name -> description with unit in brackets
    metrics: dict[str, str]
    #: bounds every design must meet whatever the user asks (e.g. accumulator overflow)
    intrinsic_constraints: dict[str, Bound] = {}
    #: categorical hardware knob -> its allowed values
    knob_choices: dict[str, tuple[str, ...]] = {}

    def __init__(self, cfg: Config) -> None:
        from dse.catalog import Catalog

        self.name = cfg.system.name
        self.hw = dict(cfg.system.hw)
        self.tech_name = cfg.tech.name
        self.catalogs = {n: Catalog.from_config(n, k) for n, k in cfg.system.catalog.items()}

    def complete(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The design point of searched knob values (scalars or arrays): the hardware defaults, the values
        over them, catalog choices (e.g. ``memory``) expanded into the knobs they set."""
        from dse.catalog import complete

        return complete(self.hw, params, self.catalogs)

    @property
    @abstractmethod
    def knobs(self) -> tuple[str, ...]:
        """Names of every hardware knob (the keys a complete design has)."""

    @abstractmethod
    def design(self, points: dict[str, Any]) -> DesignPoints:
        """The cost model's design points for knob -> scalar or 1-D array."""

    def invalid(self, points: dict[str, Any]) -> np.ndarray:
        """Per point why the model cannot evaluate it ('' where it can), without evaluating it."""
        return self.design(points).invalid_reason()

    @abstractmethod
    def evaluate(self, points: dict[str, Any], selection: SelectionStats | None = None) -> Evaluation:
        """Metrics for design points given as knob -> scalar or 1-D array; ``selection``: what the accuracy
        measurement these points share observed of their KV selection, used where the model can (it replaces the
        published selected-token table)."""

    def prepare(self, points: dict[str, Any]) -> Any:
        """What re-evaluating complete design points with other technology, mechanism or hardware-default values
        shares (:meth:`evaluate_prepared`; ``python -m dse.robust``). By default the points themselves; a family
        whose model has draw-invariant structure (array-side representatives, validity) computes it here once."""
        return points

    def evaluate_prepared(self, prepared: Any, hw: dict[str, float],
                          selection: SelectionStats | None = None) -> Evaluation:
        """:meth:`evaluate` of prepared points with the hardware defaults ``hw`` set to one value at every point (this
        system's technology and mechanism as configured); the same metrics as :meth:`evaluate` of those points."""
        n = len(self.design(prepared))
        return self.evaluate({**prepared, **{k: np.full(n, v) for k, v in hw.items()}}, selection)

    def breakdown(self, point: dict[str, Any]) -> list[dict[str, Any]]:
        """Per-operator rows for one design (``BREAKDOWN_COLUMNS``; for reports and ``python -m dse.evaluate
        --breakdown``); systems with a per-GEMM model override it."""
        return []

    def hardware(self, point: dict[str, Any]) -> Hardware | None:
        """One design's hardware as data (dse/hardware.py: Timeloop/Accelergy and SCALE-Sim exports), or None
        for a system without a PE array."""
        return None

    def accuracy_spec(self, point: dict[str, Any]) -> tuple[QuantSpec, KVSpec | None] | None:
        """(QuantSpec, KVSpec or None) of the algorithms this design runs, for the accuracy oracle, or
        None if the system has no accuracy coupling. Knobs shared by hardware and algorithm drive both."""
        return None

    def spec_inputs(self) -> dict[str, dict[str, Any]]:
        """The ``quant.*`` / ``kv.*`` fields this system's accuracy specs read from the config (by section; empty
        without accuracy coupling): with the cost model's config, what makes a study's problem."""
        return {}


#: the columns of a per-operator breakdown row (an operator not of the GEMM list leaves M, K, N, count empty)
#: (``extra_cycles``: the part of ``cycles`` beyond SCALE-Sim's stall-free count: K-split refills, rescale bubbles,
#: outlier stalls)
BREAKDOWN_COLUMNS = ("op", "kind", "phase", "M", "K", "N", "count", "cycles", "extra_cycles", "latency_s",
                     "energy_j", "dram_bytes")


def other_row(op: str, kind: str, phase: str, latency_s: float, energy_j: float) -> dict[str, Any]:
    """A breakdown row of work outside the GEMM list (vector work, leakage): no shape, cycles or DRAM bytes."""
    nan = float("nan")
    return {"op": op, "kind": kind, "phase": phase, "M": nan, "K": nan, "N": nan, "count": nan, "cycles": nan,
            "extra_cycles": nan, "latency_s": latency_s, "energy_j": energy_j, "dram_bytes": nan}


def per_op_rows(ops: Any, per_op: Any) -> list[dict[str, Any]]:
    """Breakdown rows of the first design point of a per-GEMM result (``cost_models.accelerator.PerOp``:
    each entry for all ``count`` executions of the GEMM) over the operator list ``ops``."""
    from workloads.operators import Phase

    return [{"op": ops.names[i], "kind": ops.kinds[i], "phase": Phase(int(ops.phase[i])).name.lower(),
             "M": float(ops.M[i]), "K": float(ops.K[i]), "N": float(ops.N[i]), "count": float(ops.count[i]),
             "cycles": float(per_op.cycles[0, i]), "extra_cycles": float(per_op.extra_cycles[0, i]),
             "latency_s": float(per_op.latency_s[0, i]),
             "energy_j": float(per_op.energy_j[0, i]), "dram_bytes": float(per_op.dram_bytes[0, i])}
            for i in range(len(ops))]
