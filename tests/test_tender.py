"""Tender / outlier-accelerator model: bubbles, reductions to the plain array, ganging, properties."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cost_models import systolic
from cost_models import tender as T
from cost_models.design import value_codes
from dse.config import Config, ConfigError, to_config
from dse.systems.outlier_array import OutlierArraySystem
from tests.conftest import compose_raw
from workloads.operators import GemmOps


@pytest.fixture(scope="module")
def tender_system() -> OutlierArraySystem:
    cfg = to_config(compose_raw(["system=tender", "workload.gen_len=4"]))
    system = OutlierArraySystem(cfg)
    system.hw = dict(cfg.system.hw)  # type: ignore[attr-defined]
    return system


def _hw(system: OutlierArraySystem) -> dict:
    return dict(system.hw)


def one_gemm(M: int, K: int, N: int) -> GemmOps:
    """An operator list holding a single linear GEMM and no vector work."""
    return GemmOps(names=("g",), kinds=("linear",), phase=np.array([0], dtype=np.int8), M=np.array([M], float),
                   K=np.array([K], float), N=np.array([N], float), count=np.array([1.0]),
                   weight_operand=np.array([True]), kv_read_elems=np.zeros(2), kv_write_elems=np.zeros(2),
                   tokens=np.array([float(M), 0.0]), generated_tokens=1, input_share=np.ones(1),
                   norm_elems=np.zeros(2), act_elems=np.zeros(2), softmax_elems=np.zeros(2))


def cycles_of(system: OutlierArraySystem, ops: object, scheme: T.Scheme, **kw: object) -> float:
    hw = {**_hw(system), "hbm_bw_gbps": 1e9, "vpu_lanes": 1e9, **kw}  # isolate the array
    m = T.evaluate(T.TenderDesign.from_mapping(hw), ops, system.tech, scheme)
    return float(m["latency_s"][0] * hw["clock_ghz"] * 1e9)


TENDER = T.Scheme(name="tender", decomposed=True)
PLAIN = T.Scheme(name="plain")


@pytest.mark.parametrize(("M", "K", "N", "G", "chunk"), [(512, 768, 768, 8, 256), (100, 70, 50, 3, 256),
                                                         (300, 64, 200, 16, 128), (1, 4096, 4096, 20, 256)])
def test_bubbles_equal_boundaries_per_tile(tender_system: OutlierArraySystem, M: int, K: int, N: int, G: int,
                                           chunk: int) -> None:
    ops = one_gemm(M, K, N)
    with_g = cycles_of(tender_system, ops, TENDER, groups=G, chunk=chunk, bits=4)
    one_g = cycles_of(tender_system, ops, TENDER, groups=1, chunk=chunk, bits=4)
    row_folds = (M // chunk) * -(-chunk // 64) + -(-(M % chunk) // 64)
    tiles = row_folds * -(-N // 64)
    assert with_g - one_g == pytest.approx(tiles * (G - 1))
    # g_eff: only the group boundaries actually crossed cost a bubble
    eff = cycles_of(tender_system, ops, TENDER, groups=G, g_eff=2, chunk=chunk, bits=4)
    assert eff - one_g == pytest.approx(tiles * 1)


@pytest.mark.parametrize(("M", "K", "N"), [(512, 768, 768), (100, 70, 50), (1, 4096, 4096), (2048, 576, 1536)])
def test_g1_is_the_plain_systolic_array(tender_system: OutlierArraySystem, M: int, K: int, N: int) -> None:
    ops = one_gemm(M, K, N)
    got = cycles_of(tender_system, ops, TENDER, groups=1, chunk=4096, bits=4)
    assert got == pytest.approx(systolic.gemm_cycles(M, K, N, 64, 64, "os"))
    assert cycles_of(tender_system, ops, PLAIN, groups=8, bits=4) == pytest.approx(got)


def test_int8_ganging_halves_the_array(tender_system: OutlierArraySystem) -> None:
    ops = one_gemm(512, 768, 768)
    got = cycles_of(tender_system, ops, TENDER, groups=1, chunk=4096, bits=8)
    assert got == pytest.approx(systolic.gemm_cycles(512, 768, 768, 32, 32, "os"))
    native = cycles_of(tender_system, ops, TENDER, groups=1, chunk=4096, bits=8, int8_pe="native")
    assert native == pytest.approx(systolic.gemm_cycles(512, 768, 768, 64, 64, "os"))


def test_small_chunks_underfill_the_array(tender_system: OutlierArraySystem) -> None:
    ops = one_gemm(512, 768, 768)
    full = cycles_of(tender_system, ops, TENDER, groups=1, chunk=256, bits=4)
    small = cycles_of(tender_system, ops, TENDER, groups=1, chunk=16, bits=4)
    assert small == pytest.approx(4 * full + 3)  # 32 chunks of 16 rows: 32 row folds instead of 8


def test_accumulator_overflow_is_infeasible(tender_system: OutlierArraySystem) -> None:
    hw = _hw(tender_system)
    ev = tender_system.evaluate({**hw, "bits": 8, "groups": np.array([4, 16]), "acc_bits": 32})
    k = float(tender_system.ops.K.max())
    need = 16 + np.ceil(np.log2(k)) + np.array([3, 15])
    np.testing.assert_array_equal(ev.metrics["acc_headroom_bits"], 32 - need)


def test_runtime_mode_costs_vpu_time(tender_system: OutlierArraySystem) -> None:
    hw = _hw(tender_system)
    cal = tender_system.evaluate({**hw, "mode": "calibrated"}).metrics
    rt = tender_system.evaluate({**hw, "mode": "runtime"}).metrics
    assert rt["latency_s"][0] >= cal["latency_s"][0]
    assert rt["energy_vpu_j"][0] > cal["energy_vpu_j"][0]


def test_pe_overhead_and_third_party_area(make_cfg: Callable[..., Config]) -> None:
    from dse.studies.fidelity import area_report

    lines = area_report()
    native = float(lines[0].split(": ")[1].split(" mm^2")[0])
    assert abs(native / 0.20 - 1) <= 0.25
    assert "overhead +" in lines[2]


@settings(max_examples=40, deadline=None)
@given(bw=st.floats(16, 2048), factor=st.floats(1.0, 8.0), rows=st.sampled_from([16, 32, 64, 128]),
       groups=st.integers(1, 16), bits=st.sampled_from([4, 8]), chunk=st.sampled_from([16, 64, 256]))
def test_more_bandwidth_is_never_slower(tender_system: OutlierArraySystem, bw: float, factor: float, rows: int,
                                        groups: int, bits: int, chunk: int) -> None:
    hw = {**_hw(tender_system), "rows": rows, "groups": groups, "bits": bits, "chunk": chunk, "acc_bits": 64}
    lat = tender_system.evaluate({**hw, "hbm_bw_gbps": np.array([bw, bw * factor])}).metrics["latency_s"]
    assert lat[1] <= lat[0] * (1 + 1e-12)


@settings(max_examples=40, deadline=None)
@given(rows=st.integers(1, 128), cols=st.integers(1, 128), dr=st.integers(0, 32), dc=st.integers(0, 32),
       bits=st.sampled_from([4, 8]), pe=st.sampled_from(["ganged", "native"]))
def test_larger_array_never_has_less_area(tender_system: OutlierArraySystem, rows: int, cols: int, dr: int, dc: int,
                                          bits: int, pe: str) -> None:
    hw = {**_hw(tender_system), "bits": bits, "int8_pe": pe, "acc_bits": 64}
    # even sides: an INT8 design on ganged PEs needs them (2 x 2 gangs)
    area = tender_system.evaluate({**hw, "rows": 2 * np.array([rows, rows + dr]),
                                   "cols": 2 * np.array([cols, cols + dc])}).metrics["area_mm2"]
    assert np.all(np.isfinite(area))
    assert area[1] >= area[0]


@settings(max_examples=40, deadline=None)
@given(g=st.integers(1, 19), dg=st.integers(1, 8), rows=st.sampled_from([16, 64, 128]),
       chunk=st.sampled_from([16, 128, 256]), bits=st.sampled_from([4, 8]))
def test_larger_g_never_has_fewer_cycles(tender_system: OutlierArraySystem, g: int, dg: int, rows: int, chunk: int,
                                         bits: int) -> None:
    hw = {**_hw(tender_system), "rows": rows, "cols": rows, "chunk": chunk, "bits": bits, "acc_bits": 64,
          "hbm_bw_gbps": 1e9, "vpu_lanes": 1e9}
    lat = tender_system.evaluate({**hw, "groups": np.array([g, g + dg])}).metrics
    assert lat["latency_s"][1] >= lat["latency_s"][0]
    assert lat["bubble_share"][1] >= lat["bubble_share"][0]


def test_baselines_differ_only_by_mechanism(make_cfg: Callable[..., Config]) -> None:
    """Ordering on a compute-bound prefill: ANT < OLAccel < OliVe < Tender (calibrated mechanisms)."""
    lat = {}
    for name in ("ant", "olaccel", "olive", "tender"):
        s = OutlierArraySystem(make_cfg([f"system={name}", "model=opt_6_7b", "workload.prompt_len=2048",
                                         "workload.gen_len=1", "tech=7nm"]))
        lat[name] = s.evaluate({**dict(make_cfg([f"system={name}"]).system.hw), "quantize_attention": True}
                               ).metrics["latency_s"][0]
    assert lat["ant"] > lat["olaccel"] > lat["olive"] > lat["tender"]


def test_k_split_costs_one_fill_per_extra_slice_and_saves_hbm_bytes(tender_system: OutlierArraySystem) -> None:
    M, K, N = 2048, 4096, 4096
    ops = one_gemm(M, K, N)
    hw = dict(groups=1, chunk=4096, bits=4, scratchpad_kib=512, out_buf_kib=256)
    t = systolic.dram_traffic(M, K, N, 64, 64, "os", a_bytes=0.5, b_bytes=0.5, c_bytes=0.5, psum_bytes=4,
                              a_buf=256 * 1024, b_buf=256 * 1024, c_buf=256 * 1024, max_slice_overhead=0.1)
    assert t.k_slices > 1
    split = cycles_of(tender_system, ops, TENDER, kslice_max_overhead=0.1, **hw)
    full = cycles_of(tender_system, ops, TENDER, kslice_max_overhead=0.0, **hw)
    assert split - full == pytest.approx((M / 64) * (N / 64) * (t.k_slices - 1) * (64 + 64 - 2))
    assert split <= 1.1 * full
    dram = {o: T.evaluate(T.TenderDesign.from_mapping({**_hw(tender_system), **hw, "kslice_max_overhead": o}), ops,
                          tender_system.tech, TENDER)["energy_dram_j"][0] for o in (0.0, 0.1)}
    assert dram[0.1] < 0.8 * dram[0.0]


def test_ganged_int8_mac_energy_is_not_four_int4_pe_cycles(tender_system: OutlierArraySystem) -> None:
    # A 2x2 gang takes 4 PE-cycles per INT8 MAC but updates one accumulator (the other three are
    # idle), so its energy per MAC is well below 4x the INT4 MAC while its cycles are ~4x.
    ops = one_gemm(2048, 4096, 4096)
    hw = {**_hw(tender_system), "groups": 1, "chunk": 4096, "hbm_bw_gbps": 1e9, "vpu_lanes": 1e9}
    m = {b: T.evaluate(T.TenderDesign.from_mapping({**hw, "bits": b}), ops, tender_system.tech, PLAIN)
         for b in (4, 8)}
    assert 3.5 < m[8]["latency_s"][0] / m[4]["latency_s"][0] < 4.5
    assert 1.3 < m[8]["energy_mac_j"][0] / m[4]["energy_mac_j"][0] < 2.5


def test_accuracy_spec_describes_the_same_design(tender_system: OutlierArraySystem) -> None:
    for attention in (False, True):
        quant, kv = tender_system.accuracy_spec({**_hw(tender_system), "quantize_attention": attention})
        assert quant.quantize_attention is attention and kv is None


@pytest.mark.parametrize(("system", "field", "model"), [("ant", "int8_share", "opt_6_7b"), ("olive", "int8_share",
                                                          "llama2_7b"), ("olaccel", "outlier_ratio", "llama2_7b")])
def test_a_baseline_measures_its_own_method_at_its_cost_models_inputs(system: str, field: str, model: str) -> None:
    """A baseline's search measures its own quantisation (not Tender's), at the design's width, with the 8-bit
    share or outlier ratio its cost model charges (the model's measured input where it has one)."""
    cfg = to_config(compose_raw([f"system={system}", f"model={model}"]))
    sys_ = OutlierArraySystem(cfg)
    hw = dict(cfg.system.hw)
    quant, kv = sys_.accuracy_spec({**hw, "bits": 4})
    assert kv is None and quant.method == system and quant.bits == 4
    assert getattr(quant, field) == getattr(sys_.scheme, field) and getattr(sys_.scheme, field) > 0
    assert sys_.accuracy_spec({**hw, "bits": 8})[0].int8_share == 0.0  # at 8 bits every MAC is 8-bit already
    assert "int8_share" not in sys_.spec_inputs()["quant"] if field == "int8_share" else True
    off = to_config(compose_raw([f"system={system}", "system.quant_method=null"]))
    assert OutlierArraySystem(off).accuracy_spec(hw) is None and OutlierArraySystem(off).spec_inputs() == {}
    with pytest.raises(ConfigError, match="system.quant_method: 'tender' with system.mechanism.decomposed=0"):
        OutlierArraySystem(to_config(compose_raw([f"system={system}", "system.quant_method=tender"])))
    with pytest.raises(ConfigError, match="system.quant_method.*olive"):
        to_config(compose_raw([f"system={system}", "system.quant_method=olives"]))


def test_metadata_traffic_by_hand(tender_system: OutlierArraySystem) -> None:
    """Per chunk of 256 rows, Tender moves the channel order (K x ceil(log2 K) bits), the G split points,
    an FP16 tmax and an FP16 bias per channel, and an FP16 output correction per output channel:
    M=512, K=768, N=768, G=8: 2 x ((768 x 10 + 8 x 10) / 8 + 2 + 2 x 768) + 2 x 2 x 768 = 8088 bytes."""
    hw = {**_hw(tender_system), "bits": 4, "groups": 8, "chunk": 256, "rows": 64, "cols": 64}
    ops = one_gemm(512, 768, 768)
    design = T.TenderDesign.from_mapping(hw)
    tender = T.evaluate(design, ops, tender_system.tech, TENDER)["energy_dram_j"][0]
    plain = T.evaluate(design, ops, tender_system.tech, PLAIN)["energy_dram_j"][0]
    assert (tender - plain) / (tender_system.tech.dram_energy_pj_per_byte * 1e-12) == pytest.approx(8088, rel=1e-9)


def test_rescale_shift_energy_by_hand(tender_system: OutlierArraySystem) -> None:
    """Each of the G - 1 boundaries per output tile costs one bubble cycle in which every PE clocks its
    operand pipeline (two 4-bit operands + the rescale bit) and shifts its accumulator (acc_bits):
    M=512 (chunks of 256), N=768 on 64 x 64: 2 x 4 x 12 = 96 tiles, G=8: 672 bubbles."""
    hw = {**_hw(tender_system), "bits": 4, "chunk": 256, "rows": 64, "cols": 64, "acc_bits": 32, "g_eff": 0}
    ops, tech = one_gemm(512, 768, 768), tender_system.tech
    e = {g: T.evaluate(T.TenderDesign.from_mapping({**hw, "groups": g}), ops, tech, TENDER)["energy_mac_j"][0]
         for g in (1, 8)}
    per_bubble = 64 * 64 * (float(tech.register_energy_pj(9.0)) + float(tech.register_energy_pj(32.0)))
    assert (e[8] - e[1]) * 1e12 == pytest.approx(672 * per_bubble, rel=1e-9)


def test_ganged_int8_buffers_see_the_half_array(tender_system: OutlierArraySystem) -> None:
    """A ganged INT8 GEMM on R x C reads the scratchpad and the index buffer as an R/2 x C/2 array does:
    its buffer energy equals that of native 8-bit PEs on an R/2 x C/2 array (same buffers, same tiles)."""
    ops = one_gemm(512, 768, 768)
    hw = {**_hw(tender_system), "bits": 8, "groups": 8, "chunk": 256}
    ganged = T.evaluate(T.TenderDesign.from_mapping({**hw, "rows": 64, "cols": 64, "int8_pe": "ganged"}), ops,
                        tender_system.tech, TENDER)
    native = T.evaluate(T.TenderDesign.from_mapping({**hw, "rows": 32, "cols": 32, "int8_pe": "native"}), ops,
                        tender_system.tech, TENDER)
    assert ganged["energy_sram_j"][0] == pytest.approx(native["energy_sram_j"][0], rel=1e-12)
    on_64 = T.evaluate(T.TenderDesign.from_mapping({**hw, "rows": 64, "cols": 64, "int8_pe": "native"}), ops,
                       tender_system.tech, TENDER)
    assert ganged["energy_sram_j"][0] > 1.5 * on_64["energy_sram_j"][0]  # twice the panel re-reads


def test_index_buffer_reads_by_hand(tender_system: OutlierArraySystem) -> None:
    """One channel address (ceil(log2 K) bits) per reduction step of every fold: M=512 in chunks of 256,
    N=768 on 64 x 64 -> 2 x 4 x 12 = 96 folds x 768 x 10 bits = 92160 bytes from the index buffer."""
    ops, tech = one_gemm(512, 768, 768), tender_system.tech
    hw = {**_hw(tender_system), "bits": 4, "groups": 8, "chunk": 256, "rows": 64, "cols": 64, "hbm_bw_gbps": 1e9}
    sram = {s.name: T.evaluate(T.TenderDesign.from_mapping(hw), ops, tech, s)["energy_sram_j"][0]
            for s in (TENDER, PLAIN)}
    e_idx = float(tech.sram_read_pj_per_byte(hw["index_buf_kib"]))
    assert (sram["tender"] - sram["plain"]) * 1e12 == pytest.approx(96 * 768 * 10 / 8 * e_idx, rel=1e-9)


def test_k_split_lanes_are_in_the_area(tender_system: OutlierArraySystem) -> None:
    """Where the mapper may split K, each drain lane has an accumulate adder and (Tender) a barrel
    shifter of ceil(log2 G) stages: the area grows by exactly C such lanes."""
    tech = tender_system.tech
    hw = {**_hw(tender_system), "rows": 64, "cols": 64, "acc_bits": 32, "groups": 8}
    area = {k: float(T.array_area_mm2(tech, T.TenderDesign.from_mapping({**hw, "kslice_max_overhead": k}), TENDER)[0])
            for k in (0.0, 0.1)}
    lane = float(tech.int_add_area_um2(32.0) + 3 * tech.mux_area_um2(32.0))
    assert (area[0.1] - area[0.0]) * 1e6 == pytest.approx(64 * lane, rel=1e-9)


def test_olaccel_energy_mechanism_by_hand(tender_system: OutlierArraySystem) -> None:
    """OLAccel's outliers by its own description: sparse (16-bit value, ceil(log2 K)-bit index) lists fetched from
    HBM with every dense A / B fetch, outlier MACs (16 x 4-bit product, accumulator add and partial-sum update),
    and, when a stall does not gate the array clock, the held pipeline registers clocked in every stall cycle."""
    tech = tender_system.tech
    ops = one_gemm(256, 768, 768)  # A and B fit the scratchpad: each fetched once
    hw = {**_hw(tender_system), "bits": 4, "rows": 64, "cols": 64, "acc_bits": 32, "scratchpad_kib": 4096,
          "kslice_max_overhead": 0.0}
    design = T.TenderDesign.from_mapping(hw)
    base = T.Scheme(name="olaccel", outlier_ratio=0.03, outlier_stall_cycles=1.0, outlier_bits=16)
    ev = lambda s: T.evaluate(design, ops, tech, s)  # noqa: E731
    with_w = ev(replace(base, weight_outlier_ratio=0.02))
    plain = ev(base)
    entry = (16 + 10) / 8  # bytes per sparse outlier of a K = 768 operand
    extra_bytes = 0.02 * 768 * 768 * entry
    assert (with_w["energy_dram_j"][0] - plain["energy_dram_j"][0]) * 1e12 == pytest.approx(
        extra_bytes * tech.dram_energy_pj_per_byte, rel=1e-9)
    per_mac = float(tech.mult_energy_pj(8.0) + tech.int_add_energy_pj(32.0) + tech.register_energy_pj(32.0))
    mac_extra = 0.02 * 256 * 768 * 768 * per_mac * 1e-12
    assert with_w["energy_mac_j"][0] - plain["energy_mac_j"][0] == pytest.approx(mac_extra, rel=1e-9)
    ungated = ev(replace(base, stall_clock_gated=False))
    busy = 4 * 12 * (64 + 64 + 768 - 2) - 1  # folds x fold cycles (SCALE-Sim os)
    stalls = busy * (1 - 0.97 ** 64) * 1.0
    expected = stalls * 64 * 64 * float(tech.register_energy_pj(8.0)) * 1e-12  # two 4-bit operand registers
    assert ungated["energy_mac_j"][0] - plain["energy_mac_j"][0] == pytest.approx(expected, rel=1e-9)


def test_points_that_share_their_array_side_are_costed_once_and_exactly(tender_system: OutlierArraySystem) -> None:
    """The array side (every knob but the clock and the HBM bandwidth) is computed once per distinct design and timed
    per point: the metrics are bit for bit those of the array side computed for every point, equal to each point
    evaluated alone (to the last bits of a sum over GEMMs), and the breakdown still adds up."""
    rng = np.random.default_rng(11)
    n = 60
    hw = {**_hw(tender_system), "rows": rng.choice([16, 64], n), "groups": rng.choice([2, 8], n),
          "clock_ghz": rng.choice([0.5, 1.0, 1.5], n), "hbm_bw_gbps": rng.choice([25.0, 100.0, 400.0], n)}
    design = T.TenderDesign.from_mapping(hw)
    unique, inverse = T.distinct(design)
    assert len(unique) == 4 and np.array_equal(unique.rows[inverse], design.rows)
    ops, tech, scheme = tender_system.ops, tender_system.tech, tender_system.scheme
    together = T.evaluate(design, ops, tech, scheme)
    every_point = T._timed(T._array_side(design, ops, tech, scheme), np.arange(n), design, ops, tech, False)[0]
    for key, value in every_point.items():
        assert np.array_equal(together[key], value), key
    for i in range(0, n, 7):
        alone = T.evaluate(design.take(np.array([i])), ops, tech, scheme)
        for key, value in alone.items():
            assert together[key][i] == pytest.approx(value[0], rel=1e-14), key
    b = T.breakdown(design.take(np.array([3])), tender_system.ops, tender_system.tech, tender_system.scheme)
    total = b.per_op.latency_s.sum() + b.vector_latency_s.sum()
    assert total == pytest.approx(together["latency_s"][3], rel=1e-12)


def test_value_codes_fall_back_when_the_sample_misses_a_value() -> None:
    column = np.full(1000, 4.0)
    column[501] = 7.0  # not on the strided sample
    values, codes = value_codes(column)
    assert list(values) == [4.0, 7.0] and codes[501] == 1 and (np.delete(codes, 501) == 0).all()
    values, codes = value_codes(np.array([8.0, 4.0, 8.0]))
    assert list(values) == [4.0, 8.0] and list(codes) == [1, 0, 1]
