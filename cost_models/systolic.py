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
    k_slices: np.ndarray  # K slices per output tile: 1 unless the output-blocked order was chosen


def _output_blocked(M: np.ndarray, K: np.ndarray, N: np.ndarray, R: np.ndarray, C: np.ndarray,
                    ab: np.ndarray, bb: np.ndarray, pb: np.ndarray, cap_a: np.ndarray, cap_b: np.ndarray,
                    cap_c: np.ndarray, max_overhead: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(A bytes, B bytes, K slices) of the best output-blocked (K-split) tiling of each of the equally
    long 1-D inputs; inf where none is allowed.

    An ``Mt x Nt`` block of partial sums (multiples of R and C) stays in the output buffer while K is
    streamed in slices of ``Kt`` channels (an ``Mt x Kt`` slice of A and a ``Kt x Nt`` slice of B in the
    scratchpad); each array tile of the block drains its partial sum into the output buffer after
    every slice, which accumulates it. A is read once per column block, B once per row block. Every
    extra slice costs each tile another fill/drain (``R + C - 2`` cycles); tilings whose extra cycles
    exceed ``max_overhead`` of the full-K fold are not allowed, which sets the thinnest slice.

    The traffic ``A ceil(N/Nt) + B ceil(M/Mt)`` falls in both block sides, so the best block fills
    the output buffer (``Mt Nt = cap_c / pb``); without the ceilings it is ``Mt = sqrt(cap_c bb /
    (pb ab))``. The candidates are that optimum rounded down and up to multiples of R, one row of
    tiles, and all of M, each clipped to what the slice and M allow; ``Nt`` is then the largest
    multiple of C that the output buffer and the slice allow.
    """
    x = lambda a: np.asarray(a, dtype=np.float64)[..., None]  # noqa: E731
    M_, K_, N_, R_, C_ = x(M), x(K), x(N), x(R), x(C)
    max_slices = np.minimum(np.floor(1.0 + x(max_overhead) * (R_ + C_ + K_ - 2) / np.maximum(R_ + C_ - 2, 1.0)), K_)
    k_min = np.ceil(K_ / np.maximum(max_slices, 1.0))  # the thinnest slice allowed
    m_hi = np.minimum(np.floor(x(cap_a) / (k_min * x(ab)) / R_) * R_, np.ceil(M_ / R_) * R_)
    m_opt = np.sqrt(x(cap_c) * x(bb) / (x(pb) * x(ab)))
    cand = np.concatenate([np.floor(m_opt / R_) * R_, np.ceil(m_opt / R_) * R_, R_, np.ceil(M_ / R_) * R_], axis=-1)
    Mt = np.clip(cand, R_, np.maximum(m_hi, R_))
    Nt = np.minimum(np.floor(np.minimum(x(cap_c) / (Mt * x(pb)), x(cap_b) / (k_min * x(bb))) / C_) * C_,
                    np.ceil(N_ / C_) * C_)
    Kt = np.minimum(K_, np.floor(np.minimum(x(cap_a) / (Mt * x(ab)), x(cap_b) / (np.maximum(Nt, 1.0) * x(bb)))))
    slices = np.ceil(K_ / np.maximum(Kt, 1.0))
    ok = (max_slices >= 1) & (Nt >= C_) & (Kt >= k_min)
    a_b = np.where(ok, M_ * K_ * x(ab) * np.ceil(N_ / np.maximum(Nt, 1.0)), np.inf)
    b_b = np.where(ok, K_ * N_ * x(bb) * np.ceil(M_ / Mt), np.inf)
    best = np.argmin(a_b + b_b, axis=-1)[..., None]
    pick = lambda a: np.take_along_axis(a, best, -1)[..., 0]  # noqa: E731
    return pick(a_b), pick(b_b), pick(slices)


def dram_traffic(M: ArrayLike, K: ArrayLike, N: ArrayLike, rows: ArrayLike, cols: ArrayLike,
                 dataflow: ArrayLike, *, a_bytes: ArrayLike, b_bytes: ArrayLike, c_bytes: ArrayLike,
                 psum_bytes: ArrayLike, a_buf: ArrayLike, b_buf: ArrayLike, c_buf: ArrayLike,
                 double_buffered: bool = True, sram: SramAccesses | None = None,
                 max_slice_overhead: ArrayLike = 0.0) -> DramTraffic:
    """DRAM traffic of one GEMM for operand buffers of ``a_buf``/``b_buf``/``c_buf`` bytes.

    Tiling model (stated): with double buffering half of each buffer holds the working set.
    The loop orders below are considered and the one moving the fewest bytes is taken:

    * A-resident: hold as many full rows of A (``K`` elements each) as fit, stream B past them.
      A is read once; B once if it fits whole, else once per block of resident rows.
    * B-resident: the transpose: hold full columns of B, stream A.
    * Output-blocked (os only, when ``max_slice_overhead > 0``): K is split into slices and a block
      of partial sums accumulates in the output buffer (``_output_blocked``). Its traffic grows
      linearly with the operand width, where the full-K orders hold fewer rows of a wider operand
      and so grow with its square. ``k_slices`` reports the slices per output tile so that the
      cycle and output-buffer models can charge them.

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
    # The output-blocked order is searched only where it is allowed and the full-K orders re-read.
    shape = np.broadcast_shapes(a_dram.shape, b_dram.shape, pb.shape, cap_c.shape, np.shape(max_slice_overhead),
                                np.shape(code))
    flat = lambda v: np.broadcast_to(np.asarray(v, dtype=np.float64), shape).ravel()  # noqa: E731
    a_dram, b_dram, k_slices = flat(a_dram).copy(), flat(b_dram).copy(), np.ones(int(np.prod(shape)))
    rereads = a_dram + b_dram > flat(a_total + b_total)
    todo = np.flatnonzero((flat(code) == 0) & (flat(max_slice_overhead) > 0) & rereads)
    if todo.size:
        a_blk, b_blk, slices = _output_blocked(*(flat(v)[todo] for v in (M_, K_, N_, R, C, ab, bb, pb, cap_a, cap_b,
                                                                          cap_c, max_slice_overhead)))
        better = a_blk + b_blk < a_dram[todo] + b_dram[todo]
        a_dram[todo] = np.where(better, a_blk, a_dram[todo])
        b_dram[todo] = np.where(better, b_blk, b_dram[todo])
        k_slices[todo] = np.where(better, slices, 1.0)
    a_dram, b_dram, k_slices = (v.reshape(shape) for v in (a_dram, b_dram, k_slices))

    def spill(working: np.ndarray) -> np.ndarray:
        extra_folds = _ceil_div(K_, R) - 1
        return np.where(working > cap_c, 2.0 * M_ * N_ * pb * extra_folds, 0.0)

    c_dram = M_ * N_ * cb + _by_dataflow(code, lambda: 0.0, lambda: spill(M_ * C * pb), lambda: spill(R * N_ * pb))
    return DramTraffic(a_bytes=a_dram, b_bytes=b_dram, c_bytes=c_dram, total=a_dram + b_dram + c_dram,
                       k_slices=k_slices)


def bandwidth_bound_seconds(cycles: ArrayLike, clock_hz: ArrayLike, dram_bytes: ArrayLike,
                            bandwidth_bytes_per_s: ArrayLike) -> np.ndarray:
    """Latency of one GEMM: ``max(compute, traffic / bandwidth)``.

    Stated assumption: double-buffered operand buffers overlap DRAM transfers with compute
    completely, so a layer is limited by whichever of the two takes longer.
    """
    compute = np.asarray(cycles, dtype=np.float64) / np.asarray(clock_hz, dtype=np.float64)
    memory = np.asarray(dram_bytes, dtype=np.float64) / np.asarray(bandwidth_bytes_per_s, dtype=np.float64)
    return np.maximum(compute, memory)
