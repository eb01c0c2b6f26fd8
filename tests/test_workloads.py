"""Operator lists: FLOPs against parameter counts, attention and KV closed forms, presets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from dse.config import CONF_DIR, ModelConfig
from workloads import ModelShape, Phase, WorkloadSpec, build_operators

PRESETS = sorted(p.stem for p in (CONF_DIR / "model").glob("*.yaml"))


def shape_of(name: str) -> ModelShape:
    data = yaml.safe_load((CONF_DIR / "model" / f"{name}.yaml").read_text())
    return ModelConfig(**data).to_shape()


def test_all_requested_presets_exist() -> None:
    for name in ("smollm2_135m", "opt_6_7b", "opt_13b", "opt_66b", "llama2_7b", "llama2_13b", "llama2_70b"):
        assert name in PRESETS


def test_parameter_counts_match_published_sizes() -> None:
    # Non-embedding linear weights, worked by hand from the configs:
    # Llama-2-7B: 32 x (4 x 4096^2 + 3 x 4096 x 11008); + 2 x 32000 x 4096 embeddings = 6.74 B.
    assert shape_of("llama2_7b").non_embedding_linear_params() == 6_476_005_376
    # SmolLM2-135M: 30 x (2 x 576^2 + 2 x 576 x 192 + 3 x 576 x 1536); + 49152 x 576 tied = 134.5 M.
    assert shape_of("smollm2_135m").non_embedding_linear_params() == 106_168_320
    # OPT-13B: 40 x (4 x 5120^2 + 2 x 5120 x 20480) = 12.58 B (+ embeddings, biases -> 12.85 B).
    assert shape_of("opt_13b").non_embedding_linear_params() == 12_582_912_000


@pytest.mark.parametrize("name", PRESETS)
@pytest.mark.parametrize(("batch", "prompt", "gen"), [(1, 512, 128), (4, 100, 1), (3, 37, 20)])
def test_linear_flops_are_twice_params_times_tokens(name: str, batch: int, prompt: int, gen: int) -> None:
    shape = shape_of(name)
    ops = build_operators(shape, WorkloadSpec(batch, prompt, gen))
    params = shape.non_embedding_linear_params()
    for phase, tokens in ((Phase.PREFILL, batch * prompt), (Phase.DECODE, batch * (gen - 1))):
        flops = ops.flops()[ops.mask(phase, "linear")].sum()
        assert flops == 2 * params * tokens


@pytest.mark.parametrize("name", PRESETS)
@pytest.mark.parametrize("samples", [0, 1, 5])
def test_attention_matches_closed_form(name: str, samples: int) -> None:
    shape = shape_of(name)
    b, P, g = 2, 300, 41
    ops = build_operators(shape, WorkloadSpec(b, P, g, decode_ctx_samples=samples))
    L, H, hd = shape.layers, shape.heads, shape.head_dim
    pre = 2 * L * b * H * P * P * hd  # each of QK^T and PV, full P x P
    ctx_sum = sum(P + j for j in range(1, g))  # decode step j attends to P + j keys
    dec = 2 * L * b * H * hd * ctx_sum
    f = ops.flops()
    for kind in ("attn_score", "attn_context"):
        assert f[ops.mask(Phase.PREFILL, kind)].sum() == pre
        assert f[ops.mask(Phase.DECODE, kind)].sum() == pytest.approx(dec, rel=1e-12)
    # KV cache: every layer writes K and V per token and decode re-reads the past context.
    per_tok = 2 * L * shape.kv_heads * hd
    np.testing.assert_array_equal(ops.kv_write_elems, [b * P * per_tok, b * (g - 1) * per_tok])
    assert ops.kv_read_elems[1] == b * per_tok * sum(P + j - 1 for j in range(1, g))
    read, written = ops.kv_bytes(bits=16)
    assert written[0] == b * P * per_tok * 2


def test_exact_decode_has_one_operator_per_step() -> None:
    ops = build_operators(shape_of("smollm2_135m"), WorkloadSpec(1, 16, 9, decode_ctx_samples=0))
    assert ops.mask(Phase.DECODE, "attn_score").sum() == 8
    assert sorted(ops.N[ops.mask(Phase.DECODE, "attn_score")]) == list(range(17, 25))


def test_gqa_stacks_query_heads_on_m() -> None:
    shape = shape_of("llama2_70b")  # 64 query heads, 8 KV heads
    ops = build_operators(shape, WorkloadSpec(1, 128, 2))
    i = ops.names.index("prefill.attn_score")
    assert (ops.M[i], ops.K[i], ops.N[i]) == (8 * 128, 128, 128)
    assert ops.count[i] == 80 * 1 * 8


def test_bad_shape_and_workload_are_rejected() -> None:
    with pytest.raises(ValueError, match="kv_heads"):
        ModelShape("x", 64, 2, 6, 4, 16, 128, True, 100)
    with pytest.raises(ValueError, match="workload.gen_len"):
        WorkloadSpec(1, 10, 0)


def test_presets_cite_a_source() -> None:
    for name in PRESETS:
        data = yaml.safe_load((Path(CONF_DIR) / "model" / f"{name}.yaml").read_text())
        assert data["source"].strip()
