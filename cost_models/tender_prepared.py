"""Re-evaluating one set of Tender design points many times (python -m dse.robust's joint draws): what does not
change between evaluations is computed once, and a re-evaluation gives exactly what :func:`cost_models.tender.evaluate`
gives for those points.

:func:`prepare` keeps why each point is invalid, the valid points, their array-side representatives
(:func:`cost_models.tender.distinct`) and each point's representative. :func:`evaluate_prepared` computes the array
side of the representatives with the technology table and scheme it is given, and each point's latencies only where
they can have changed since the last evaluation of the same prepared points (a representative whose cycles, bytes or
vector-unit cycles changed; the same per-point arithmetic on those rows).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np

from cost_models.tech import Tech
from cost_models.tender import (
    METRICS,
    TIMING,
    ArraySide,
    Scheme,
    TenderDesign,
    Timing,
    _array_side,
    _metrics,
    _timing,
    distinct,
)
from workloads.operators import GemmOps


@dataclass(frozen=True)
class Prepared:
    """The draw-invariant structure of a set of design points: why each is invalid, the valid ones, their array-side
    representatives and each valid point's representative. Re-evaluating them with another technology table,
    scheme or uniform hardware value (:func:`evaluate_prepared`) skips the validity checks and the grouping."""

    invalid: np.ndarray
    valid: np.ndarray
    design: TenderDesign
    unique: TenderDesign
    inverse: np.ndarray
    # the last evaluation's timing inputs per representative and the points' latencies: a re-evaluation recomputes
    # the latencies only of the points whose representative's cycles, bytes or vector cycles changed
    last: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


def prepare(design: TenderDesign) -> Prepared:
    invalid = design.invalid_reason()
    valid = np.flatnonzero(invalid == "")
    d = design.take(valid)
    unique, inverse = distinct(d)
    return Prepared(invalid, valid, d, unique, inverse)


def _reused_timing(p: Prepared, a: ArraySide, d: TenderDesign, ops: GemmOps, timing_key: tuple[float, ...]
                   ) -> Timing:
    """The points' latencies, recomputed only where they can have changed since the last evaluation of ``p`` (the
    same per-point arithmetic on those rows, so the values are those of a full evaluation)."""
    last = p.last
    if last.get("key") != timing_key:
        timing = _timing(a, p.inverse, d, ops)[0]
    else:
        changed = ((a.busiest != last["busiest"]).any(axis=1) | (a.hbm != last["hbm"]).any(axis=1)
                   | (a.vec_cycles != last["vec_cycles"]).any(axis=1))
        timing = last["timing"]
        rows = np.flatnonzero(changed[p.inverse])
        if len(rows):
            part = _timing(a, p.inverse[rows], d.take(rows), ops)[0]
            timing = Timing(*(np.array(getattr(timing, f.name)) for f in fields(Timing)))
            for f in fields(Timing):
                getattr(timing, f.name)[rows] = getattr(part, f.name)
    last.update(key=timing_key, busiest=a.busiest, hbm=a.hbm, vec_cycles=a.vec_cycles, timing=timing)
    return timing


def evaluate_prepared(p: Prepared, ops: GemmOps, tech: Tech, scheme: Scheme, uniform: dict[str, float] | None = None
                      ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """(metrics, why each point is invalid) as :func:`evaluate` gives them for the prepared points, with the design
    fields in ``uniform`` set to one value at every point (the grouping stays: every point gets the same value)."""
    d, u, invalid = p.design, p.unique, p.invalid
    if uniform:
        d = replace(d, **{k: np.full(len(d), float(v)) for k, v in uniform.items()})
        u = replace(u, **{k: np.full(len(u), float(v)) for k, v in uniform.items()})
        invalid = invalid.copy()
        invalid[p.valid] = d.invalid_reason()
    a = _array_side(u, ops, tech, scheme)
    timing_key = tuple(float(v) for k, v in sorted((uniform or {}).items()) if k in TIMING)
    metrics = _metrics(a, p.inverse, _reused_timing(p, a, d, ops, timing_key), ops, tech)[0]
    ok = invalid[p.valid] == ""
    if len(p.valid) == len(invalid) and ok.all():  # every point valid: the metrics as they are
        return {k: metrics[k] for k in METRICS}, invalid
    out = {k: np.full(len(invalid), np.nan) for k in METRICS}
    for k in METRICS:
        out[k][p.valid[ok]] = metrics[k][ok]
    return out, invalid
