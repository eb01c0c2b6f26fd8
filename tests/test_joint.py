"""The joint Tender + InfiniGen system (cost side)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from dse.config import Config
from dse.systems.outlier_array import OutlierArraySystem
from dse.systems.tender_infinigen import TenderInfiniGenSystem
from workloads.accuracy.measured import ContextBucket, SelectionStats


@pytest.fixture
def joint(make_cfg: Callable[..., Config]) -> tuple[TenderInfiniGenSystem, dict]:
    cfg = make_cfg(["system=tender_infinigen", "model=opt_6_7b", "workload.prompt_len=1024", "workload.gen_len=64"])
    return TenderInfiniGenSystem(cfg), dict(cfg.system.hw)


def test_faster_host_link_is_never_slower(joint: tuple[TenderInfiniGenSystem, dict]) -> None:
    sys_, hw = joint
    m = sys_.evaluate({**hw, "host_link_gbps": np.array([4.0, 16.0, 64.0, 256.0]), "acc_bits": 40}).metrics
    assert np.all(np.diff(m["latency_s"]) <= 1e-12)
    assert np.all(np.diff(m["host_link_s"]) <= 1e-12)


def test_joint_costs_at_least_the_accelerator_alone(make_cfg: Callable[..., Config],
                                                   joint: tuple[TenderInfiniGenSystem, dict]) -> None:
    sys_, hw = joint
    hw = {**hw, "acc_bits": 40, "budget": 1.0, "k_scale": 1e6}  # select everything: attention is dense again
    joint_m = sys_.evaluate(hw).metrics
    cfg = make_cfg(["system=tender", "model=opt_6_7b", "workload.prompt_len=1024", "workload.gen_len=64",
                    f"workload.batch={hw['batch']}"])
    alone = OutlierArraySystem(cfg).evaluate({**cfg.system.hw, "acc_bits": 40}).metrics
    assert joint_m["latency_s"][0] > alone["latency_s"][0]
    assert joint_m["energy_j"][0] > alone["energy_j"][0]


def test_selection_reduces_link_traffic(joint: tuple[TenderInfiniGenSystem, dict]) -> None:
    sys_, hw = joint
    m = sys_.evaluate({**hw, "acc_bits": 40, "budget": np.array([0.05, 0.2, 1.0]), "k_scale": 100.0}).metrics
    assert np.all(np.diff(m["host_link_bytes"]) > 0)


def test_accuracy_spec_applies_both_algorithms(joint: tuple[TenderInfiniGenSystem, dict]) -> None:
    sys_, hw = joint
    quant, kv = sys_.accuracy_spec(hw)
    assert quant.method == "tender" and quant.bits == hw["bits"] and quant.groups == hw["groups"]
    assert kv.method == "infinigen" and kv.budget == hw["budget"] and kv.alpha == hw["alpha"]


def test_kv_cache_width_is_a_knob(joint: tuple[TenderInfiniGenSystem, dict]) -> None:
    """A KV cache stored at 4 bits moves a quarter of the FP16 bytes over the host link; it needs the
    attention to run on quantised K and V, which the measured accuracy then does too."""
    sys_, hw = joint
    hw = {**hw, "acc_bits": 40, "bits": 4}
    fp16 = sys_.evaluate({**hw, "kv_quantized": False}).metrics["host_link_bytes"][0]
    q = sys_.evaluate({**hw, "kv_quantized": True, "quantize_attention": True})
    assert q.invalid[0] == ""
    assert q.metrics["host_link_bytes"][0] == pytest.approx(fp16 / 4, rel=1e-12)
    bad = sys_.evaluate({**hw, "kv_quantized": True, "quantize_attention": False})
    assert "quantize_attention" in bad.invalid[0]
    quant, _ = sys_.accuracy_spec({**hw, "kv_quantized": True, "quantize_attention": True})
    assert quant.quantize_attention


def test_non_finite_measured_selection_is_an_error(joint: tuple[TenderInfiniGenSystem, dict]) -> None:
    sys_, hw = joint
    def selection(means: list[float]) -> SelectionStats:  # two buckets of 8 rows: middles 4.5 and 12.5
        return SelectionStats(1.0, (ContextBucket(1, 8, means[0]), ContextBucket(9, 16, means[1])), {2: 1.0})

    with pytest.raises(ValueError, match="not finite"):
        sys_.evaluate({**hw, "acc_bits": 40}, selection([0.45, float("nan")]))
    measured = sys_.evaluate({**hw, "acc_bits": 40}, selection([0.225, 0.625]))  # 5 % of the context in each
    table = sys_.evaluate({**hw, "acc_bits": 40})
    assert measured.metrics["mean_selected_tokens"][0] != table.metrics["mean_selected_tokens"][0]


def test_the_exposed_transfer_sum_is_the_per_step_sum() -> None:
    from cost_models.joint import excess_sum

    rng = np.random.default_rng(5)
    k = rng.integers(0, 400, 127).astype(float)
    g, window = rng.uniform(1e-7, 1e-5, 50), rng.uniform(0, 2e-3, 50)
    direct = np.maximum(0.0, g[:, None] * k[None, :] - window[:, None]).sum(axis=1)
    np.testing.assert_allclose(excess_sum(g, k, window), direct, rtol=1e-12, atol=1e-18)
    assert (excess_sum(np.full(3, 1e-9), k, np.full(3, 1.0)) == 0).all()  # everything hidden
