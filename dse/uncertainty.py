"""Parameters with a stated range: every calibrated constant and labelled assumption carries ``range: [low,
high]`` next to its source (the mechanism parameters of ``conf/system/*.yaml``, the technology table of
``conf/tech/*.yaml``, the undisclosed hardware and platform defaults of ``conf/uncertainty/*.yaml``). Read by the
sensitivity study (one at a time), the headline intervals and the joint draws of ``python -m dse.robust``."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import yaml

from dse.config import CONF_DIR, Config, Quantity

UNCERTAINTY_DIR = CONF_DIR / "uncertainty"


@dataclass(frozen=True)
class Uncertain:
    """One parameter with a stated range: ``kind`` is mechanism (a parameter of ``systems``; one shared
    by several systems, e.g. the offloading runtime's host costs, moves for all of them), tech or hw."""

    kind: str
    key: str
    nominal: float
    low: float
    high: float
    source: str
    systems: tuple[str, ...] = ()
    dist: str = "uniform"  # how a joint draw samples the range (dse/robust/ranges.py)
    moves_with: str | None = None  # inputs that share this name move together in a joint draw

    @property
    def name(self) -> str:
        if self.kind != "mechanism":
            return f"{self.kind}.{self.key}"
        return f"{self.systems[0]}.{self.key}" if len(self.systems) == 1 else f"shared.{self.key}"

    def override(self, value: float) -> dict[str, Any]:
        """Keyword arguments of a headline function that set this parameter to ``value``."""
        if self.kind == "mechanism":
            return {"mechanism": {s: {self.key: value} for s in self.systems}}
        return {self.kind: {self.key: value}}


def _number(value: Any) -> float:
    return float(bool(value)) if isinstance(value, bool) else float(value)


def mechanism_ranges(configs: dict[str, Config]) -> list[Uncertain]:
    """Every mechanism parameter with a range, of the systems configured in ``configs`` (name -> config); a
    parameter several systems take from a shared base config (same value, range and source) is one entry."""
    shared: dict[tuple[str, float, tuple[float, ...], str, str, str | None], list[str]] = {}
    for name, cfg in configs.items():
        for key, q in cfg.system.mechanism.items():
            if q.range is not None:
                shared.setdefault((key, _number(q.value), tuple(map(float, q.range)), str(q.source), q.dist,
                                   q.moves_with), []).append(name)
    return [Uncertain("mechanism", key, value, rng[0], rng[1], source, tuple(systems), dist, moves)
            for (key, value, rng, source, dist, moves), systems in shared.items()]


def tech_ranges(cfg: Config) -> list[Uncertain]:
    out = []
    for f in dataclasses.fields(cfg.tech):
        q = getattr(cfg.tech, f.name)
        if isinstance(q, Quantity) and q.range is not None:
            lo, hi = map(float, q.range)
            out.append(Uncertain("tech", f.name, float(q.value), lo, hi, str(q.source), (), q.dist, q.moves_with))
    return out


def hw_ranges(file: str, nominal: dict[str, Any]) -> list[Uncertain]:
    """Ranges of undisclosed hardware/platform defaults (``conf/uncertainty/<file>.yaml``) around ``nominal``."""
    entries = yaml.safe_load((UNCERTAINTY_DIR / f"{file}.yaml").read_text())
    out = []
    for key, e in entries.items():
        if key not in nominal:
            raise KeyError(f"conf/uncertainty/{file}.yaml: {key} is not a hardware default here; "
                           f"known: {sorted(nominal)}")
        lo, hi = map(float, e["range"])
        out.append(Uncertain("hw", key, float(nominal[key]), lo, hi, str(e["source"]), (), e.get("dist", "uniform"),
                             e.get("moves_with")))
    return out
