"""The plain INT-N systolic accelerator: composition of cycles, energy and area."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from cost_models import accelerator, systolic
from cost_models.accelerator import SystolicDesign, evaluate
from dse.config import Config
from dse.systems.systolic import SystolicSystem
from workloads import ModelShape, WorkloadSpec, build_operators

BASE = dict(rows=64, cols=64, dataflow="os", bits=8, acc_bits=32, clock_ghz=1.0, a_buf_kib=256,
            b_buf_kib=256, c_buf_kib=128, dram_bw_gbps=64.0, kslice_max_overhead=0.1)


@pytest.fixture
def system(make_cfg: Callable[..., Config]) -> SystolicSystem:
    return SystolicSystem(make_cfg())


def random_points(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return dict(rows=rng.integers(4, 300, n), cols=rng.integers(4, 300, n), dataflow=rng.integers(0, 3, n),
                bits=rng.choice([4, 8], n), acc_bits=rng.choice([24, 32], n), clock_ghz=rng.uniform(0.3, 2, n),
                a_buf_kib=rng.integers(8, 4096, n), b_buf_kib=rng.integers(8, 4096, n),
                c_buf_kib=rng.integers(8, 2048, n), dram_bw_gbps=rng.uniform(8, 2000, n),
                kslice_max_overhead=rng.uniform(0, 0.3, n))


def test_vectorised_equals_one_by_one(system: SystolicSystem) -> None:
    pts = random_points(50)
    batch = system.evaluate(pts).metrics
    for i in range(50):
        one = system.evaluate({k: v[i] for k, v in pts.items()}).metrics
        for key in accelerator.METRICS:
            assert one[key][0] == pytest.approx(batch[key][i], rel=1e-12), key


def test_chunking_does_not_change_results(system: SystolicSystem) -> None:
    design = SystolicDesign.from_mapping(random_points(37, seed=3))
    a, _ = evaluate(design, system.ops, system.tech, chunk=5)
    b, _ = evaluate(design, system.ops, system.tech, chunk=1000)
    for key in accelerator.METRICS:
        np.testing.assert_allclose(a[key], b[key], rtol=1e-12)


def test_latency_is_sum_of_bandwidth_bound_gemms(system: SystolicSystem) -> None:
    d = SystolicDesign.from_mapping(BASE)
    metrics, per_op = evaluate(d, system.ops, system.tech, per_op=True)
    assert per_op is not None
    ops = system.ops
    cyc = np.array([systolic.gemm_cycles(m, k, n, 64, 64, "os") for m, k, n in zip(ops.M, ops.K, ops.N,
                                                                                   strict=True)])
    np.testing.assert_allclose(per_op.cycles[0], cyc * ops.count)
    assert np.all(per_op.latency_s[0] >= cyc * ops.count / 1e9 * (1 - 1e-12))
    assert metrics["latency_s"][0] == pytest.approx(per_op.latency_s[0].sum())
    assert metrics["latency_s"][0] == pytest.approx(metrics["prefill_latency_s"][0] + metrics["decode_latency_s"][0])


def test_energy_adds_up_and_mac_energy_by_hand(system: SystolicSystem) -> None:
    m, _ = evaluate(SystolicDesign.from_mapping({**BASE, "kslice_max_overhead": 0.0}), system.ops, system.tech)
    parts = m["energy_mac_j"] + m["energy_sram_j"] + m["energy_dram_j"] + m["energy_leak_j"]
    assert m["energy_j"][0] == pytest.approx(parts[0])
    macs = float((system.ops.M * system.ops.K * system.ops.N * system.ops.count).sum())
    t = system.tech  # 45 nm: 8-bit multiply 0.2 pJ + 32-bit add 0.1 pJ (Horowitz)
    assert t.logic_energy_scale == 1.0
    # Output stationary: per MAC the arithmetic and one 32-bit accumulator update; per PE-cycle the
    # two 8-bit operand registers (12.73 fJ per register bit at 45 nm).
    ops = system.ops
    pe_cycles = float((systolic.gemm_cycles(ops.M, ops.K, ops.N, 64, 64, "os") * ops.count).sum())
    expected = macs * (0.2 + 0.1 + 32 * 0.01273) + pe_cycles * 64 * 64 * 16 * 0.01273
    assert m["energy_mac_j"][0] == pytest.approx(expected * 1e-12)


def test_area_by_hand(system: SystolicSystem) -> None:
    m, _ = evaluate(SystolicDesign.from_mapping(BASE), system.ops, system.tech)
    pe = 282 + 137 + 4.522 * (8 + 8 + 32)  # um^2: multiplier + adder + operand and accumulator registers
    assert m["area_pe_mm2"][0] == pytest.approx(4096 * pe / 1e6)
    sram = (256 + 256 + 128) * 8192 * 0.346 / 0.7 / 1e6
    assert m["area_sram_mm2"][0] == pytest.approx(sram)
    assert m["area_mm2"][0] == pytest.approx(4096 * pe / 1e6 + sram + 0.5)


def test_int4_is_cheaper_than_int8(system: SystolicSystem) -> None:
    m8, _ = evaluate(SystolicDesign.from_mapping(BASE), system.ops, system.tech)
    m4, _ = evaluate(SystolicDesign.from_mapping({**BASE, "bits": 4}), system.ops, system.tech)
    assert m4["area_mm2"][0] < m8["area_mm2"][0]
    assert m4["energy_j"][0] < m8["energy_j"][0]
    assert m4["latency_s"][0] <= m8["latency_s"][0]


def test_decode_is_memory_bound_and_bandwidth_helps(system: SystolicSystem) -> None:
    # At a few GB/s every decode GEMM streams its weights slower than the array computes, so the
    # decode latency scales as 1 / bandwidth; at high bandwidth the M = 1 GEMVs become compute bound.
    lat = {bw: evaluate(SystolicDesign.from_mapping({**BASE, "dram_bw_gbps": bw}), system.ops, system.tech)[0]
           ["decode_latency_s"][0] for bw in (4.0, 8.0, 4096.0, 8192.0)}
    assert lat[4.0] == pytest.approx(2 * lat[8.0], rel=1e-9)
    assert lat[4096.0] == pytest.approx(lat[8192.0], rel=1e-9)


def test_accumulator_headroom_and_invalid_points(system: SystolicSystem) -> None:
    shape = ModelShape("t", 4096, 1, 32, 32, 128, 11008, True, 100)
    ops = build_operators(shape, WorkloadSpec(1, 8, 2))
    tech = system.tech
    d = SystolicDesign.from_mapping({**BASE, "bits": 8, "acc_bits": np.array([20, 30, 40]),
                                     "rows": np.array([64, 0, 64])})  # 30-bit need
    m, _ = evaluate(d, ops, tech)
    # 2 x 8 bits + ceil(log2 11008) = 16 + 14 = 30 bits needed.
    np.testing.assert_array_equal(m["acc_headroom_bits"], [-10, np.nan, 10])  # invalid point: NaN
    assert np.isnan(m["latency_s"][1]) and np.isfinite(m["latency_s"][[0, 2]]).all()
    assert list(d.invalid_reason()) == ["", "rows < 1", ""]


def test_7nm_is_smaller_and_cheaper(make_cfg: Callable[..., Config]) -> None:
    s45 = SystolicSystem(make_cfg())
    s7 = SystolicSystem(make_cfg(["tech=7nm"]))
    a, _ = evaluate(SystolicDesign.from_mapping(BASE), s45.ops, s45.tech)
    b, _ = evaluate(SystolicDesign.from_mapping(BASE), s7.ops, s7.tech)
    assert b["area_mm2"][0] < a["area_mm2"][0] / 10
    assert b["energy_j"][0] < a["energy_j"][0]
    assert s7.tech.mult8_energy_pj == s45.tech.mult8_energy_pj  # anchors shared, scaled in code
