"""Systolic-array GEMM model: SCALE-Sim v3 stall-free cycle counts, SRAM accesses and DRAM traffic.

GEMM notation (as SCALE-Sim's GEMM mode): A is ``M x K`` (ifmap), B is ``K x N`` (filter), the
output C is ``M x N``, K is reduced. The array has R rows and C columns.

Cycle counts (``InterfaceBandwidth = CALC``, SRAMs large enough), exactly SCALE-Sim 3.0.0's
``total_cycles`` (see ``shared/reference/peers.md`` section 2.1)::

    dataflow  folds                 cycles per fold
    os        ceil(M/R) * ceil(N/C)  R + C + K - 2
    ws        ceil(K/R) * ceil(N/C)  2R + C + M - 2
    is        ceil(K/R) * ceil(M/C)  2R + C + N - 2
    total = folds * cycles_per_fold - 1

Every function broadcasts numpy-style over its arguments, so one call evaluates many design points
against many GEMMs (e.g. design arrays of shape ``(P, 1)`` against GEMM arrays of shape ``(1, O)``).
The dataflow may be a string or an integer array of codes (``DATAFLOWS.index(name)``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

DATAFLOWS: tuple[str, ...] = ("os", "ws", "is")

ArrayLike = Any  # scalar or numpy array


def dataflow_code(dataflow: ArrayLike) -> np.ndarray:
    """Integer code(s) of a dataflow given as a name, a sequence of names, or codes."""
    arr = np.asarray(dataflow)
    if arr.dtype.kind in "US":
        flat = arr.ravel()
        bad = sorted({str(d) for d in flat if str(d) not in DATAFLOWS})
        if bad:
            raise ValueError(f"dataflow must be one of {list(DATAFLOWS)}, got {bad}")
        return np.array([DATAFLOWS.index(str(d)) for d in flat], dtype=np.int64).reshape(arr.shape)
    codes = arr.astype(np.int64)
    if codes.size and (codes.min() < 0 or codes.max() >= len(DATAFLOWS)):
        raise ValueError(f"dataflow codes must be in 0..{len(DATAFLOWS) - 1}")
    return codes


def _ceil_div(a: ArrayLike, b: ArrayLike) -> np.ndarray:
    return np.ceil(np.asarray(a, dtype=np.float64) / np.asarray(b, dtype=np.float64))


def _all_int_scalars(*values: ArrayLike) -> bool:
    return all(np.ndim(v) == 0 and float(v) == int(v) for v in values)


def _by_dataflow(code: np.ndarray, os: Callable[[], Any], ws: Callable[[], Any],
                 is_: Callable[[], Any]) -> np.ndarray:
    """Pick the formula of each point's dataflow; only one formula is computed for a scalar code."""
    if np.ndim(code) == 0:
        return np.asarray((os, ws, is_)[int(code)](), dtype=np.float64)
    return np.where(code == 0, os(), np.where(code == 1, ws(), is_()))


def folds(M: ArrayLike, K: ArrayLike, N: ArrayLike, rows: ArrayLike, cols: ArrayLike,
          dataflow: ArrayLike) -> np.ndarray:
    """Number of array folds (tiles mapped one after another)."""
    code = dataflow_code(dataflow)
    return _by_dataflow(
        code,
        lambda: _ceil_div(M, rows) * _ceil_div(N, cols),
        lambda: _ceil_div(K, rows) * _ceil_div(N, cols),
        lambda: _ceil_div(K, rows) * _ceil_div(M, cols),
    )


def gemm_cycles(M: ArrayLike, K: ArrayLike, N: ArrayLike, rows: ArrayLike, cols: ArrayLike,
                dataflow: ArrayLike) -> Any:
    """Stall-free cycles of one GEMM; an ``int`` for scalar integer inputs, else a float array."""
    code = dataflow_code(dataflow)
    R = np.asarray(rows, dtype=np.float64)
    C = np.asarray(cols, dtype=np.float64)
    per_fold = _by_dataflow(
        code,
        lambda: R + C + np.asarray(K, dtype=np.float64) - 2,
        lambda: 2 * R + C + np.asarray(M, dtype=np.float64) - 2,
        lambda: 2 * R + C + np.asarray(N, dtype=np.float64) - 2,
    )
    total = folds(M, K, N, rows, cols, code) * per_fold - 1
    if _all_int_scalars(M, K, N, rows, cols) and np.ndim(code) == 0:
        return int(total)
    return total


def utilization(M: ArrayLike, K: ArrayLike, N: ArrayLike, rows: ArrayLike, cols: ArrayLike,
                dataflow: ArrayLike) -> np.ndarray:
    """Compute utilisation ``M*N*K / (R*C*cycles)`` as SCALE-Sim reports it."""
    cycles = np.asarray(gemm_cycles(M, K, N, rows, cols, dataflow), dtype=np.float64)
    macs = np.asarray(M, dtype=np.float64) * np.asarray(K, dtype=np.float64) * np.asarray(N, dtype=np.float64)
    return macs / (np.asarray(rows, dtype=np.float64) * np.asarray(cols, dtype=np.float64) * cycles)


@dataclass(frozen=True)
class SramAccesses:
    """Element accesses of the three operand buffers (SCALE-Sim's operand mapping)."""

    a_reads: np.ndarray
    b_reads: np.ndarray
    c_writes: np.ndarray  # partial or final outputs written to the output buffer
    c_reads: np.ndarray  # partial sums read back for accumulation


def sram_accesses(M: ArrayLike, K: ArrayLike, N: ArrayLike, rows: ArrayLike, cols: ArrayLike,
                  dataflow: ArrayLike) -> SramAccesses:
    """Operand-buffer reads and writes in elements.

    * os: each A row panel is streamed once per column fold, each B column panel once per row fold,
      outputs accumulate inside the PEs and are written once.
    * ws: B is loaded once; A is streamed once per column fold; each of the ceil(K/R) row folds
      writes a partial output that the next fold reads back.
    * is: A is loaded once; B is streamed once per column fold of M; partial outputs as in ws.
    """
    code = dataflow_code(dataflow)
    M_, K_, N_ = (np.asarray(x, dtype=np.float64) for x in (M, K, N))
    R, C = np.asarray(rows, dtype=np.float64), np.asarray(cols, dtype=np.float64)
    shape = np.broadcast_shapes(M_.shape, K_.shape, N_.shape, R.shape, C.shape, np.shape(code))
    mk, kn, mn = M_ * K_, K_ * N_, M_ * N_
    fr_k = lambda: _ceil_div(K_, R)  # noqa: E731 - row folds over K (ws, is)
    a = _by_dataflow(code, lambda: mk * _ceil_div(N_, C), lambda: mk * _ceil_div(N_, C), lambda: mk)
    b = _by_dataflow(code, lambda: kn * _ceil_div(M_, R), lambda: kn, lambda: kn * _ceil_div(M_, C))
    c_w = _by_dataflow(code, lambda: mn, lambda: mn * fr_k(), lambda: mn * fr_k())
    c_r = _by_dataflow(code, lambda: 0.0 * mn, lambda: mn * (fr_k() - 1), lambda: mn * (fr_k() - 1))
    return SramAccesses(*(np.broadcast_to(x, shape) for x in (a, b, c_w, c_r)))


@dataclass(frozen=True)
class DramTraffic:
    """Bytes moved between DRAM and the operand buffers for one GEMM."""

    a_bytes: np.ndarray
    b_bytes: np.ndarray
    c_bytes: np.ndarray
    total: np.ndarray


def dram_traffic(M: ArrayLike, K: ArrayLike, N: ArrayLike, rows: ArrayLike, cols: ArrayLike,
                 dataflow: ArrayLike, *, a_bytes: ArrayLike, b_bytes: ArrayLike, c_bytes: ArrayLike,
                 psum_bytes: ArrayLike, a_buf: ArrayLike, b_buf: ArrayLike, c_buf: ArrayLike,
                 double_buffered: bool = True, sram: SramAccesses | None = None) -> DramTraffic:
    """DRAM traffic of one GEMM for operand buffers of ``a_buf``/``b_buf``/``c_buf`` bytes.

    Tiling model (stated): with double buffering half of each buffer holds the working set.
    Two loop orders are considered and the cheaper one is taken:

    * A-resident: hold as many full rows of A (``K`` elements each) as fit, stream B past them.
      A is read once; B once if it fits whole, else once per block of resident rows.
    * B-resident: the transpose: hold full columns of B, stream A.

    If not even one row of A or one column of B fits, every operand is re-read from DRAM at each
    use, i.e. DRAM traffic equals the SRAM access counts. Outputs are written once at ``c_bytes``
    per element; in ws/is the partial sums of one column/row fold (``M x C`` or ``R x N``
    elements at ``psum_bytes``) must fit in the output buffer, else each of the ``ceil(K/R) - 1``
    extra folds spills and refills them.
    """
    code = dataflow_code(dataflow)
    M_, K_, N_ = (np.asarray(x, dtype=np.float64) for x in (M, K, N))
    ab, bb, cb = (np.asarray(x, dtype=np.float64) for x in (a_bytes, b_bytes, c_bytes))
    share = 0.5 if double_buffered else 1.0
    cap_a = np.asarray(a_buf, dtype=np.float64) * share
    cap_b = np.asarray(b_buf, dtype=np.float64) * share
    cap_c = np.asarray(c_buf, dtype=np.float64) * share

    a_total, b_total = M_ * K_ * ab, K_ * N_ * bb
    rows_held = np.floor(cap_a / (K_ * ab))
    cols_held = np.floor(cap_b / (K_ * bb))
    ok_a, ok_b = rows_held >= 1, cols_held >= 1
    b_passes = np.where(b_total <= cap_b, 1.0, np.ceil(M_ / np.maximum(rows_held, 1.0)))
    a_passes = np.where(a_total <= cap_a, 1.0, np.ceil(N_ / np.maximum(cols_held, 1.0)))
    b_streamed = b_total * b_passes  # A-resident order
    a_streamed = a_total * a_passes  # B-resident order
    use_a = ok_a & (~ok_b | (a_total + b_streamed <= b_total + a_streamed))
    use_b = ~use_a & ok_b
    if sram is None:
        sram = sram_accesses(M_, K_, N_, rows, cols, code)
    a_dram = np.where(use_a, a_total, np.where(use_b, a_streamed, sram.a_reads * ab))
    b_dram = np.where(use_a, b_streamed, np.where(use_b, b_total, sram.b_reads * bb))

    R = np.asarray(rows, dtype=np.float64)
    C = np.asarray(cols, dtype=np.float64)
    pb = np.asarray(psum_bytes, dtype=np.float64)

    def spill(working: np.ndarray) -> np.ndarray:
        extra_folds = _ceil_div(K_, R) - 1
        return np.where(working > cap_c, 2.0 * M_ * N_ * pb * extra_folds, 0.0)

    c_dram = M_ * N_ * cb + _by_dataflow(code, lambda: 0.0, lambda: spill(M_ * C * pb), lambda: spill(R * N_ * pb))
    return DramTraffic(a_bytes=a_dram, b_bytes=b_dram, c_bytes=c_dram, total=a_dram + b_dram + c_dram)


def bandwidth_bound_seconds(cycles: ArrayLike, clock_hz: ArrayLike, dram_bytes: ArrayLike,
                            bandwidth_bytes_per_s: ArrayLike) -> np.ndarray:
    """Latency of one GEMM: ``max(compute, traffic / bandwidth)``.

    Stated assumption: double-buffered operand buffers overlap DRAM transfers with compute
    completely, so a layer is limited by whichever of the two takes longer.
    """
    compute = np.asarray(cycles, dtype=np.float64) / np.asarray(clock_hz, dtype=np.float64)
    memory = np.asarray(dram_bytes, dtype=np.float64) / np.asarray(bandwidth_bytes_per_s, dtype=np.float64)
    return np.maximum(compute, memory)
