"""The KV-selection side of the offloading systems (FlexGen, H2O, INT4 KV, InfiniGen, Tender + InfiniGen): which
``KVSpec`` a design point measures, and how the selection the measurement observed replaces the cost model's
published selected-token table."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

from cost_models import offload
from dse.config import Config
from dse.systems._spec import SpecTemplate
from workloads.accuracy.measured import SelectionStats
from workloads.accuracy.specs import KVSpec

S = TypeVar("S")

#: the KVSpec fields a design point or the system sets; every other one comes from ``kv.*`` (the speculation variant,
#: the eviction policy): ``report`` is off in searches, the others are below
SET_BY_SYSTEM = ("method", "budget", "alpha", "partial_ratio", "partial_cols", "dense_layers", "report")


@dataclass(frozen=True)
class KVCoupling:
    """``method``: the system's KV method (``system.kv_method``; None: no KV selection is measured);
    ``target_head_dim``: the cost model's target model's head width (InfiniGen's partial columns are a share of it);
    ``template``: the KVSpec's config half (``kv.*``), with ``extra`` more fields the system sets (e.g. the pool
    size and cache compression of the offloading family)."""

    method: str | None
    target_head_dim: int
    template: SpecTemplate[KVSpec]

    @classmethod
    def from_config(cls, cfg: Config, extra: tuple[str, ...] = ()) -> KVCoupling:
        return cls(cfg.system.kv_method, cfg.model.to_shape().head_dim,
                   SpecTemplate.of(KVSpec, cfg.kv, SET_BY_SYSTEM + extra))

    def spec(self, point: dict[str, Any], dense_layers: int, **knobs: Any) -> KVSpec | None:
        """The KV selection measured for a design point (None without a KV method): the point's budget and alpha,
        and as many partial columns as the point's r keeps of the *target* model's head (r x head_dim of the target,
        e.g. 0.2 x 128 = 26 on OPT; InfiniGen, infinigen.md 4), capped by the proxy's head when measured: the
        speculation the cost model charges for is the one whose accuracy is measured. ``knobs``: the system's other
        set fields."""
        if self.method is None:
            return None
        r = float(point["partial_ratio"])
        return self.template.build(method=self.method, budget=float(point["budget"]), alpha=float(point["alpha"]),
                                   partial_ratio=r, partial_cols=max(1, round(r * self.target_head_dim)),
                                   dense_layers=dense_layers, report=False, **knobs)

    def read(self) -> dict[str, Any]:
        """The ``kv.*`` fields a search of this system reads (none without a KV method)."""
        return self.template.read() if self.method is not None else {}


def with_measured_selection(scheme: S, points: dict[str, Any], selection: SelectionStats | None,
                            total_len: int) -> tuple[S, dict[str, Any]]:
    """An offloading scheme whose selected-token table is replaced by the fractions the accuracy measurement
    observed (mapped onto ``total_len`` tokens), and the points with ``k_scale`` 1 (the measurement already is the
    selection); unchanged when nothing was measured."""
    if selection is None:
        return scheme, points
    frac = selection.fraction_by_position()
    return offload.with_measured_selection(scheme, frac, total_len), {**points, "k_scale": 1.0}  # type: ignore
