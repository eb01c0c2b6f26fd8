"""Model shape + workload -> the list of GEMMs and KV-cache traffic that run on the hardware.

Conventions (stated once, used by every cost model):

* ``prompt_len`` tokens are processed by one prefill pass, which also yields the first generated
  token; the remaining ``gen_len - 1`` tokens come from decode steps (FlexGen's convention).
  Decode step j = 1 .. gen_len-1 feeds the token at position ``prompt_len + j - 1`` and attends to
  ``prompt_len + j`` keys (all past tokens plus itself).
* Every linear layer is a GEMM ``(M, K, N)``: activations ``M x K`` times weights ``K x N``.
* Attention is mapped per (layer, sequence, KV head): the ``heads / kv_heads`` query heads that share
  one K/V head are stacked along M (grouped-query attention). Score: ``(n_rep*q, head_dim, ctx)``;
  context: ``(n_rep*q, ctx, head_dim)``. Prefill computes the full ``P x P`` score matrix (a dense
  systolic array does not skip the causal upper triangle).
* The LM head runs once per sequence per step on the last position only (what generation needs).
* Decode attention can be summarised by ``decode_ctx_samples`` segments of consecutive steps, each
  represented by its mean context length with the segment's step count (FLOPs and KV traffic stay
  exact because they are linear in the context; ceil-quantised cycle counts become a midpoint
  estimate). ``decode_ctx_samples = 0`` keeps one operator per step (exact).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from workloads.shapes import ModelShape


class Phase(IntEnum):
    PREFILL = 0
    DECODE = 1


MAX_CONTEXT = 1 << 20
MAX_BATCH = 4096


@dataclass(frozen=True)
class WorkloadSpec:
    """Batch, prompt and generated lengths. Bounds: a context (prompt + generated) of at most 2^20 tokens,
    beyond the longest context of every model preset and of the papers' runs (2048), and a batch of at most
    4096 sequences, beyond any published serving batch; above them a typo (``gen_len=1e9``) would only stall
    the start-up building operator lists and per-step arrays."""

    batch: int
    prompt_len: int
    gen_len: int
    decode_ctx_samples: int = 8
    include_lm_head: bool = True

    def __post_init__(self) -> None:
        if self.batch < 1:
            raise ValueError(f"workload.batch must be >= 1, got {self.batch}")
        if self.prompt_len < 1:
            raise ValueError(f"workload.prompt_len must be >= 1, got {self.prompt_len}")
        if self.gen_len < 1:
            raise ValueError(f"workload.gen_len must be >= 1, got {self.gen_len}")
        if self.prompt_len + self.gen_len > MAX_CONTEXT:
            raise ValueError(f"workload.prompt_len + workload.gen_len must be <= {MAX_CONTEXT} tokens (2^20), got "
                             f"{self.prompt_len + self.gen_len}")
        if self.batch > MAX_BATCH:
            raise ValueError(f"workload.batch must be <= {MAX_BATCH}, got {self.batch}")
        if self.decode_ctx_samples < 0:
            raise ValueError(f"workload.decode_ctx_samples must be >= 0, got {self.decode_ctx_samples}")

    @property
    def decode_steps(self) -> int:
        return self.gen_len - 1


@dataclass(frozen=True)
class GemmOps:
    """Struct of arrays: one entry per distinct GEMM shape, executed ``count`` times in total."""

    names: tuple[str, ...]
    kinds: tuple[str, ...]  # linear | lm_head | attn_score | attn_context
    phase: np.ndarray  # Phase per op
    M: np.ndarray
    K: np.ndarray
    N: np.ndarray
    count: np.ndarray
    weight_operand: np.ndarray  # True where B is a static weight, False where it is K or V
    kv_read_elems: np.ndarray  # per phase: KV-cache elements read from memory
    kv_write_elems: np.ndarray  # per phase: KV-cache elements written
    tokens: np.ndarray  # per phase: tokens processed (batch x positions)
    generated_tokens: int  # batch x gen_len (prefill yields the first one)
    input_share: np.ndarray  # 1 / number of GEMMs reading the same activation (q/k/v: 1/3, gate/up: 1/2)
    norm_elems: np.ndarray  # per phase: elements normalised (2 norms per layer + the final one)
    act_elems: np.ndarray  # per phase: MLP activation-function elements (SiLU x up, or ReLU)
    softmax_elems: np.ndarray  # per phase: attention-probability elements

    def __len__(self) -> int:
        return len(self.names)

    def flops(self) -> np.ndarray:
        return 2.0 * self.M * self.K * self.N * self.count

    def kv_bytes(self, bits: int) -> tuple[np.ndarray, np.ndarray]:
        """KV-cache bytes (read, written) per phase at ``bits`` per element."""
        return self.kv_read_elems * bits / 8.0, self.kv_write_elems * bits / 8.0

    def mask(self, phase: Phase | None = None, kind: str | None = None) -> np.ndarray:
        m = np.ones(len(self), dtype=bool)
        if phase is not None:
            m &= self.phase == int(phase)
        if kind is not None:
            m &= np.array([k == kind for k in self.kinds], dtype=bool)
        return m


_SHARED_INPUT = {"q_proj": 3, "k_proj": 3, "v_proj": 3, "gate_proj": 2, "up_proj": 2}


def _linear_layers(shape: ModelShape) -> list[tuple[str, int, int]]:
    """(name, K, N) of every linear layer in one block."""
    d = shape.hidden
    layers = [
        ("q_proj", d, shape.q_dim),
        ("k_proj", d, shape.kv_dim),
        ("v_proj", d, shape.kv_dim),
        ("o_proj", shape.q_dim, d),
    ]
    if shape.gated_mlp:
        layers += [("gate_proj", d, shape.ffn), ("up_proj", d, shape.ffn), ("down_proj", shape.ffn, d)]
    else:
        layers += [("fc1", d, shape.ffn), ("fc2", shape.ffn, d)]
    return layers


def _decode_segments(spec: WorkloadSpec) -> list[tuple[float, int]]:
    """(mean context length, number of steps) for each summarised run of decode steps."""
    steps = np.arange(1, spec.decode_steps + 1)
    if steps.size == 0:
        return []
    n_seg = steps.size if spec.decode_ctx_samples == 0 else min(spec.decode_ctx_samples, steps.size)
    return [
        (float(np.mean(spec.prompt_len + seg)), int(seg.size))
        for seg in np.array_split(steps, n_seg)
    ]


def build_operators(shape: ModelShape, spec: WorkloadSpec) -> GemmOps:
    """The operator list for the whole workload: one prefill pass plus all decode steps."""
    rows: list[tuple[str, str, Phase, float, float, float, float, bool]] = []
    b, P, steps = spec.batch, spec.prompt_len, spec.decode_steps
    n_rep, hd = shape.queries_per_kv_head, shape.head_dim
    attn_count = shape.layers * b * shape.kv_heads

    # Prefill.
    for name, k, n in _linear_layers(shape):
        rows.append((f"prefill.{name}", "linear", Phase.PREFILL, b * P, k, n, shape.layers, True))
    rows.append(("prefill.attn_score", "attn_score", Phase.PREFILL, n_rep * P, hd, P, attn_count, False))
    rows.append(("prefill.attn_context", "attn_context", Phase.PREFILL, n_rep * P, P, hd, attn_count, False))
    if spec.include_lm_head:
        rows.append(("prefill.lm_head", "lm_head", Phase.PREFILL, b, shape.hidden, shape.vocab, 1, True))

    # Decode.
    if steps > 0:
        for name, k, n in _linear_layers(shape):
            rows.append((f"decode.{name}", "linear", Phase.DECODE, b, k, n, shape.layers * steps, True))
        for i, (ctx, n_steps) in enumerate(_decode_segments(spec)):
            cnt = attn_count * n_steps
            rows.append((f"decode.attn_score[{i}]", "attn_score", Phase.DECODE, n_rep, hd, ctx, cnt, False))
            rows.append((f"decode.attn_context[{i}]", "attn_context", Phase.DECODE, n_rep, ctx, hd, cnt, False))
        if spec.include_lm_head:
            rows.append(("decode.lm_head", "lm_head", Phase.DECODE, b, shape.hidden, shape.vocab, steps, True))

    per_token_kv = 2 * shape.layers * shape.kv_dim  # K and V, every layer
    past_tokens_read = sum(P + j - 1 for j in range(1, steps + 1))  # closed form would hide the convention
    kv_read = np.array([0.0, float(b * per_token_kv * past_tokens_read)])
    kv_write = np.array([float(b * per_token_kv * P), float(b * per_token_kv * steps)])

    names, kinds, phase, M, K, N, count, weight = zip(*rows, strict=True)
    share = [1.0 / _SHARED_INPUT.get(n.split(".")[-1], 1) for n in names]
    tokens = np.array([float(b * P), float(b * steps)])
    score_elems = np.array([
        sum(m * n * c for m, n, c, k, ph in zip(M, N, count, kinds, phase, strict=True)
            if k == "attn_score" and ph == p) for p in (Phase.PREFILL, Phase.DECODE)
    ], dtype=np.float64)
    return GemmOps(
        names=tuple(names),
        kinds=tuple(kinds),
        phase=np.array([int(p) for p in phase], dtype=np.int8),
        M=np.array(M, dtype=np.float64),
        K=np.array(K, dtype=np.float64),
        N=np.array(N, dtype=np.float64),
        count=np.array(count, dtype=np.float64),
        weight_operand=np.array(weight, dtype=bool),
        kv_read_elems=kv_read,
        kv_write_elems=kv_write,
        tokens=tokens,
        generated_tokens=b * spec.gen_len,
        input_share=np.array(share, dtype=np.float64),
        norm_elems=tokens * shape.hidden * (2 * shape.layers + 1),
        act_elems=tokens * shape.ffn * shape.layers,
        softmax_elems=score_elems,
    )
