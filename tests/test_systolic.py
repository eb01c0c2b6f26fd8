"""SCALE-Sim closed forms, operand accesses, DRAM tiling and the bandwidth bound."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from cost_models import systolic
from cost_models.systolic import dram_traffic, gemm_cycles, sram_accesses, utilization

# (M, K, N, R, C, dataflow, cycles) worked by hand from the closed forms:
#   os: ceil(M/R) ceil(N/C) (R + C + K - 2) - 1
#   ws: ceil(K/R) ceil(N/C) (2R + C + M - 2) - 1
#   is: ceil(K/R) ceil(M/C) (2R + C + N - 2) - 1
HAND = [
    (512, 768, 768, 64, 64, "os", 96 * 894 - 1),  # the worked example: 85,823
    (100, 70, 50, 32, 16, "os", 4 * 4 * 116 - 1),  # non-square array, ragged in M, N
    (100, 70, 50, 32, 16, "ws", 3 * 4 * 178 - 1),  # ragged in K, N
    (100, 70, 50, 32, 16, "is", 3 * 7 * 128 - 1),  # ragged in K, M
    (1, 4096, 4096, 64, 64, "os", 1 * 64 * 4222 - 1),  # a decode GEMV
    (1, 4096, 4096, 64, 64, "ws", 64 * 64 * 191 - 1),
    (1, 4096, 4096, 64, 64, "is", 64 * 1 * 4286 - 1),
    (7, 3, 5, 8, 4, "os", 1 * 2 * 13 - 1),  # everything smaller than the array
    (64, 64, 64, 64, 64, "ws", 1 * 1 * 254 - 1),  # exactly one fold
]


def test_worked_example() -> None:
    assert gemm_cycles(512, 768, 768, 64, 64, "os") == 85823
    assert utilization(512, 768, 768, 64, 64, "os") == pytest.approx(0.859070, abs=1e-6)


@pytest.mark.parametrize(("M", "K", "N", "R", "C", "df", "expected"), HAND)
def test_hand_computed(M: int, K: int, N: int, R: int, C: int, df: str, expected: int) -> None:
    got = gemm_cycles(M, K, N, R, C, df)
    assert isinstance(got, int)
    assert got == expected


def test_scalesim_lookup_table() -> None:
    """Cycle counts produced by SCALE-Sim 3.0.0 itself (tests/data/scalesim_cycles.csv)."""
    path = Path(__file__).parent / "data" / "scalesim_cycles.csv"
    rows = list(csv.DictReader(path.open()))
    assert len(rows) >= 10
    for r in rows:
        got = gemm_cycles(int(r["M"]), int(r["K"]), int(r["N"]), int(r["R"]), int(r["C"]), r["dataflow"])
        assert got == int(r["total_cycles"]), r


def test_vectorised_equals_scalar() -> None:
    rng = np.random.default_rng(1)
    M, K, N = rng.integers(1, 3000, 40), rng.integers(1, 3000, 40), rng.integers(1, 3000, 40)
    R, C = rng.integers(1, 300, 25), rng.integers(1, 300, 25)
    df = rng.integers(0, 3, 25)
    grid = gemm_cycles(M[None, :], K[None, :], N[None, :], R[:, None], C[:, None], df[:, None])
    assert grid.shape == (25, 40)
    for p in range(25):
        for o in range(40):
            scalar = gemm_cycles(int(M[o]), int(K[o]), int(N[o]), int(R[p]), int(C[p]),
                                 systolic.DATAFLOWS[int(df[p])])
            assert grid[p, o] == scalar


def test_bad_dataflow_names_allowed_values() -> None:
    with pytest.raises(ValueError, match=r"\['os', 'ws', 'is'\]"):
        gemm_cycles(4, 4, 4, 2, 2, "rs")


def test_sram_accesses_by_hand() -> None:
    # M=100, K=70, N=50 on 32 x 16: ceil(M/R)=4, ceil(N/C)=4, ceil(K/R)=3, ceil(M/C)=7.
    os_ = sram_accesses(100, 70, 50, 32, 16, "os")
    assert (os_.a_reads, os_.b_reads, os_.c_writes, os_.c_reads) == (7000 * 4, 3500 * 4, 5000, 0)
    ws = sram_accesses(100, 70, 50, 32, 16, "ws")
    assert (ws.a_reads, ws.b_reads, ws.c_writes, ws.c_reads) == (7000 * 4, 3500, 5000 * 3, 5000 * 2)
    is_ = sram_accesses(100, 70, 50, 32, 16, "is")
    assert (is_.a_reads, is_.b_reads, is_.c_writes, is_.c_reads) == (7000, 3500 * 7, 5000 * 3, 5000 * 2)


def _traffic(buf_a: float, buf_b: float, buf_c: float = 1e9, df: str = "os") -> systolic.DramTraffic:
    return dram_traffic(256, 512, 1024, 32, 32, df, a_bytes=1, b_bytes=1, c_bytes=1, psum_bytes=4,
                        a_buf=buf_a, b_buf=buf_b, c_buf=buf_c, double_buffered=False)


def test_dram_everything_fits_reads_each_operand_once() -> None:
    t = _traffic(1e9, 1e9)
    assert (t.a_bytes, t.b_bytes, t.c_bytes) == (256 * 512, 512 * 1024, 256 * 1024)


def test_dram_reread_when_b_does_not_fit() -> None:
    # A fits whole (128 KiB); B (512 KiB) does not, and B columns fit 64 at a time:
    # A-resident order: A once + B re-read ceil(256/256)=1 -> A + B (A holds all 256 rows).
    t = _traffic(256 * 512, 64 * 512)
    assert (t.a_bytes, t.b_bytes) == (256 * 512, 512 * 1024)
    # Now A holds only 64 rows: A-resident costs A + 4 B; B-resident (64 cols) costs B + 16 A.
    t = _traffic(64 * 512, 64 * 512)
    a_res = 256 * 512 + 4 * 512 * 1024
    b_res = 512 * 1024 + 16 * 256 * 512
    assert t.a_bytes + t.b_bytes == min(a_res, b_res) == a_res
    assert t.b_bytes == 4 * 512 * 1024


def test_dram_nothing_fits_streams_every_use() -> None:
    t = _traffic(100, 100)
    acc = sram_accesses(256, 512, 1024, 32, 32, "os")
    assert (t.a_bytes, t.b_bytes) == (acc.a_reads, acc.b_reads)


def test_dram_partial_sum_spill_in_ws() -> None:
    # ws: partial sums of one column fold = M x C x 4 B = 32 KiB; K folds = 16 -> 15 spills.
    fits = _traffic(1e9, 1e9, buf_c=64 * 1024, df="ws")
    spills = _traffic(1e9, 1e9, buf_c=16 * 1024, df="ws")
    assert fits.c_bytes == 256 * 1024
    assert spills.c_bytes == 256 * 1024 + 2 * 256 * 1024 * 4 * 15


def _blocked(overhead: float, width: float = 1.0) -> systolic.DramTraffic:
    return dram_traffic(256, 512, 1024, 32, 32, "os", a_bytes=width, b_bytes=width, c_bytes=1, psum_bytes=4,
                        a_buf=16 * 1024, b_buf=16 * 1024, c_buf=128 * 1024, double_buffered=False,
                        max_slice_overhead=overhead)


def test_dram_output_blocked_k_split_by_hand() -> None:
    # Full-K orders: A holds 32 rows -> A + 8 B = 4,325,376 bytes (B-resident: B + 32 A is worse).
    assert _blocked(0.0).a_bytes + _blocked(0.0).b_bytes == 256 * 512 + 8 * 512 * 1024
    assert _blocked(0.0).k_slices == 1
    # Overhead 0.5 allows 5 slices (K_t >= 103): the best block is 128 x 128 outputs with 128-channel
    # slices (128 x 128 bytes of A and of B fill the 16 KiB buffers): A read 8 times, B twice.
    t = _blocked(0.5)
    assert (t.a_bytes, t.b_bytes, t.k_slices) == (8 * 256 * 512, 2 * 512 * 1024, 4)
    # Overhead 0.3 allows 3 slices (K_t >= 171): 64 x 64 blocks, 256-channel slices: 16 A + 4 B.
    t = _blocked(0.3)
    assert (t.a_bytes, t.b_bytes, t.k_slices) == (16 * 256 * 512, 4 * 512 * 1024, 2)
    assert (t.k_slices - 1) * (32 + 32 - 2) <= 0.3 * (32 + 32 + 512 - 2)


def test_dram_output_blocked_traffic_is_linear_in_operand_width() -> None:
    # When the output buffer bounds the partial-sum block (here 128 x 256 or 256 x 128 of 32-bit sums),
    # the block does not depend on the operand width, so doubling the width doubles the traffic; the
    # full-K orders hold half as many rows of the wider operand and more than double.
    def traffic(width: float, overhead: float) -> float:
        t = dram_traffic(256, 2048, 1024, 32, 32, "os", a_bytes=width, b_bytes=width, c_bytes=1, psum_bytes=4,
                         a_buf=64 * 1024, b_buf=64 * 1024, c_buf=128 * 1024, double_buffered=False,
                         max_slice_overhead=overhead)
        return float(t.a_bytes + t.b_bytes)

    assert traffic(1.0, 0.5) == 4 * 256 * 2048 + 2 * 2048 * 1024
    assert traffic(1.0, 0.5) / traffic(0.5, 0.5) == pytest.approx(2.0)
    assert traffic(1.0, 0.0) / traffic(0.5, 0.0) == pytest.approx((256 * 2048 + 8 * 2048 * 1024)
                                                                  / (0.5 * (256 * 2048 + 4 * 2048 * 1024)))
    assert traffic(1.0, 0.0) / traffic(0.5, 0.0) > 3.5


def test_dram_output_blocked_only_in_os() -> None:
    ws = dram_traffic(256, 512, 1024, 32, 32, "ws", a_bytes=1, b_bytes=1, c_bytes=1, psum_bytes=4,
                      a_buf=16 * 1024, b_buf=16 * 1024, c_buf=128 * 1024, double_buffered=False,
                      max_slice_overhead=0.5)
    assert ws.k_slices == 1


def test_double_buffering_halves_capacity() -> None:
    single = dram_traffic(256, 512, 1024, 32, 32, "os", a_bytes=1, b_bytes=1, c_bytes=1, psum_bytes=4,
                          a_buf=64 * 512, b_buf=64 * 512, c_buf=1e9, double_buffered=False)
    double = dram_traffic(256, 512, 1024, 32, 32, "os", a_bytes=1, b_bytes=1, c_bytes=1, psum_bytes=4,
                          a_buf=128 * 512, b_buf=128 * 512, c_buf=1e9, double_buffered=True)
    assert single.total == double.total


def test_bandwidth_bound_is_the_max() -> None:
    assert systolic.bandwidth_bound_seconds(1000, 1e9, 10, 1e9) == pytest.approx(1e-6)
    assert systolic.bandwidth_bound_seconds(1000, 1e9, 1e6, 1e9) == pytest.approx(1e-3)


def test_k_split_never_moves_more_bytes_and_respects_its_cycle_bound() -> None:
    rng = np.random.default_rng(7)
    n = 5000
    M, K, N = rng.integers(1, 8192, n), rng.integers(16, 16384, n), rng.integers(16, 16384, n)
    R, C = rng.integers(2, 256, n), rng.integers(2, 256, n)
    width, bound = rng.choice([0.5, 1.0, 2.0], n), rng.uniform(0.01, 0.5, n)
    bufs = {k: rng.integers(8, 4096, n) * 1024.0 for k in ("a_buf", "b_buf", "c_buf")}
    kw = dict(a_bytes=width, b_bytes=width, c_bytes=width, psum_bytes=4, **bufs)
    full = dram_traffic(M, K, N, R, C, "os", **kw)
    split = dram_traffic(M, K, N, R, C, "os", **kw, max_slice_overhead=bound)
    assert np.all(split.total <= full.total)
    assert np.any(split.total < full.total)
    assert np.all((split.k_slices - 1) * (R + C - 2) <= bound * (R + C + K - 2) + 1e-9)
