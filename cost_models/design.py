"""Helpers shared by the design-point dataclasses of the cost models, and the one place where
invalid design points are masked."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import fields
from typing import Any, Protocol

import numpy as np


class DesignPoints(Protocol):
    """What a cost model's design dataclass offers: P points, why each is invalid ('' if valid)."""

    def __len__(self) -> int: ...

    def invalid_reason(self) -> np.ndarray: ...


def array_fields(cls: type, values: Mapping[str, Any], skip: Iterable[str] = ()) -> list[str]:
    """The dataclass's array field names; a ``KeyError`` naming those missing from ``values``."""
    names = [f.name for f in fields(cls) if f.name not in set(skip)]
    missing = [n for n in names if n not in values]
    if missing:
        raise KeyError(f"design point lacks {missing}")
    return names


def first_failure(n: int, checks: Iterable[tuple[np.ndarray, str]]) -> np.ndarray:
    """Per point the message of the first failed check ('' where all pass)."""
    checks = list(checks)
    first = np.zeros(n, dtype=np.int64)  # 0: passes; i: fails check i first
    for i in range(len(checks), 0, -1):  # the last check first, so that earlier failures overwrite later ones
        first[np.broadcast_to(checks[i - 1][0], (n,))] = i
    return np.array(["", *(why for _, why in checks)], dtype=object)[first]


def evaluate_valid(design: DesignPoints, evaluate: Callable[[np.ndarray], Mapping[str, np.ndarray]],
                   names: Iterable[str], *, chunk: int, groups: np.ndarray | None = None,
                   trailing: Mapping[str, tuple[int, ...]] | None = None) -> dict[str, np.ndarray]:
    """``names`` for every point of ``design``: NaN where it is invalid, else ``evaluate(indices)``.

    Only valid points are evaluated, in chunks of at most ``chunk`` points (bounding the P x operator
    temporaries) that share one value of ``groups`` (e.g. a dataflow, so that only its formulas run).
    ``trailing`` gives the extra dimensions of per-point arrays (e.g. a per-operator breakdown)."""
    n = len(design)
    names = list(names)
    trailing = trailing or {}
    out = {k: np.full((n, *trailing.get(k, ())), np.nan) for k in names}
    good = np.flatnonzero(design.invalid_reason() == "")
    keys = groups[good] if groups is not None else np.zeros(good.size)
    for key in np.unique(keys):
        idx_all = good[keys == key]
        for start in range(0, idx_all.size, chunk):
            idx = idx_all[start:start + chunk]
            part = evaluate(idx)
            for k in names:
                out[k][idx] = part[k]
    return out


def value_codes(column: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the sorted distinct values, each entry's index among them): ``np.unique(..., return_inverse=True)``, found
    from a strided sample and checked on every entry (a knob of a design space takes few values, so this avoids
    sorting the whole column)."""
    values = np.unique(column[:: max(1, column.size // 64)])
    codes = np.minimum(np.searchsorted(values, column), values.size - 1)
    if not np.array_equal(values[codes], column):  # a value the sample missed: the full sort
        values, codes = np.unique(column, return_inverse=True)
    return values, codes.reshape(-1)


def combination_codes(columns: Iterable[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """For equal-length columns: the index of the first row of each distinct combination of their values, and for
    every row the number of its combination (``np.unique(np.column_stack(columns), axis=0, return_index=True,
    return_inverse=True)[1:]``, by a mixed-radix code instead of a sort of the rows)."""
    key: np.ndarray | None = None
    span = 1
    for column in columns:
        values, codes = value_codes(np.asarray(column))
        if key is None:
            key, span = codes.astype(np.int64), len(values)
            continue
        if span * len(values) >= 2**62:  # (never for real spaces) compact the code before it could overflow
            _, key = np.unique(key, return_inverse=True)
            span = int(key.max()) + 1
        key = key * len(values) + codes
        span *= len(values)
    assert key is not None, "no columns"
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    return first, inverse.reshape(-1)
