"""Helpers shared by the design-point dataclasses of the cost models."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import fields
from typing import Any

import numpy as np


def array_fields(cls: type, values: Mapping[str, Any], skip: Iterable[str] = ()) -> list[str]:
    """The dataclass's array field names; a ``KeyError`` naming those missing from ``values``."""
    names = [f.name for f in fields(cls) if f.name not in set(skip)]
    missing = [n for n in names if n not in values]
    if missing:
        raise KeyError(f"design point lacks {missing}")
    return names


def first_failure(n: int, checks: Iterable[tuple[np.ndarray, str]]) -> np.ndarray:
    """Per point the message of the first failed check ('' where all pass)."""
    reasons = np.full(n, "", dtype=object)
    for bad, why in checks:
        reasons[np.broadcast_to(bad, (n,)) & (reasons == "")] = why
    return reasons
