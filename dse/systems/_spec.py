"""A measured spec's two sources: the fields a system (or its design point) sets, and the rest from the config.

A search measures ``QuantSpec`` / ``KVSpec`` instances whose algorithm knobs come from the design point (Tender's
bits, groups and chunk; InfiniGen's budget, alpha and r) or from the system (its KV method, its dense layers), and
whose remaining fields come from ``quant.*`` / ``kv.*`` (the rounding, the speculation variant). A
:class:`SpecTemplate` holds both halves, builds the spec, and says which config fields a search reads: what the
study's problem record keeps (``dse.study.problem_record``), so a field added to a spec later is covered without
editing a list.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Generic, TypeVar

S = TypeVar("S")


@dataclass(frozen=True)
class SpecTemplate(Generic[S]):
    """``config``: the config's value of every field of ``cls`` (as written, before the spec normalises it);
    ``set_fields``: the fields the system or the design point sets instead (the config's values of those are not
    read)."""

    cls: type[S]
    config: Mapping[str, Any]
    set_fields: tuple[str, ...]

    @classmethod
    def of(cls, spec_cls: type[S], node: Any, set_fields: tuple[str, ...]) -> SpecTemplate[S]:
        """The template of ``spec_cls`` whose config half is the same-named fields of a config node."""
        return cls(spec_cls, {f.name: getattr(node, f.name) for f in fields(spec_cls)}, set_fields)  # type: ignore[arg-type]

    def build(self, **set_values: Any) -> S:
        """The spec with ``set_values`` (exactly the ``set_fields``) over the config's values."""
        if set(set_values) != set(self.set_fields):
            raise TypeError(f"{self.cls.__name__}: the system sets {sorted(self.set_fields)}, got {sorted(set_values)}")
        return self.cls(**{**self.config, **set_values})

    def read(self) -> dict[str, Any]:
        """The config fields a search reads (every field but the ones the system sets)."""
        return {k: v for k, v in self.config.items() if k not in self.set_fields}
