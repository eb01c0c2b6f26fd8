"""Offloading inference: FlexGen's cost model with GPU-side attention over a CPU-resident KV cache,
and InfiniGen's speculative KV prefetch, H2O and INT4-KV on top of it (infinigen.md sections 10-11).

FP16 everywhere. Per layer, D = hidden size, KV bytes per token e = 2 (K, V) x kv_dim x 2 B.
Decode step t = 1 .. gen-1 attends to n_t = s + t tokens (the workload convention). Per layer:

* compute (GPU): linear layers ``max(FLOPs / F_gpu, weight bytes on GPU / B_gpu)`` plus weights held on
  the CPU streamed over PCIe; attention ``max(4 b n D / F_gpu, KV bytes read / B_gpu)``;
* KV traffic CPU->GPU for the tokens the scheme attends to (FlexGen's own formula leaves this out because
  it assumes CPU attention):
    - FlexGen: e b n_t (1 - cg);      H2O: e b min(n_t, K_H) with K_H = budget (s + gen);
    - INT4: 0.28125 e b n_t plus a dequantisation pass on the GPU;
    - InfiniGen: layers < ``dense_layers`` load the full e b n_t; later layers e b k_t with k_t from the
      selected-token table (capped at budget (s + gen)), after a CPU gather (2 e b k_t / B_cpu) and a
      speculation (partial W_Q GEMV, partial-K scores over n_t, top-k) on the GPU;
* the new token's KV written GPU->CPU: e b;
* overlap: ``overlap = 0`` adds compute and transfers (the paper's runs, FlexGen ``--overlap false``);
  ``overlap = 1`` takes their max. InfiniGen's prefetch is always asynchronous: only what exceeds the
  previous layer's FFN time is exposed.

Prefill per layer: linear FLOPs 2 P_l b s, attention 4 b s^2 D, the prompt's KV written to the CPU.
Capacities: the GPU holds its share of weights and KV, InfiniGen's partial W_Q and partial keys, and the
workspace of one layer; the CPU holds the rest of the weights and the KV pool.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from cost_models.design import array_fields, first_failure
from workloads.shapes import ModelShape

GB = 1e9


@dataclass(frozen=True)
class OffloadScheme:
    name: str
    kv_fraction: str = "full"  # full | h2o | int4 | infinigen
    dense_layers: int = 2
    int4_bytes_ratio: float = 0.28125
    int4_dequant_gbps: float = 0.0  # GPU dequantisation throughput of the INT4 cache (bytes of FP16 out per s)
    k_table_ctx: tuple[float, ...] = ()
    k_table_tokens: tuple[float, ...] = ()
    topk_elems_per_s: float = 1e11  # GPU top-k throughput over speculated scores
    gather_gbps: float = 0.0  # CPU gather of the selected, per-head scattered KV rows (0: CPU memory bandwidth)


@dataclass(frozen=True)
class OffloadDesign:
    gpu_tflops: np.ndarray
    gpu_mem_bw_gbps: np.ndarray
    gpu_mem_gb: np.ndarray
    cpu_tflops: np.ndarray
    cpu_mem_bw_gbps: np.ndarray
    cpu_mem_gb: np.ndarray
    pcie_h2d_gbps: np.ndarray
    pcie_d2h_gbps: np.ndarray
    batch: np.ndarray
    weights_gpu: np.ndarray  # fraction of weights resident on the GPU (rest streamed from the CPU)
    kv_gpu: np.ndarray  # fraction of the KV cache on the GPU (rest on the CPU)
    budget: np.ndarray  # H2O budget / InfiniGen cap, fraction of prompt + generated tokens
    k_scale: np.ndarray  # multiplier on the selected-token table (stands in for alpha until measured)
    partial_ratio: np.ndarray  # InfiniGen r
    pool_fraction: np.ndarray  # InfiniGen CPU pool capacity, fraction of the full KV
    overlap: np.ndarray  # 0/1

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> OffloadDesign:
        names = array_fields(cls, values)
        arrays = np.broadcast_arrays(*(np.atleast_1d(np.asarray(values[n], dtype=np.float64)) for n in names))
        return cls(**dict(zip(names, arrays, strict=True)))

    def __len__(self) -> int:
        return int(self.batch.shape[0])

    def invalid_reason(self) -> np.ndarray:
        rates = (self.gpu_tflops, self.gpu_mem_bw_gbps, self.cpu_mem_bw_gbps, self.pcie_h2d_gbps, self.pcie_d2h_gbps)
        return first_failure(len(self), [
            (np.any([r <= 0 for r in rates], axis=0), "non-positive rate"),
            (self.batch < 1, "batch < 1"),
            ((self.weights_gpu < 0) | (self.weights_gpu > 1) | (self.kv_gpu < 0) | (self.kv_gpu > 1),
             "placement fraction outside [0, 1]"),
            ((self.budget <= 0) | (self.budget > 1), "budget outside (0, 1]"),
            ((self.partial_ratio <= 0) | (self.partial_ratio > 1), "partial_ratio outside (0, 1]"),
            ((self.pool_fraction <= 0) | (self.pool_fraction > 1), "pool_fraction outside (0, 1]"),
        ])


METRICS: dict[str, str] = {
    "latency_s": "end-to-end time of the batch (prefill + decode) [s]",
    "prefill_s": "prefill time [s]",
    "decode_s": "decode time [s]",
    "tokens_per_s": "generated tokens per second (batch x gen / latency) [tokens/s]",
    "transfer_share": "share of a decode block's time spent moving KV over PCIe at the last step [0-1]",
    "h2d_bytes": "bytes moved CPU->GPU over the whole run [B]",
    "energy_j": "energy of the run [J]",
    "energy_per_token_j": "energy per generated token [J/token]",
    "gpu_mem_gb": "GPU memory needed [GB]",
    "cpu_mem_gb": "CPU memory needed [GB]",
    "gpu_mem_headroom_gb": "GPU capacity minus need [GB]",
    "cpu_mem_headroom_gb": "CPU capacity minus need [GB]",
    "mean_selected_tokens": "InfiniGen: mean selected tokens per sparse layer and step [tokens]",
}


@dataclass(frozen=True)
class EnergyTable:
    gpu_pj_per_flop: float
    gpu_mem_pj_per_byte: float
    cpu_mem_pj_per_byte: float
    pcie_pj_per_byte: float
    gpu_static_w: float
    cpu_static_w: float


def selected_tokens(scheme: OffloadScheme, ctx: np.ndarray, k_scale: np.ndarray) -> np.ndarray:
    """InfiniGen's mean selected tokens at context ``ctx`` (linear interpolation of the table,
    proportional below its first point, extrapolated linearly past its last)."""
    xs, ys = np.asarray(scheme.k_table_ctx), np.asarray(scheme.k_table_tokens)
    if xs.size < 2:
        k = ys[0] * ctx / xs[0] if xs.size else np.zeros_like(ctx)
    else:
        k = np.interp(ctx, xs, ys)
        k = np.where(ctx < xs[0], ys[0] * ctx / xs[0], k)
        slope = (ys[-1] - ys[-2]) / (xs[-1] - xs[-2])
        k = np.where(ctx > xs[-1], ys[-1] + slope * (ctx - xs[-1]), k)
    return np.minimum(k * k_scale, ctx)


def with_measured_selection(scheme: OffloadScheme, fractions: np.ndarray, total_len: int) -> OffloadScheme:
    """The scheme with its k table replaced by measured selected fractions per relative position in a
    window (bucket midpoints), mapped onto a workload of ``total_len`` tokens (k = fraction x context)."""
    ctx = (np.arange(len(fractions)) + 0.5) / len(fractions) * total_len
    return dataclasses.replace(scheme, k_table_ctx=tuple(ctx), k_table_tokens=tuple(fractions * ctx))


def evaluate(d: OffloadDesign, shape: ModelShape, prompt: int, gen: int, scheme: OffloadScheme,
             energy: EnergyTable) -> dict[str, np.ndarray]:
    L, D = shape.layers, shape.hidden
    b = d.batch
    e = 4.0 * shape.kv_dim  # KV bytes per token per layer (fp16 K and V)
    p_layer = float(shape.linear_params_per_layer())
    w_layer = 2.0 * p_layer
    F = d.gpu_tflops * 1e12
    Bg, Bc = d.gpu_mem_bw_gbps * GB, d.cpu_mem_bw_gbps * GB
    H2D, D2H = d.pcie_h2d_gbps * GB, d.pcie_d2h_gbps * GB
    cc = 1.0 - d.kv_gpu
    total_len = prompt + gen
    k_cap = np.floor(d.budget * total_len)

    # ---- prefill (per layer) ----
    pre_lin = np.maximum(2 * p_layer * b * prompt / F, w_layer * d.weights_gpu / Bg)
    pre_attn = 4 * b * prompt * prompt * D / F
    pre_w_h2d = w_layer * (1 - d.weights_gpu) / H2D
    pre_kv_d2h = e * b * prompt * cc / D2H
    spec_pre = 0.0
    if scheme.kv_fraction == "infinigen" and scheme.dense_layers < L:  # partial keys of the prompt (r*D columns)
        spec_pre = 2 * b * prompt * D * d.partial_ratio * D / F
    pre_comp = pre_lin + pre_attn + spec_pre
    pre_xfer = pre_w_h2d + pre_kv_d2h
    prefill = L * np.where(d.overlap > 0, np.maximum(pre_comp, pre_xfer), pre_comp + pre_xfer)

    # ---- decode: steps t = 1 .. gen-1, context n_t = prompt + t ----
    steps = np.arange(1, gen, dtype=np.float64)
    n = (prompt + steps)[None, :]  # [1, S]
    col = lambda a: np.asarray(a)[:, None]  # noqa: E731
    bb = col(b)
    lin = np.maximum(2 * p_layer * bb / col(F), w_layer * col(d.weights_gpu) / col(Bg))
    ffn_share = (3 if shape.gated_mlp else 2) * D * shape.ffn / p_layer
    ffn_time = lin * ffn_share
    w_h2d = w_layer * (1 - col(d.weights_gpu)) / col(H2D)
    d2h = e * bb * col(cc) / col(D2H)

    def attn(tokens: np.ndarray) -> np.ndarray:
        return np.maximum(4 * bb * tokens * D / col(F), e * bb * tokens / col(Bg))

    kind = scheme.kv_fraction
    if kind == "infinigen":
        k = np.minimum(selected_tokens(scheme, n, col(d.k_scale)), col(k_cap))
        dense = min(scheme.dense_layers, L)
        full_h2d = e * bb * n * col(cc) / col(H2D)
        sel_h2d = e * bb * k * col(cc) / col(H2D)
        gather_bw = scheme.gather_gbps * GB if scheme.gather_gbps > 0 else col(Bc)
        gather = 2 * e * bb * k * col(cc) / gather_bw  # read scattered rows + write the pinned buffer
        rD = col(d.partial_ratio) * D
        spec = (np.maximum(2 * bb * (D + 1) * rD / col(F), 2 * (D + 1) * rD / col(Bg))
                + np.maximum(2 * bb * n * rD / col(F), 2 * bb * n * rD / col(Bg))
                + bb * shape.heads * n / scheme.topk_elems_per_s)
        comp_dense = lin + attn(n)
        comp_sparse = lin + attn(k + 1) + spec
        exposed = np.maximum(0.0, gather + sel_h2d - ffn_time)
        step = (dense * (comp_dense + full_h2d + w_h2d + d2h)
                + (L - dense) * (comp_sparse + exposed + w_h2d + d2h))
        if dense < L:  # a sparse block (the paper's Fig. 18 block)
            block_xfer, block_total = exposed + w_h2d + d2h, comp_sparse + exposed + w_h2d + d2h
        else:
            block_xfer = full_h2d + w_h2d + d2h
            block_total = comp_dense + block_xfer
        mean_k = k.mean(axis=1)
    else:
        if kind == "h2o":
            tokens = np.minimum(n, col(k_cap))
            kv_h2d = e * bb * tokens * col(cc) / col(H2D)
            comp = lin + attn(tokens)
        elif kind == "int4":
            tokens = n
            kv_h2d = scheme.int4_bytes_ratio * e * bb * n * col(cc) / col(H2D)
            comp = lin + attn(n) + e * bb * n * col(cc) / (scheme.int4_dequant_gbps * GB)
        else:
            tokens = n
            kv_h2d = e * bb * n * col(cc) / col(H2D)
            comp = lin + attn(n)
        xfer = kv_h2d + w_h2d + d2h
        layer = np.where(col(d.overlap) > 0, np.maximum(comp, xfer), comp + xfer)
        step = L * layer
        block_xfer, block_total = xfer, layer
        mean_k = np.mean(np.broadcast_to(tokens, step.shape), axis=1)
    decode = step.sum(axis=1) if step.size else np.zeros(len(d))
    latency = prefill + decode
    last = (lambda a: np.broadcast_to(a, step.shape)[:, -1]) if step.size else (lambda a: np.zeros(len(d)))
    transfer_share = last(block_xfer) / last(block_total)

    # ---- bytes, memory ----
    if kind == "infinigen":
        h2d_decode = (dense * e * n + (L - dense) * e * k).sum(axis=1) * b * cc
    elif kind == "h2o":
        h2d_decode = L * e * np.minimum(n, col(k_cap)).sum(axis=1) * b * cc
    elif kind == "int4":
        h2d_decode = L * scheme.int4_bytes_ratio * e * n.sum() * b * cc
    else:
        h2d_decode = L * e * n.sum() * b * cc
    h2d = h2d_decode + (gen - 1) * L * w_layer * (1 - d.weights_gpu) + L * w_layer * (1 - d.weights_gpu)
    d2h_bytes = L * e * b * cc * (prompt + gen - 1)
    kv_all = L * e * b * total_len
    kv_resident = {"h2o": L * e * b * k_cap}.get(kind, kv_all)
    kv_gpu_bytes = kv_resident * d.kv_gpu
    work = b * max(prompt, 1) * (2 * D + 2 * shape.ffn + 2 * shape.heads * prompt) * 2  # one layer's activations
    partial = np.zeros(len(d))
    if kind == "infinigen":
        partial = L * (D + 1) * d.partial_ratio * D * 2 + L * b * total_len * d.partial_ratio * D * 2
    gpu_need = L * w_layer * d.weights_gpu + kv_gpu_bytes + partial + work
    cpu_kv = kv_resident * cc * (d.pool_fraction if kind == "infinigen" else 1.0)
    cpu_need = L * w_layer * (1 - d.weights_gpu) + cpu_kv

    # ---- energy ----
    flops = L * b * (2 * p_layer * (prompt + gen - 1) + 4 * D * (prompt * prompt + float(n.sum())))
    gpu_bytes = L * w_layer * gen + kv_all * 0.5 * gen
    en = (flops * energy.gpu_pj_per_flop + gpu_bytes * energy.gpu_mem_pj_per_byte
          + (h2d + d2h_bytes) * (energy.pcie_pj_per_byte + energy.cpu_mem_pj_per_byte)) * 1e-12 \
        + (energy.gpu_static_w + energy.cpu_static_w) * latency
    tokens_out = b * gen
    return {
        "latency_s": latency, "prefill_s": prefill, "decode_s": decode, "tokens_per_s": tokens_out / latency,
        "transfer_share": transfer_share, "h2d_bytes": h2d, "energy_j": en, "energy_per_token_j": en / tokens_out,
        "gpu_mem_gb": gpu_need / GB, "cpu_mem_gb": cpu_need / GB,
        "gpu_mem_headroom_gb": d.gpu_mem_gb - gpu_need / GB, "cpu_mem_headroom_gb": d.cpu_mem_gb - cpu_need / GB,
        "mean_selected_tokens": mean_k,
    }
