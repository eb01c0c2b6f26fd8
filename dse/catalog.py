"""Named parts (``conf/catalog/*.yaml``): a space knob such as ``memory: hbm3_6400_x1`` stands for the
hardware values of that part (its bandwidth, capacity, ... each with a source). Design points are completed
here, for one trial or for millions of enumerated points at once."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from dse.config import CatalogKnob


@dataclass(frozen=True)
class Catalog:
    """One catalog knob: entry name -> the hardware values it sets."""

    name: str
    sets: dict[str, str]  # hw knob -> entry field
    entries: dict[str, dict[str, float]]  # entry -> field -> value

    @classmethod
    def from_config(cls, name: str, knob: CatalogKnob) -> Catalog:
        return cls(name, dict(knob.sets),
                   {e: {f: float(q.value) for f, q in fields.items()} for e, fields in knob.entries.items()})

    def expand(self, points: Mapping[str, Any]) -> dict[str, Any]:
        """The points with every knob this catalog sets taken from the chosen entries (scalar or array)."""
        if self.name not in points:
            return dict(points)
        chosen = points[self.name]
        out = dict(points)
        if isinstance(chosen, np.ndarray):
            names = list(self.entries)
            codes = _codes(chosen, names, self.name)
            for hw_key, fld in self.sets.items():
                out[hw_key] = np.array([self.entries[n][fld] for n in names])[codes]
        else:
            entry = self.entries.get(str(chosen))
            if entry is None:
                raise ValueError(f"{self.name} must be one of {sorted(self.entries)}, got {chosen!r}")
            for hw_key, fld in self.sets.items():
                out[hw_key] = entry[fld]
        return out

    def values(self, entry: str) -> dict[str, float]:
        return {hw_key: self.entries[entry][fld] for hw_key, fld in self.sets.items()}


def _codes(chosen: np.ndarray, names: list[str], key: str) -> np.ndarray:
    """Each choice's index in ``names`` (one vectorised comparison per name: no sort of the strings)."""
    values = chosen.astype(str)
    codes = np.full(values.shape, -1, dtype=np.int64)
    for i, name in enumerate(names):
        codes[values == name] = i
    if (codes < 0).any():
        raise ValueError(f"{key} must be one of {sorted(names)}, got {sorted(set(values[codes < 0].tolist()))}")
    return codes


def complete(hw: Mapping[str, Any], params: Mapping[str, Any], catalogs: Mapping[str, Catalog]) -> dict[str, Any]:
    """A full design point: the system's hardware defaults, the searched knobs over them, catalog choices
    expanded into the knobs they set."""
    point = {**hw, **params}
    for catalog in catalogs.values():
        point = catalog.expand(point)
    return point
