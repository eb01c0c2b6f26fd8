"""Offloading model: FlexGen/H2O/INT4/InfiniGen traffic, reductions, monotonicity and capacity."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cost_models import offload
from dse.config import Config, ConfigError
from dse.objectives import assess
from dse.systems.offload import OffloadSystem

OPT13 = ["model=opt_13b", "workload.prompt_len=1920", "workload.gen_len=128"]


def system(make_cfg: Callable[..., Config], name: str, *extra: str) -> tuple[OffloadSystem, dict]:
    cfg = make_cfg([f"system={name}", *OPT13, *extra])
    return OffloadSystem(cfg), dict(cfg.system.hw)


def test_infinigen_without_speculation_is_flexgen(make_cfg: Callable[..., Config]) -> None:
    flex, hw = system(make_cfg, "flexgen")
    ig, hw_ig = system(make_cfg, "infinigen")
    ig.scheme = dataclasses.replace(ig.scheme, dense_layers=ig.shape.layers)  # every layer loads all KV
    a = flex.evaluate({**hw, "budget": 1.0}).metrics
    b = ig.evaluate({**hw_ig, "budget": 1.0}).metrics
    for key in ("latency_s", "prefill_latency_s", "decode_latency_s", "h2d_bytes", "transfer_share"):
        assert b[key][0] == pytest.approx(a[key][0], rel=1e-12), key


def test_flexgen_decode_traffic_by_hand(make_cfg: Callable[..., Config]) -> None:
    flex, hw = system(make_cfg, "flexgen")
    m = flex.evaluate(hw).metrics
    L, D, b = 40, 5120, 8
    e = 4 * D  # fp16 K and V per token per layer
    decode = sum(L * e * b * (1920 + t) for t in range(1, 128))
    assert m["h2d_bytes"][0] == pytest.approx(decode)
    # Without overlap every step waits for its KV: the decode time moves by the KV transfer time, L e b n_t
    # bytes per step over the host-to-device link, when that link's bandwidth changes (12 -> 24 GB/s).
    dec = {bw: flex.evaluate({**hw, "overlap": 0, "pcie_h2d_gbps": bw}).metrics["decode_latency_s"][0]
           for bw in (12.0, 24.0)}
    kv_bytes = sum(L * e * b * (1920 + t) for t in range(1, 128))
    assert dec[12.0] - dec[24.0] == pytest.approx(kv_bytes * (1 / 12e9 - 1 / 24e9), rel=1e-9)


def test_h2o_and_infinigen_traffic_by_hand(make_cfg: Callable[..., Config]) -> None:
    h2o, hw = system(make_cfg, "h2o")
    m = h2o.evaluate(hw).metrics
    e, b, L = 4 * 5120, 8, 40
    kept = int(0.2 * 1920)  # the reference runtime keeps 2 x hh_ratio x prompt rows (budget_base: prompt): 384
    assert m["h2d_bytes"][0] == pytest.approx(sum(L * e * b * min(1920 + t, kept) for t in range(1, 128)))
    k_h = int(0.2 * 2048)  # InfiniGen's cap K_max = (prompt + gen) / 5 = 409
    ig, hw_ig = system(make_cfg, "infinigen")
    mi = ig.evaluate(hw_ig).metrics
    k = offload.selected_tokens(ig.scheme, np.array([1920.0 + t for t in range(1, 128)]), np.ones(1))
    expected = sum(e * b * (2 * (1920 + t) + 38 * min(kk, k_h)) for t, kk in zip(range(1, 128), k, strict=True))
    assert mi["h2d_bytes"][0] == pytest.approx(expected)
    assert offload.selected_tokens(ig.scheme, np.array([2048.0]), np.ones(1))[0] == pytest.approx(73)
    assert offload.selected_tokens(ig.scheme, np.array([1280.0]), np.ones(1))[0] == pytest.approx(63)


def test_int4_moves_0_28125_of_the_bytes(make_cfg: Callable[..., Config]) -> None:
    flex, hw = system(make_cfg, "flexgen")
    int4, hw4 = system(make_cfg, "int4kv")
    assert int4.evaluate(hw4).metrics["h2d_bytes"][0] == pytest.approx(
        0.28125 * flex.evaluate(hw).metrics["h2d_bytes"][0])


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(bw=st.floats(2, 64), factor=st.floats(1, 10), batch=st.integers(1, 32),
       name=st.sampled_from(["flexgen", "h2o", "int4kv", "infinigen"]), overlap=st.sampled_from([0, 1]))
def test_more_pcie_bandwidth_is_never_slower(make_cfg: Callable[..., Config], bw: float, factor: float, batch: int,
                                             name: str, overlap: int) -> None:
    sys_, hw = system(make_cfg, name)
    m = sys_.evaluate({**hw, "batch": batch, "overlap": overlap, "pcie_h2d_gbps": np.array([bw, bw * factor]),
                       "pcie_d2h_gbps": np.array([bw, bw * factor])}).metrics
    assert m["latency_s"][1] <= m["latency_s"][0] * (1 + 1e-12)


def test_exceeding_gpu_memory_is_infeasible(make_cfg: Callable[..., Config]) -> None:
    sys_, hw = system(make_cfg, "flexgen")
    ev = sys_.evaluate({**hw, "kv_gpu": np.array([0.0, 1.0]), "batch": 20})  # Fig. 14 runs b = 20 with KV on the CPU
    assert ev.metrics["gpu_mem_headroom_gb"][0] > 0 > ev.metrics["gpu_mem_headroom_gb"][1]
    results = assess(ev, {"tokens_per_s": "maximize"}, sys_.intrinsic_constraints)
    assert results[0].feasible and not results[1].feasible


def test_platform_presets_and_search(make_cfg: Callable[..., Config], tmp_path) -> None:
    from dse.app import run_search

    for platform in ("a6000_pcie3", "a100_pcie4", "h100_pcie5"):
        sys_, hw = system(make_cfg, "infinigen", f"platform@system.hw={platform}")
        assert np.isfinite(sys_.evaluate(hw).metrics["tokens_per_s"][0])
    summary = run_search(make_cfg(["system=infinigen", *OPT13, "search.n_trials=20", "search.progress=false"]),
                         tmp_path)
    assert summary["objectives"] == {"tokens_per_s": "maximize", "energy_per_token_j": "minimize",
                                     "gpu_mem_gb": "minimize"}
    assert summary["pareto_size"] > 0


def test_infinigen_cpu_gather_time_by_hand(make_cfg: Callable[..., Config]) -> None:
    """Sparse layers gather the selected rows on the CPU (read + write, 2 e b k_t bytes at gather_gbps) before
    the prefetch; when the gather is far longer than the FFN window it hides behind, all of it is exposed, so
    the decode time moves by (L - dense) x sum over steps of 2 e b k_t (1/g1 - 1/g2)."""
    ig, hw = system(make_cfg, "infinigen")
    L, D, b, dense = 40, 5120, 8, 2  # OPT-13B, the paper's batch, layers 0-1 dense
    e = 4 * D
    n = 1920 + np.arange(1, 128, dtype=float)
    k = np.minimum(offload.selected_tokens(ig.scheme, n, np.asarray(1.0)), np.floor(0.2 * 2048))
    decode = {}
    for gbps in (1.0, 2.0):  # 1-2 GB/s: ~10-20 ms per layer, against a FFN window of ~0.5 ms
        ig.scheme = dataclasses.replace(ig.scheme, gather_gbps=gbps)
        decode[gbps] = ig.evaluate({**hw, "batch": b}).metrics["decode_latency_s"][0]
    expected = (L - dense) * (2 * e * b * k).sum() * (1 / 1e9 - 1 / 2e9)
    assert decode[1.0] - decode[2.0] == pytest.approx(expected, rel=1e-9)


def test_selecting_schemes_host_work_by_hand(make_cfg: Callable[..., Config]) -> None:
    """Host ops and synchronisations a selecting scheme adds are exposed once per selecting layer and decode
    step: InfiniGen's 38 sparse layers x 127 steps, H2O's 40 layers x 127 steps (each drains the GPU queue)."""
    for name, layers in (("infinigen", 38), ("h2o", 40)):
        sys_, hw = system(make_cfg, name)
        base = sys_.scheme
        dec = {}
        for ops in (0.0, 100.0):
            sys_.scheme = dataclasses.replace(base, select_host_ops=ops)
            dec[ops] = sys_.evaluate(hw).metrics["decode_latency_s"][0]
        assert dec[100.0] - dec[0.0] == pytest.approx(layers * 127 * 100 * base.host_op_s, rel=1e-9)
        sys_.scheme = dataclasses.replace(base, select_host_syncs=0.0, select_host_ops=0.0)
        bare = sys_.evaluate(hw).metrics["decode_latency_s"][0]
        assert dec[0.0] - bare == pytest.approx(layers * 127 * base.select_host_syncs * base.host_sync_s, rel=1e-9)


def test_staging_copy_by_hand(make_cfg: Callable[..., Config]) -> None:
    """The reference runtime relays every load from its unpinned CPU cache through pinned host memory before
    the H2D copy (FlexGen: pin_memory(); H2O: its prefetch buffer): read + write of the moved bytes at the
    CPU memory bandwidth, in series, per layer and step. FlexGen moves e b n_t on all 40 layers, H2O e b K_H
    (K_H = 0.2 x 1920 = 384), InfiniGen the full KV on its 2 dense layers only (the selected rows are gathered
    straight into the pinned buffer)."""
    e, b, L = 4 * 5120, 8, 40
    n = 1920 + np.arange(1, 128, dtype=float)
    moved = {"flexgen": L * e * b * n.sum(), "h2o": L * 127 * e * b * 384, "infinigen": 2 * e * b * n.sum()}
    for name, bytes_moved in moved.items():
        sys_, hw = system(make_cfg, name)
        dec = {}
        for staging in (False, True):
            sys_.scheme = dataclasses.replace(sys_.scheme, staging_copy=staging)
            dec[staging] = sys_.evaluate(hw).metrics["decode_latency_s"][0]
        assert dec[True] - dec[False] == pytest.approx(2 * bytes_moved / (hw["cpu_mem_bw_gbps"] * 1e9), rel=1e-9)


def test_a_range_must_hold_its_value(make_cfg: Callable[..., Config]) -> None:
    with pytest.raises(ConfigError, match=r"system.mechanism.gather_gbps.range: \[1.0, 2.0\] does not contain"):
        make_cfg(["system=infinigen", "system.mechanism.gather_gbps.range=[1.0,2.0]"])
    with pytest.raises(ConfigError, match="low 5.0 > high 1.0"):
        make_cfg(["system=infinigen", "system.mechanism.host_op_s.range=[5.0,1.0]"])


def test_an_unknown_budget_base_is_a_configuration_error(make_cfg: Callable[..., Config]) -> None:
    with pytest.raises(ConfigError, match=r"system.mechanism.budget_base.*'prompt'"):
        system(make_cfg, "h2o", "system.mechanism.budget_base.value=tokens")


@pytest.mark.parametrize(("model", "head_dim"), [("opt_6_7b", 128), ("smollm2_135m", 64)])
def test_measured_speculation_keeps_the_targets_column_count(make_cfg: Callable[..., Config], model: str,
                                                            head_dim: int) -> None:
    """The accuracy measured for a design point keeps r x the target's head_dim partial columns (the speculation
    the cost model charges for) and takes the speculation variant from kv.*."""
    cfg = make_cfg(["system=infinigen", f"model={model}", "kv.skew_per=query_head"])
    sys_ = OffloadSystem(cfg)
    point = {**cfg.system.hw, "partial_ratio": 0.2, "alpha": 6.0, "budget": 0.3}
    _, kv = sys_.accuracy_spec(point)
    assert kv.method == "infinigen" and kv.alpha == 6.0 and kv.budget == 0.3
    assert kv.partial_cols == round(0.2 * head_dim)
    assert kv.skew_per == "query_head" and kv.spec_input == cfg.kv.spec_input and not kv.report


def test_int4_cache_is_measured_as_it_is_moved(make_cfg: Callable[..., Config]) -> None:
    """system=int4kv measures accuracy over the same compressed cache whose bytes it moves: 4-bit codes plus an
    FP16 min and scale per group of 64 is the byte ratio of its mechanism."""
    cfg = make_cfg(["system=int4kv"])
    sys_ = OffloadSystem(cfg)
    _, kv = sys_.accuracy_spec(dict(cfg.system.hw))
    assert kv.method == "dense" and kv.active and (kv.cache_bits, kv.cache_group) == (4, 64)
    bits, group = sys_.scheme.cache_bits, sys_.scheme.cache_group
    assert sys_.scheme.int4_bytes_ratio == pytest.approx((bits * group + 2 * 16) / (16 * group), rel=1e-12)
