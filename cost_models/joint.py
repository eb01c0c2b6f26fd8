"""The joint design: the Tender accelerator as the compute device of offloaded inference, with the KV
cache in host memory behind a host link and InfiniGen's speculative prefetch.

Composition (stated):
* weights stay in the accelerator's HBM; the KV cache lives in host memory;
* decode attention of layers < ``dense_layers`` runs over the full context, later layers over the k_t
  selected tokens plus the current one (k_t from the selected-token table, capped at budget (s + gen));
  the speculation adds, per sparse layer and step, a partial-W_Q GEMV (b x D x rD) and partial-key
  scores (per KV head: n_rep x rD x n_t) on the array;
* all of these run through the Tender cost model (cost_models/tender.py) as extra/modified GEMMs;
* host link per decode step: dense layers load e b n_t each (exposed), sparse layers e b k_t after a
  host-side gather, hidden behind the previous layer's FFN time (only the excess is exposed); the new
  token's KV (e b per layer) is written back; prefill writes the prompt's KV; e = 2 x kv_dim x b_kv/8;
* the accelerator's HBM holds the weights (at the operand width) and InfiniGen's partial keys.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from cost_models import tender
from cost_models.design import combination_codes, evaluate_valid, first_failure
from cost_models.metrics import with_derived
from cost_models.offload import OffloadScheme, selected_tokens
from cost_models.tech import Tech
from workloads.operators import GemmOps, Phase, WorkloadSpec, build_operators
from workloads.shapes import ModelShape

GB = 1e9


def _with_selection(ops: GemmOps, shape: ModelShape, k: np.ndarray, dense_layers: int, partial_ratio: float,
                    batch: int) -> GemmOps:
    """Decode attention split into dense layers (full context) and sparse ones (k + 1 keys), plus the
    speculation GEMMs of the sparse layers."""
    L = shape.layers
    sparse_share = max(L - dense_layers, 0) / L
    rows: dict[str, list[Any]] = {f.name: [] for f in dataclasses.fields(GemmOps) if f.name in (
        "names", "kinds", "phase", "M", "K", "N", "count", "weight_operand", "input_share")}
    seg = 0
    for i, name in enumerate(ops.names):
        is_dec_attn = ops.phase[i] == int(Phase.DECODE) and ops.kinds[i].startswith("attn")
        parts = [(name, ops.M[i], ops.K[i], ops.N[i], ops.count[i])]
        if is_dec_attn:
            kk = float(k[seg]) + 1.0
            if ops.kinds[i] == "attn_score":
                parts = [(name + ".dense", ops.M[i], ops.K[i], ops.N[i], ops.count[i] * (1 - sparse_share)),
                         (name + ".sparse", ops.M[i], ops.K[i], kk, ops.count[i] * sparse_share)]
                rD = max(1.0, round(partial_ratio * shape.head_dim))
                steps = ops.count[i] / (L * batch * shape.kv_heads)
                parts.append((name + ".speculate", ops.M[i], rD, ops.N[i], ops.count[i] * sparse_share))
                parts.append((name.replace("attn_score", "speculate_q"), batch, shape.hidden, rD * shape.heads,
                              steps * (L - dense_layers)))
            else:
                parts = [(name + ".dense", ops.M[i], ops.K[i], ops.N[i], ops.count[i] * (1 - sparse_share)),
                         (name + ".sparse", ops.M[i], kk, ops.N[i], ops.count[i] * sparse_share)]
                seg += 1
        for pname, m, kdim, n, c in parts:
            rows["names"].append(pname)
            rows["kinds"].append("linear" if "speculate_q" in pname else ops.kinds[i])
            rows["phase"].append(ops.phase[i])
            rows["M"].append(m)
            rows["K"].append(kdim)
            rows["N"].append(n)
            rows["count"].append(c)
            rows["weight_operand"].append(ops.weight_operand[i])
            rows["input_share"].append(ops.input_share[i])
    return dataclasses.replace(
        ops, names=tuple(rows["names"]), kinds=tuple(rows["kinds"]), phase=np.array(rows["phase"], dtype=np.int8),
        M=np.array(rows["M"], float), K=np.array(rows["K"], float), N=np.array(rows["N"], float),
        count=np.array(rows["count"], float), weight_operand=np.array(rows["weight_operand"]),
        input_share=np.array(rows["input_share"], float))


def decode_contexts(spec: WorkloadSpec) -> np.ndarray:
    """Mean context of each summarised decode segment (the workload's convention)."""
    from workloads.operators import _decode_segments

    return np.array([ctx for ctx, _ in _decode_segments(spec)])


#: knobs of the joint design beyond the Tender accelerator's
EXTRA_KNOBS = ("batch", "budget", "alpha", "partial_ratio", "k_scale", "host_link_gbps", "host_pj_per_byte", "hbm_gb",
               "kv_quantized")


@dataclass(frozen=True)
class JointDesign:
    """Design points of the joint system: the accelerator (``TenderDesign``) and the offloading knobs."""

    accel: tender.TenderDesign
    extra: dict[str, np.ndarray]

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> JointDesign:
        missing = [k for k in EXTRA_KNOBS if k not in values]
        if missing:
            raise KeyError(f"design point lacks {missing}")
        extra = {k: np.atleast_1d(np.asarray(values[k], dtype=np.float64)) for k in EXTRA_KNOBS}
        accel = tender.TenderDesign.from_mapping(values)
        n = np.broadcast_shapes((len(accel),), *(v.shape for v in extra.values()))
        if n != (len(accel),):
            accel = accel.take(np.zeros(n[0], dtype=np.int64))  # one accelerator for every offloading point
        return cls(accel, {k: np.broadcast_to(v, n) for k, v in extra.items()})

    def __len__(self) -> int:
        return len(self.accel)

    def take(self, idx: np.ndarray) -> JointDesign:
        return JointDesign(self.accel.take(idx), {k: v[idx] for k, v in self.extra.items()})

    def invalid_reason(self) -> np.ndarray:
        x = self.extra
        accel = self.accel.invalid_reason()
        extra = first_failure(len(self), [
            (x["batch"] < 1, "batch < 1"),
            ((x["budget"] <= 0) | (x["budget"] > 1), "budget outside (0, 1]"),
            ((x["partial_ratio"] <= 0) | (x["partial_ratio"] > 1), "partial_ratio outside (0, 1]"),
            ((x["host_link_gbps"] <= 0) | (x["k_scale"] < 0), "non-positive rate"),
            ((x["kv_quantized"] > 0) & (self.accel.quantize_attention == 0),
             "kv_quantized needs quantize_attention (the attention must run on quantised K and V)"),
        ])
        return np.where(accel != "", accel, extra)


#: the knobs that fix a point's operator list (the batch, and the selected tokens and speculation GEMMs that the
#: budget, the k scale and r imply): points sharing them are evaluated together
OPERATOR_KNOBS = ("batch", "budget", "k_scale", "partial_ratio")


def excess_sum(g: np.ndarray, k: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Per point, sum over the steps t of max(0, g k_t - window): what of the steps' transfers g k_t is not hidden
    behind the window. Computed from the sorted k_t (the steps above window / g contribute), not as points x steps."""
    k_sorted = np.sort(k)
    above_sums = np.concatenate([np.cumsum(k_sorted[::-1])[::-1], [0.0]])  # sum of k_sorted[i:]
    first_above = np.searchsorted(k_sorted, window / g, side="right")
    return np.maximum(0.0, g * above_sums[first_above] - window * (k_sorted.size - first_above))


def evaluate(design: JointDesign, shape: ModelShape, spec: WorkloadSpec, tech: Tech, scheme: tender.Scheme,
             offload_scheme: OffloadScheme) -> dict[str, np.ndarray]:
    """Metrics (``JOINT_METRICS``) per design point; invalid points get NaN. Points that share their operator list
    (``OPERATOR_KNOBS``) run through the vectorised Tender model and the composition together."""
    groups = combination_codes(design.extra[k] for k in OPERATOR_KNOBS)[1]
    return evaluate_valid(design, lambda idx: _evaluate_group(design.take(idx), shape, spec, tech, scheme,
                                                              offload_scheme),
                          JOINT_METRICS, chunk=16384, groups=groups)


def _evaluate_group(d: JointDesign, shape: ModelShape, spec: WorkloadSpec, tech: Tech, scheme: tender.Scheme,
                    offload_scheme: OffloadScheme) -> dict[str, np.ndarray]:
    """Metrics of design points that share ``OPERATOR_KNOBS``: the Tender model over the operator list they imply,
    then the host link and the accelerator memory per point."""
    x = d.extra
    b, budget, k_scale, r = (float(x[k][0]) for k in OPERATOR_KNOBS)
    b = int(b)
    spec = dataclasses.replace(spec, batch=b)
    ops = build_operators(shape, spec)
    ctx = decode_contexts(spec)
    cap = np.floor(budget * (spec.prompt_len + spec.gen_len))
    k = np.minimum(selected_tokens(offload_scheme, ctx, np.asarray(k_scale)), cap)
    sel_ops = _with_selection(ops, shape, k, offload_scheme.dense_layers, r, b)
    m = tender.evaluate(d.accel, sel_ops, tech, scheme)

    L, dense = shape.layers, offload_scheme.dense_layers
    bits = d.accel.bits
    kv_bits = np.where(x["kv_quantized"] > 0, bits, 16.0)
    e = 2 * shape.kv_dim * kv_bits / 8
    link = x["host_link_gbps"] * GB
    steps = np.arange(1, spec.gen_len)
    n = spec.prompt_len + steps
    k_steps = np.minimum(selected_tokens(offload_scheme, n.astype(float), np.asarray(k_scale)), cap)
    decode_steps = max(spec.gen_len - 1, 1)
    ffn_share = (3 if shape.gated_mlp else 2) * shape.hidden * shape.ffn / shape.linear_params_per_layer()
    ffn_layer = m["decode_latency_s"] / decode_steps / L * ffn_share
    # Per decode step: the dense layers' loads (exposed), the sparse layers' gather + copy beyond the FFN window they
    # hide behind, and the write-back, summed over the steps: sum_t max(0, g k_t - ffn) with g = 2 e b / link is
    # g (sum of the k_t above ffn / g) - ffn (their count), from the sorted k_t (no points x steps array).
    dense_xfer = dense * e * b * float(n.sum()) / link
    exposed = (L - dense) * excess_sum(2 * e * b / link, k_steps, ffn_layer)
    writeback = L * e * b / link
    link_decode = dense_xfer + exposed + steps.size * writeback if spec.gen_len > 1 else np.zeros(len(d))
    link_prefill = L * e * b * spec.prompt_len / link
    latency = m["latency_s"] + link_decode + link_prefill
    link_bytes = e * b * (L * spec.prompt_len + (dense * n).sum() + ((L - dense) * k_steps).sum()
                          + L * (spec.gen_len - 1))
    e_link = link_bytes * x["host_pj_per_byte"] * 1e-12
    energy = m["energy_j"] + e_link + tech.leakage_mw_per_mm2 * 1e-3 * m["area_mm2"] * (latency - m["latency_s"])
    weights = shape.non_embedding_linear_params() * bits / 8 + 2 * shape.vocab * shape.hidden
    partial_k = L * b * (spec.prompt_len + spec.gen_len) * r * shape.kv_dim * 2
    hbm_need = (weights + partial_k) / GB
    return with_derived({
        **m, "latency_s": latency, "energy_j": energy,
        "host_link_s": link_decode + link_prefill, "host_link_bytes": link_bytes,
        "hbm_need_gb": hbm_need, "hbm_headroom_gb": x["hbm_gb"] - hbm_need,
        "mean_selected_tokens": np.full(len(d), float(k.mean()) if k.size else 0.0),
    }, b * spec.gen_len)


JOINT_METRICS = {
    **tender.METRICS,
    "host_link_s": "time on the host link not hidden behind compute [s]",
    "host_link_bytes": "bytes over the host link [B]",
    "hbm_need_gb": "accelerator memory needed: weights + partial keys [GB]",
    "hbm_headroom_gb": "accelerator memory minus need [GB]",
    "mean_selected_tokens": "InfiniGen: mean selected tokens per sparse layer and step [tokens]",
}
