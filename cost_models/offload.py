"""Offloading inference: FlexGen's cost model with GPU-side attention over a CPU-resident KV cache,
and InfiniGen's speculative KV prefetch, H2O and INT4-KV on top of it (infinigen.md sections 10-11).

FP16 everywhere. Per layer, D = hidden size, KV bytes per token e = 2 (K, V) x kv_dim x 2 B.
Decode step t = 1 .. gen-1 attends to n_t = s + t tokens (the workload convention). Per layer:

* compute (GPU): linear layers ``max(FLOPs / F_gpu, weight bytes on GPU / B_gpu)`` plus weights held on
  the CPU streamed over PCIe; attention ``max(4 b n D / F_gpu, KV bytes read / B_gpu)``;
* KV traffic CPU->GPU for the tokens the scheme attends to (FlexGen's own formula leaves this out because
  it assumes CPU attention):
    - FlexGen: e b n_t (1 - cg);
    - H2O: e b min(n_t, K_H) with K_H = budget x (s + gen), or budget x s with ``budget_base = prompt``
      (the reference runtime: 2 x hh_ratio x prompt rows, replaced in place);
    - with ``staging_copy`` a load is first copied on the host into pinned memory (2 bytes of CPU-memory
      traffic per byte moved, in series): the reference runtime's unpinned KV cache is relayed through
      ``pin_memory()`` (FlexGen, INT4, InfiniGen's dense layers) or its pinned prefetch buffer (H2O);
    - INT4: 0.28125 e b n_t plus a dequantisation pass on the GPU;
    - InfiniGen: layers < ``dense_layers`` load the full e b n_t; later layers e b k_t with k_t from the
      selected-token table (capped at budget (s + gen)), after a speculation (partial W_Q GEMV,
      partial-K scores over n_t, top-k) on the GPU and a CPU gather (2 e b k_t / B_gather) on the host
      thread (exposed: the reference runtime issues the FFN only after it);
* host work that does not scale with bytes: a selecting scheme's extra framework ops and host-device
  synchronisations per layer and step (``select_host_ops x host_op_s + select_host_syncs x
  host_sync_s``), exposed because each synchronisation drains the GPU queue;
* the new token's KV written GPU->CPU: e b;
* overlap: ``overlap = 0`` adds compute and transfers (the paper's runs, FlexGen ``--overlap false``);
  ``overlap = 1`` takes their max. InfiniGen's H2D prefetch is always asynchronous: only what exceeds
  the previous layer's FFN time is exposed.

Prefill per layer: linear FLOPs 2 P_l b s, attention 4 b s^2 D, the prompt's KV written to the CPU.
Capacities: the GPU holds its share of weights and KV, InfiniGen's partial W_Q and partial keys, and the
workspace of one layer; the CPU holds the rest of the weights and the KV pool.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from cost_models.design import array_fields, evaluate_valid, first_failure
from cost_models.metrics import described, with_derived
from workloads.shapes import ModelShape

GB = 1e9
BUDGET_BASES = ("total", "prompt")  # what a budget is a share of: prompt + generated tokens, or the prompt
STEP_CELLS = 1 << 22  # design points x decode steps per evaluated chunk (32 MiB per float64 temporary)


@dataclass(frozen=True)
class OffloadScheme:
    name: str
    kv_fraction: str = "full"  # a key of KV_SCHEMES: full | h2o | int4 | infinigen
    dense_layers: int = 2
    int4_bytes_ratio: float = 0.28125
    int4_dequant_gbps: float = 0.0  # GPU dequantisation throughput of the INT4 cache (bytes of FP16 out per s)
    cache_bits: int = 16  # the KV cache's width as stored (16: FP16; 4: FlexGen's compression), for the accuracy
    cache_group: int = 64  # values per compression group (FlexGen: 64 along the head dimension)
    k_table_ctx: tuple[float, ...] = ()
    k_table_tokens: tuple[float, ...] = ()
    topk_elems_per_s: float = 1e11  # GPU top-k throughput over speculated scores
    gather_gbps: float = 0.0  # CPU gather of the selected, per-head scattered KV rows (0: CPU memory bandwidth)
    budget_base: str = "total"  # tokens the budget is a share of: "total" (prompt + generated) or "prompt"
    staging_copy: bool = False  # KV loads are relayed on the host through pinned memory before each H2D copy
    host_op_s: float = 0.0  # host time per eager framework op the scheme adds (Python, dispatch, launch)
    host_sync_s: float = 0.0  # one host-device synchronisation (the host waits, the GPU queue drains)
    select_host_ops: float = 0.0  # ops the scheme adds per selecting layer and decode step
    select_host_syncs: float = 0.0  # synchronisations the scheme adds per selecting layer and decode step

    def select_host_time(self) -> float:
        """Host time a selecting layer adds per decode step, whatever the bytes it moves: its extra
        framework ops and the synchronisations they force (each drains the GPU queue, so it is exposed)."""
        return self.select_host_ops * self.host_op_s + self.select_host_syncs * self.host_sync_s


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

    def take(self, idx: np.ndarray) -> OffloadDesign:
        return OffloadDesign(**{f.name: getattr(self, f.name)[idx] for f in dataclasses.fields(self)})

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


METRICS: dict[str, str] = described({
    "transfer_share": "share of a decode block's time spent moving KV over PCIe at the last step [0-1]",
    "h2d_bytes": "bytes moved CPU->GPU over the whole run [B]",
    "gpu_mem_gb": "GPU memory needed [GB]",
    "cpu_mem_gb": "CPU memory needed [GB]",
    "gpu_mem_headroom_gb": "GPU capacity minus need [GB]",
    "cpu_mem_headroom_gb": "CPU capacity minus need [GB]",
    "mean_selected_tokens": "InfiniGen: mean selected tokens per sparse layer and step [tokens]",
})


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


@dataclass(frozen=True)
class Context:
    """What every KV scheme sees of one evaluation: P design points (arrays ``[P]``, or ``[P, 1]`` via
    :meth:`col` against the ``[1, S]`` decode contexts ``n``) and the per-layer costs they share."""

    d: OffloadDesign
    shape: ModelShape
    scheme: OffloadScheme
    prompt: int
    gen: int
    e: float  # KV bytes per token per layer
    n: np.ndarray  # [1, S] context of decode steps 1 .. gen-1
    k_cap: np.ndarray  # [P] budget (H2O) / cap (InfiniGen) in tokens
    lin: np.ndarray  # [P, 1] linear layers of one decode step and layer
    ffn_time: np.ndarray  # [P, 1] its FFN part (the window InfiniGen's prefetch hides behind)
    w_h2d: np.ndarray  # [P, 1] weights streamed from the CPU per layer
    d2h: np.ndarray  # [P, 1] the new token's KV written back per layer

    @staticmethod
    def col(a: Any) -> np.ndarray:
        return np.asarray(a)[:, None]

    @property
    def L(self) -> int:
        return self.shape.layers

    @property
    def cc(self) -> np.ndarray:
        """Share of the KV cache on the CPU."""
        return 1.0 - self.d.kv_gpu

    def attn(self, tokens: np.ndarray) -> np.ndarray:
        """Decode attention of one layer over ``tokens`` keys: FLOPs or GPU-memory bound."""
        col, d, bb = self.col, self.d, self.col(self.d.batch)
        return np.maximum(4 * bb * tokens * self.shape.hidden / col(d.gpu_tflops * 1e12),
                          self.e * bb * tokens / col(d.gpu_mem_bw_gbps * GB))

    def h2d(self, kv_bytes: np.ndarray, pinned: bool = False) -> np.ndarray:
        """Time to move ``kv_bytes`` (per point and step, all on the CPU) to the GPU; with the scheme's
        ``staging_copy`` the host first copies them into pinned memory (read + write at the CPU memory
        bandwidth), in series with the copy, unless they already are there (``pinned``)."""
        moved = kv_bytes * self.col(self.cc)
        staged = self.scheme.staging_copy and not pinned
        stage = 2 * moved / self.col(self.d.cpu_mem_bw_gbps * GB) if staged else 0.0
        return moved / self.col(self.d.pcie_h2d_gbps * GB) + stage


@dataclass(frozen=True)
class Decode:
    step: np.ndarray  # [P, S] time of each decode step (all layers)
    block_xfer: np.ndarray  # [P, S] (or broadcastable) transfer time of one block (layer)
    block_total: np.ndarray  # [P, S] total time of one block
    mean_k: np.ndarray  # [P] mean KV tokens a sparse layer attends to
    kv_h2d_bytes: np.ndarray  # [P] KV bytes moved CPU -> GPU over the whole decode


class FullKV:
    """FlexGen: every past token's KV crosses PCIe at every step and layer."""

    #: the scheme's cost follows the selected-token table (which a measurement may replace)
    selects_tokens = False

    def prefill_compute(self, c: Context) -> Any:
        return 0.0

    def attended(self, c: Context) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(tokens attended, KV transfer time, compute time) per layer and step."""
        bb = c.col(c.d.batch)
        return c.n, c.h2d(c.e * bb * c.n), c.lin + c.attn(c.n)

    def kv_h2d_bytes(self, c: Context) -> np.ndarray:
        return c.L * c.e * c.n.sum() * c.d.batch * c.cc

    def decode(self, c: Context) -> Decode:
        tokens, kv_h2d, comp = self.attended(c)
        xfer = kv_h2d + c.w_h2d + c.d2h
        layer = np.where(c.col(c.d.overlap) > 0, np.maximum(comp, xfer), comp + xfer)
        step = c.L * layer
        return Decode(step, xfer, layer, np.mean(np.broadcast_to(tokens, step.shape), axis=1), self.kv_h2d_bytes(c))

    def resident_bytes(self, c: Context, kv_all: Any) -> Any:
        """KV bytes kept for the run (all of them unless the scheme evicts)."""
        return kv_all

    def gpu_extra_bytes(self, c: Context) -> np.ndarray:
        return np.zeros(len(c.d))

    def cpu_pool_share(self, c: Context) -> Any:
        return 1.0


class H2OKV(FullKV):
    """H2O: at most K_H = budget x (``budget_base`` tokens) are kept, attended to and moved. With
    ``staging_copy`` the kept rows are first copied on the host into a pinned buffer (read + write at the
    CPU memory bandwidth), then moved; the scheme's host ops and synchronisations (score accumulation,
    eviction, the replaced row written back) are added per layer and step."""

    def attended(self, c: Context) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        bb = c.col(c.d.batch)
        tokens = np.minimum(c.n, c.col(c.k_cap))
        return tokens, c.h2d(c.e * bb * tokens), c.lin + c.attn(tokens) + c.scheme.select_host_time()

    def kv_h2d_bytes(self, c: Context) -> np.ndarray:
        return c.L * c.e * np.minimum(c.n, c.col(c.k_cap)).sum(axis=1) * c.d.batch * c.cc

    def resident_bytes(self, c: Context, kv_all: Any) -> Any:
        return c.L * c.e * c.d.batch * c.k_cap


class Int4KV(FullKV):
    """FlexGen's INT4 cache: ``int4_bytes_ratio`` of the bytes cross PCIe, then a dequantisation pass."""

    def attended(self, c: Context) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        bb, s = c.col(c.d.batch), c.scheme
        kv_h2d = c.h2d(s.int4_bytes_ratio * c.e * bb * c.n)
        dequant = c.e * bb * c.n * c.col(c.cc) / (s.int4_dequant_gbps * GB)
        return c.n, kv_h2d, c.lin + c.attn(c.n) + dequant

    def kv_h2d_bytes(self, c: Context) -> np.ndarray:
        return c.L * c.scheme.int4_bytes_ratio * c.e * c.n.sum() * c.d.batch * c.cc


class InfiniGenKV(FullKV):
    """InfiniGen: dense layers load the full KV; sparse layers speculate, gather k_t tokens on the CPU
    and prefetch them behind the previous layer's FFN; partial keys and W_Q live on the GPU."""

    selects_tokens = True

    def prefill_compute(self, c: Context) -> Any:
        if c.scheme.dense_layers >= c.L:
            return 0.0
        D, d = c.shape.hidden, c.d
        return 2 * d.batch * c.prompt * D * d.partial_ratio * D / (d.gpu_tflops * 1e12)  # partial keys (r*D cols)

    def selected(self, c: Context) -> np.ndarray:
        return np.minimum(selected_tokens(c.scheme, c.n, c.col(c.d.k_scale)), c.col(c.k_cap))

    def decode(self, c: Context) -> Decode:
        d, s, col, L, D, n = c.d, c.scheme, c.col, c.L, c.shape.hidden, c.n
        bb, F, Bg = col(d.batch), col(d.gpu_tflops * 1e12), col(d.gpu_mem_bw_gbps * GB)
        k = self.selected(c)
        dense = min(s.dense_layers, L)
        full_h2d = c.h2d(c.e * bb * n)  # dense layers: FlexGen's load (staged if the cache is not pinned)
        sel_h2d = c.h2d(c.e * bb * k, pinned=True)  # from the pinned buffer the gather wrote
        gather_bw = s.gather_gbps * GB if s.gather_gbps > 0 else col(d.cpu_mem_bw_gbps * GB)
        gather = 2 * c.e * bb * k * col(c.cc) / gather_bw  # read scattered rows + write the pinned buffer
        host = s.select_host_time()  # speculation's count read-back, index copy, gather and copy issue
        rD = col(d.partial_ratio) * D
        spec = (np.maximum(2 * bb * (D + 1) * rD / F, 2 * (D + 1) * rD / Bg)
                + np.maximum(2 * bb * n * rD / F, 2 * bb * n * rD / Bg)
                + bb * c.shape.heads * n / s.topk_elems_per_s)
        comp_dense = c.lin + c.attn(n)
        comp_sparse = c.lin + c.attn(k + 1) + spec
        # The reference runtime gathers on the host thread after layer l-1's attention and before its
        # FFN is issued; only the H2D copy (its own stream) overlaps that FFN.
        exposed = host + gather + np.maximum(0.0, sel_h2d - c.ffn_time)
        step = (dense * (comp_dense + full_h2d + c.w_h2d + c.d2h)
                + (L - dense) * (comp_sparse + exposed + c.w_h2d + c.d2h))
        if dense < L:  # a sparse block (the paper's Fig. 18 block); host work is not data transfer
            block_xfer, block_total = exposed - host + c.w_h2d + c.d2h, comp_sparse + exposed + c.w_h2d + c.d2h
        else:
            block_xfer = full_h2d + c.w_h2d + c.d2h
            block_total = comp_dense + block_xfer
        h2d_bytes = (dense * c.e * n + (L - dense) * c.e * k).sum(axis=1) * d.batch * c.cc
        return Decode(step, block_xfer, block_total, k.mean(axis=1), h2d_bytes)

    def gpu_extra_bytes(self, c: Context) -> np.ndarray:
        L, D, d = c.L, c.shape.hidden, c.d
        return L * (D + 1) * d.partial_ratio * D * 2 + L * d.batch * (c.prompt + c.gen) * d.partial_ratio * D * 2

    def cpu_pool_share(self, c: Context) -> Any:
        return c.d.pool_fraction


#: ``OffloadScheme.kv_fraction`` -> how that scheme moves, keeps and attends to the KV cache
KV_SCHEMES: dict[str, FullKV] = {"full": FullKV(), "h2o": H2OKV(), "int4": Int4KV(), "infinigen": InfiniGenKV()}


def evaluate(d: OffloadDesign, shape: ModelShape, prompt: int, gen: int, scheme: OffloadScheme,
             energy: EnergyTable, *, chunk: int = 4096) -> dict[str, np.ndarray]:
    """Metrics (``METRICS``) per design point; invalid points (``invalid_reason``) get NaN."""
    kv = KV_SCHEMES[scheme.kv_fraction]
    chunk = max(1, min(chunk, STEP_CELLS // max(gen, 1)))  # [points x decode steps] temporaries stay bounded
    return evaluate_valid(d, lambda idx: _evaluate(d.take(idx), shape, prompt, gen, scheme, kv, energy), METRICS,
                          chunk=chunk)


def _evaluate(d: OffloadDesign, shape: ModelShape, prompt: int, gen: int, scheme: OffloadScheme, kv: FullKV,
              energy: EnergyTable) -> dict[str, np.ndarray]:
    L, D = shape.layers, shape.hidden
    b = d.batch
    e = 4.0 * shape.kv_dim  # KV bytes per token per layer (fp16 K and V)
    p_layer = float(shape.linear_params_per_layer())
    w_layer = 2.0 * p_layer
    F = d.gpu_tflops * 1e12
    Bg = d.gpu_mem_bw_gbps * GB
    H2D, D2H = d.pcie_h2d_gbps * GB, d.pcie_d2h_gbps * GB
    cc = 1.0 - d.kv_gpu
    total_len = prompt + gen

    # ---- decode: steps t = 1 .. gen-1, context n_t = prompt + t ----
    steps = np.arange(1, gen, dtype=np.float64)
    col = Context.col
    lin = np.maximum(2 * p_layer * col(b) / col(F), w_layer * col(d.weights_gpu) / col(Bg))
    ffn_share = (3 if shape.gated_mlp else 2) * D * shape.ffn / p_layer
    base = {"total": total_len, "prompt": prompt}[scheme.budget_base]
    c = Context(d=d, shape=shape, scheme=scheme, prompt=prompt, gen=gen, e=e, n=(prompt + steps)[None, :],
                k_cap=np.floor(d.budget * base), lin=lin, ffn_time=lin * ffn_share,
                w_h2d=w_layer * (1 - col(d.weights_gpu)) / col(H2D), d2h=e * col(b) * col(cc) / col(D2H))

    # ---- prefill (per layer) ----
    pre_lin = np.maximum(2 * p_layer * b * prompt / F, w_layer * d.weights_gpu / Bg)
    pre_attn = 4 * b * prompt * prompt * D / F
    pre_w_h2d = w_layer * (1 - d.weights_gpu) / H2D
    pre_kv_d2h = e * b * prompt * cc / D2H
    pre_comp = pre_lin + pre_attn + kv.prefill_compute(c)
    pre_xfer = pre_w_h2d + pre_kv_d2h
    prefill = L * np.where(d.overlap > 0, np.maximum(pre_comp, pre_xfer), pre_comp + pre_xfer)

    dec = kv.decode(c)
    step = dec.step
    decode = step.sum(axis=1) if step.size else np.zeros(len(d))
    latency = prefill + decode
    last = (lambda a: np.broadcast_to(a, step.shape)[:, -1]) if step.size else (lambda a: np.zeros(len(d)))
    transfer_share = last(dec.block_xfer) / last(dec.block_total)

    # ---- bytes, memory ----
    h2d = dec.kv_h2d_bytes + (gen - 1) * L * w_layer * (1 - d.weights_gpu) + L * w_layer * (1 - d.weights_gpu)
    d2h_bytes = L * e * b * cc * (prompt + gen - 1)
    kv_all = L * e * b * total_len
    kv_resident = kv.resident_bytes(c, kv_all)
    kv_gpu_bytes = kv_resident * d.kv_gpu
    work = b * max(prompt, 1) * (2 * D + 2 * shape.ffn + 2 * shape.heads * prompt) * 2  # one layer's activations
    gpu_need = L * w_layer * d.weights_gpu + kv_gpu_bytes + kv.gpu_extra_bytes(c) + work
    cpu_kv = kv_resident * cc * kv.cpu_pool_share(c)
    cpu_need = L * w_layer * (1 - d.weights_gpu) + cpu_kv

    # ---- energy ----
    flops = L * b * (2 * p_layer * (prompt + gen - 1) + 4 * D * (prompt * prompt + float(c.n.sum())))
    gpu_bytes = L * w_layer * gen + kv_all * 0.5 * gen
    en = (flops * energy.gpu_pj_per_flop + gpu_bytes * energy.gpu_mem_pj_per_byte
          + (h2d + d2h_bytes) * (energy.pcie_pj_per_byte + energy.cpu_mem_pj_per_byte)) * 1e-12 \
        + (energy.gpu_static_w + energy.cpu_static_w) * latency
    return with_derived({
        "latency_s": latency, "prefill_latency_s": prefill, "decode_latency_s": decode, "energy_j": en,
        "transfer_share": transfer_share, "h2d_bytes": h2d,
        "gpu_mem_gb": gpu_need / GB, "cpu_mem_gb": cpu_need / GB,
        "gpu_mem_headroom_gb": d.gpu_mem_gb - gpu_need / GB, "cpu_mem_headroom_gb": d.cpu_mem_gb - cpu_need / GB,
        "mean_selected_tokens": dec.mean_k,
    }, b * gen)
