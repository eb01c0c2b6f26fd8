"""Number formats of ANT and OliVe and the clip search they share (shared/reference/quant-baselines.md 1-2).

A format is a sorted *grid* of representable values in units of a scale ``s``; a value is quantised to
``s * nearest(x / s)`` (ties to the larger grid value, the artifact's CUDA kernel), values beyond the grid snap to
its ends. The clipping value ``alpha`` maps to the grid's largest entry: ``s = alpha / grid_max``.

- ANT (quant-baselines.md 1.2): int, PoT and flint at 4 bits (signed: a sign bit and v = 3 magnitude bits;
  unsigned: v = 4); 8 bits are always int.
- OliVe (2.2-2.3): normal values int4 (symmetric, -8 unused), flint4 or int8; outliers on the abfloat grid, which
  starts right above the normal range; the normal/outlier boundary is the midpoint between the normal maximum and
  the smallest abfloat value (ties go to the outlier, the later entry of the union grid).

``grid_sse`` gives the squared error of every candidate scale at once from the sorted values and their prefix
sums (exact: the nearest-grid partition of the sorted values is a set of ranges between grid midpoints), so the
artifacts' search over ~80 candidate clips costs a sort and a few searches instead of ~80 passes.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import torch


def flint_magnitudes(v: int) -> list[int]:
    """ANT's flint with ``v`` magnitude bits, in integer units (quant-baselines.md 1.2, the construction rule):
    the plain integers below 2^(v-1), then one octave per step with a mantissa one bit narrower each time
    (v-2 bits in [2^(v-1), 2^v), 0 bits in the last), then the top value (64 for v = 4, 16 for v = 3)."""
    values = list(range(2 ** (v - 1)))
    lo = 2 ** (v - 1)
    for mant in range(v - 2, -1, -1):
        step = lo // 2 ** mant
        values += list(range(lo, 2 * lo, step))
        lo *= 2
    return values + [lo]


def _signed(magnitudes: list[float]) -> list[float]:
    return sorted({-m for m in magnitudes} | set(magnitudes))


@cache
def ant_grid(kind: str, bits: int, signed: bool) -> torch.Tensor:
    """ANT's grid of ``kind`` (int | pot | flint) at ``bits`` (float64, sorted, in units of s)."""
    if bits > 6 and kind != "int":
        raise ValueError("ANT forces int above 6 bits")
    v = bits - 1 if signed else bits
    if kind == "int":
        values = list(range(-(2 ** v), 2 ** v)) if signed else list(range(2 ** v))
    elif kind == "pot":
        mags = [0] + [2 ** i for i in range(2 ** v - 1)]
        values = _signed(mags) if signed else mags
    elif kind == "flint":
        mags = flint_magnitudes(v)
        values = _signed(mags) if signed else mags
    else:
        raise ValueError(f"unknown ANT type {kind!r} (int | pot | flint)")
    return torch.tensor(sorted(values), dtype=torch.float64)


ANT_TYPES = {4: ("int", "pot", "flint"), 8: ("int",)}  # mode "ant-int-pot-flint"; 8 bits forced int


@dataclass(frozen=True)
class OliveFormat:
    """OliVe's normal grid and abfloat outlier grid, both in the normal type's integer units (quant-baselines.md
    2.2-2.3: the artifact's normalised grids divided by the normal unit)."""

    name: str
    normal: torch.Tensor  # sorted, symmetric
    outlier: torch.Tensor  # abfloat magnitudes, ascending

    @property
    def normal_max(self) -> float:
        return float(self.normal[-1])

    @property
    def threshold(self) -> float:
        """|x / s| at or above which a value is an outlier (midpoint of normal max and smallest abfloat)."""
        return (self.normal_max + float(self.outlier[0])) / 2


def abfloat_normalised(bits: int) -> list[float]:
    """The abfloat magnitudes in OliVe's normalised units: 2^k (1 + m / 2^M), k = 5..8, M = 1 (4-bit) or 5
    (8-bit), without the smallest (k = 5, m = 0 = 32, the normal maximum)."""
    mant = {4: 1, 8: 5}[bits]
    return [2 ** k * (1 + m / 2 ** mant) for k in range(5, 9) for m in range(2 ** mant)][1:]


@cache
def olive_format(normal: str, bits: int) -> OliveFormat:
    """OliVe's ``normal`` type (int | flint at 4 bits; int at 8) with its abfloat outliers."""
    if bits == 4 and normal == "int":
        unit = 4.0  # int4 step in normalised units (grid 0, +-4 .. +-28)
        grid = list(range(-7, 8))
    elif bits == 4 and normal == "flint":
        unit = 2.0  # flint4 unit (grid 0, +-2 .. +-32)
        grid = _signed(flint_magnitudes(3))
    elif bits == 8 and normal == "int":
        unit = 0.25  # int8 step (grid +-31.75)
        grid = list(range(-127, 128))
    else:
        raise ValueError(f"OliVe has no {normal} normal type at {bits} bits (4: int | flint; 8: int)")
    outlier = [m / unit for m in abfloat_normalised(bits)]
    return OliveFormat(f"{normal}{bits}", torch.tensor(grid, dtype=torch.float64),
                       torch.tensor(outlier, dtype=torch.float64))


OLIVE_TYPES = {4: ("int", "flint"), 8: ("int",)}  # mode "ant-int-flint" (llm/scripts/run_all.sh)


def nearest(y: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """The grid value nearest to each of ``y`` (ties to the larger value; beyond the ends, the ends)."""
    g = grid.to(y.dtype)
    mids = (g[1:] + g[:-1]) / 2
    return g[torch.bucketize(y, mids, right=True)]


def quantize(x: torch.Tensor, grid: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``scale * nearest(x / scale)``; ``scale`` broadcasts against ``x``. A uniform integer grid is rounded
    arithmetically (half up, the same values as ``nearest``), others by search."""
    y = x / scale
    lo, hi = float(grid[0]), float(grid[-1])
    if grid.numel() == hi - lo + 1:  # consecutive integers
        return torch.floor(y + 0.5).clamp_(lo, hi).mul_(scale)
    return nearest(y, grid).mul_(scale)


@dataclass(frozen=True)
class Sorted:
    """Rows of values sorted ascending, with prefix sums of x and x^2 (float64, a leading zero): what the squared
    error of any nearest-grid quantisation of each row is computed from."""

    values: torch.Tensor  # [R, K]
    p1: torch.Tensor  # [R, K + 1]
    p2: torch.Tensor  # [R, K + 1]

    @classmethod
    def of(cls, x: torch.Tensor) -> Sorted:
        """Sorted in the values' own precision (float32 sorts in about half the time), summed in float64."""
        v = torch.sort(x, dim=-1).values.double()
        zero = v.new_zeros(v.shape[0], 1)
        return cls(v, torch.cat([zero, v.cumsum(-1)], -1), torch.cat([zero, (v * v).cumsum(-1)], -1))


def grid_sse(rows: Sorted, grid: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """Squared error of quantising each row to ``grid`` at each of its candidate ``scales`` [R, A] -> [R, A]:
    bucket k of the sorted row (between the scaled midpoints) maps to ``s g_k``, and contributes
    sum x^2 - 2 s g_k sum x + n (s g_k)^2."""
    R, A = scales.shape
    g = grid.to(torch.float64)
    mids = (g[1:] + g[:-1]) / 2
    bounds = (scales.double()[:, :, None] * mids[None, None, :]).reshape(R, -1)  # [R, A (G-1)]
    idx = torch.searchsorted(rows.values, bounds).reshape(R, A, -1)
    K = rows.values.shape[1]
    edges = torch.cat([idx.new_zeros(R, A, 1), idx, idx.new_full((R, A, 1), K)], -1)  # [R, A, G + 1]
    flat = edges.reshape(R, -1)
    s1 = torch.gather(rows.p1, 1, flat).reshape(R, A, -1).diff(dim=-1)
    s2 = torch.gather(rows.p2, 1, flat).reshape(R, A, -1).diff(dim=-1)
    n = edges.diff(dim=-1).double()
    q = scales.double()[:, :, None] * g[None, None, :]
    return (s2 - 2 * q * s1 + n * q * q).sum(-1)


def uniform_sse(x: torch.Tensor, lo: float, hi: float, scales: torch.Tensor) -> torch.Tensor:
    """The same for a grid of consecutive integers [lo, hi], by arithmetic rounding (cheaper than searching a
    255-entry grid per row): x [R, K], scales [R, A] -> [R, A]."""
    out = torch.empty(scales.shape, dtype=torch.float64)
    for a in range(scales.shape[1]):
        s = scales[:, a:a + 1].to(x.dtype)
        err = torch.floor(x / s + 0.5).clamp_(lo, hi).mul_(s).sub_(x)
        out[:, a] = err.double().pow_(2).sum(-1)
    return out


def sse(x: torch.Tensor, rows: Sorted | None, grid: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """Squared error per row and candidate scale: by prefix sums for a short grid or one row (a tensor-wide
    search), by arithmetic for a long integer grid searched per row."""
    lo, hi = float(grid[0]), float(grid[-1])
    if grid.numel() == hi - lo + 1 and grid.numel() > 32 and x.shape[0] > 1:
        return uniform_sse(x, lo, hi, scales)
    return grid_sse(rows if rows is not None else Sorted.of(x), grid, scales)
