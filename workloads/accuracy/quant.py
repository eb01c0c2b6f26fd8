"""Fake quantisation of activations and weights: Tender's decomposition and the usual baselines.

Tender (shared/reference/tender.md section 2, the reference code's semantics):

1. rows are padded with zeros to a multiple of the chunk size S and split into chunks;
2. optionally a per-chunk, per-channel bias beta = (max + min) / 2 is subtracted (added back exactly
   after the matmul as beta W^T with the unquantised weight);
3. t = max |Z| of the chunk; thresholds theta_i = t / 2^(G-1-i), i = 0..G-1 (a power-of-two ladder);
4. a channel whose max |Z| lies in (theta_{i-1}, theta_i] joins group i ("rup": never clips; "rdn" puts
   it one group lower), decided by comparisons against the thresholds;
5. group i has scale s_i = theta_i / q_max = s_0 2^i; values are rounded half-to-even and clamped to
   [q_min, q_max] (signed: [-2^(b-1), 2^(b-1)-1]; unsigned: [0, 2^b - 1]).

``tender_codes`` returns the integer codes and groups, so the hardware's integer shift-accumulate
order can be checked against the fake-quantised (dequantised) matmul (``integer_shift_accumulate``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def qrange(bits: int, signed: bool) -> tuple[int, int]:
    return (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2 ** bits - 1)


@dataclass(frozen=True)
class ChunkStats:
    """Statistics per chunk index (calibrated mode): bias [n, C], tensor max [n], channel max [n, C]."""

    bias: torch.Tensor | None
    tmax: torch.Tensor
    cmax: torch.Tensor


@dataclass(frozen=True)
class TenderCodes:
    codes: torch.Tensor  # [n, S, C] integer codes (as float tensor holding integers)
    group: torch.Tensor  # [n, C] group index per chunk and channel (0 = smallest scale)
    s0: torch.Tensor  # [n] scale of group 0 per chunk
    bias: torch.Tensor | None  # [n, C] subtracted bias per chunk
    rows: int  # original row count T

    def scales(self) -> torch.Tensor:
        return self.s0[:, None] * torch.pow(2.0, self.group.to(self.s0.dtype))  # [n, C]

    def dequantize(self) -> torch.Tensor:
        x = self.codes * self.scales()[:, None, :]
        return x.reshape(-1, x.shape[-1])[: self.rows]


def assign_groups(cmax: torch.Tensor, tmax: torch.Tensor, groups: int, rounding: str = "rup") -> torch.Tensor:
    """Group per channel from channel maxima [n, C] and tensor maxima [n], by threshold comparisons."""
    i = torch.arange(groups, device=cmax.device, dtype=cmax.dtype)
    theta = tmax[:, None] / torch.pow(2.0, groups - 1 - i)[None, :]  # [n, G]
    if rounding == "rup":  # group i when theta_{i-1} < m <= theta_i
        return (cmax[:, :, None] > theta[:, None, : groups - 1]).sum(-1)
    if rounding == "rdn":  # one group lower: group i when theta_i <= m < theta_{i+1}
        return (cmax[:, :, None] >= theta[:, None, 1:]).sum(-1)
    raise ValueError(f"quant.rounding must be 'rup' or 'rdn', got {rounding!r}")


def chunk_stats(x: torch.Tensor, chunk: int, use_bias: bool) -> ChunkStats:
    """Runtime statistics of a [T, C] activation, per chunk of ``chunk`` rows (zero-padded)."""
    xc = _chunks(x, chunk)
    bias = (xc.amax(1) + xc.amin(1)) / 2 if use_bias else None
    z = xc - bias[:, None, :] if bias is not None else xc
    cmax = z.abs().amax(1)
    return ChunkStats(bias=bias, tmax=cmax.amax(1), cmax=cmax)


def _chunks(x: torch.Tensor, chunk: int) -> torch.Tensor:
    T, C = x.shape
    n = -(-T // chunk)
    pad = n * chunk - T
    if pad:
        x = torch.cat([x, x.new_zeros(pad, C)])
    return x.view(n, chunk, C)


def _rounded(x: torch.Tensor, *, bits: int, groups: int, chunk: int, signed: bool, use_bias: bool,
             calib: ChunkStats | None, rounding: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor,
                                                           ChunkStats]:
    """Tender's decomposition shared by the codes and the fake quantiser: the integer codes [n, S, C] (a buffer of
    their own), the scale per chunk and channel [n, 1, C], the groups [n, C], s_0 [n] and the statistics used."""
    xc = _chunks(x, chunk)
    n = xc.shape[0]
    stats = chunk_stats(x, chunk, use_bias) if calib is None else _calibrated(x, chunk, use_bias, calib)
    z = xc - stats.bias[:, None, :] if stats.bias is not None else xc.clone()
    if calib is not None:  # channel maxima come from calibration; grouping is recomputed per G
        cmax, tmax = stats.cmax[:n], stats.tmax[:n]
    else:
        cmax, tmax = stats.cmax, stats.tmax
    qmin, qmax = qrange(bits, signed)
    group = assign_groups(cmax, tmax, groups, rounding)
    s0 = tmax / (2.0 ** (groups - 1) * qmax)
    s0 = torch.where(s0 > 0, s0, torch.ones_like(s0))
    scale = (s0[:, None] * torch.pow(2.0, group.to(x.dtype)))[:, None, :]
    return z.div_(scale).round_().clamp_(qmin, qmax), scale, group, s0, stats


def tender_codes(x: torch.Tensor, *, bits: int, groups: int, chunk: int, signed: bool = True,
                 use_bias: bool = True, calib: ChunkStats | None = None, rounding: str = "rup") -> TenderCodes:
    """Tender's decomposition of a [T, C] activation (runtime statistics unless ``calib`` is given)."""
    codes, _scale, group, s0, stats = _rounded(x, bits=bits, groups=groups, chunk=chunk, signed=signed,
                                               use_bias=use_bias, calib=calib, rounding=rounding)
    return TenderCodes(codes=codes, group=group, s0=s0, bias=stats.bias, rows=x.shape[0])


def _calibrated(x: torch.Tensor, chunk: int, use_bias: bool, calib: ChunkStats) -> ChunkStats:
    """Calibrated statistics for the chunk indices that have them, runtime ones for the rest."""
    n = -(-x.shape[0] // chunk)
    have = min(n, calib.tmax.shape[0])
    if have == n:
        return ChunkStats(calib.bias[:n] if use_bias and calib.bias is not None else None, calib.tmax[:n],
                          calib.cmax[:n])
    rt = chunk_stats(x, chunk, use_bias)
    bias = None
    if use_bias and rt.bias is not None and calib.bias is not None:
        bias = torch.cat([calib.bias[:have], rt.bias[have:]])
    return ChunkStats(bias, torch.cat([calib.tmax[:have], rt.tmax[have:]]),
                      torch.cat([calib.cmax[:have], rt.cmax[have:]]))


def tender_fake_quant(x: torch.Tensor, *, bits: int, groups: int, chunk: int, signed: bool = True,
                      use_bias: bool = True, calib: ChunkStats | None = None, rounding: str = "rup"
                      ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Dequantised activation [T, C] and the per-chunk bias [n, C] (or None) to add back as beta W^T: the values of
    ``tender_codes(...).dequantize()`` (the same scales), the codes rescaled in place in their own buffer."""
    codes, scale, _group, _s0, stats = _rounded(x, bits=bits, groups=groups, chunk=chunk, signed=signed,
                                                use_bias=use_bias, calib=calib, rounding=rounding)
    return codes.mul_(scale).reshape(-1, codes.shape[-1])[: x.shape[0]], stats.bias


def symmetric_fake_quant(x: torch.Tensor, bits: int, dim: int | None, amax: torch.Tensor | None = None
                         ) -> torch.Tensor:
    """Symmetric round-to-nearest; ``dim=None`` per tensor, ``dim=-1`` per row (token / output channel). ``amax``:
    static (calibrated) maxima broadcastable to ``x`` instead of the runtime ones (values beyond them clip)."""
    qmin, qmax = qrange(bits, True)
    if amax is None:
        amax = x.abs().amax() if dim is None else x.abs().amax(dim=dim, keepdim=True)
    scale = torch.where(amax > 0, amax / qmax, torch.ones_like(amax))
    return torch.clamp(torch.round(x / scale), qmin, qmax) * scale


def outlier_fake_quant(x: torch.Tensor, bits: int, ratio: float, dim: int | None = None) -> torch.Tensor:
    """OLAccel's outlier-aware quantisation (Park et al., ISCA 2018): the largest ``ratio`` of the magnitudes
    (per tensor, or per row with ``dim=-1``) are outliers kept at high precision (16 bits: FP16 here); the
    normal values are quantised symmetric max-abs over the normal range only, so the outliers no longer set
    the step."""
    flat = x.abs().reshape(-1) if dim is None else x.abs()
    n = flat.shape[-1]
    keep = int(min(n - 1, max(0, round(ratio * n))))  # outliers per tensor / row
    if keep == 0:
        return symmetric_fake_quant(x, bits, dim)
    threshold = torch.kthvalue(flat, n - keep, dim=-1).values  # the largest normal magnitude
    if dim is not None:
        threshold = threshold.unsqueeze(-1)
    qmin, qmax = qrange(bits, True)
    scale = torch.where(threshold > 0, threshold / qmax, torch.ones_like(threshold))
    normal = torch.clamp(torch.round(x / scale), qmin, qmax) * scale
    return torch.where(x.abs() > threshold, x.to(torch.float16).to(x.dtype), normal)


def group_fake_quant(x: torch.Tensor, bits: int, group: int) -> torch.Tensor:
    """FlexGen's cache compression (``CompressionConfig(num_bits=4, group_size=64, group_dim=2, symmetric=False)``
    on its [s, b*h, head_dim] cache, i.e. groups along the head dimension): per group of ``group`` values of the
    last dimension (zero-padded to a multiple), asymmetric min-max codes in [0, 2^b - 1], with the min and the
    scale stored as FP16 like FlexGen's FP16 tensors."""
    shape = x.shape
    d = shape[-1]
    pad = -d % group
    g = torch.nn.functional.pad(x, (0, pad)).reshape(*shape[:-1], -1, group)
    top = 2 ** bits - 1
    mn = g.amin(-1, keepdim=True).half().float()
    span = g.amax(-1, keepdim=True) - mn
    scale = torch.where(span > 0, top / span, torch.ones_like(span)).half().float()
    codes = ((g - mn) * scale).clamp(0, top).round()
    return (codes / scale + mn).reshape(*shape[:-1], d + pad)[..., :d].to(x.dtype)


def weight_fake_quant(w: torch.Tensor, bits: int) -> torch.Tensor:
    """Per-output-channel symmetric max-abs quantisation of a [N, K] weight."""
    return symmetric_fake_quant(w, bits, dim=-1)


def weight_codes(w: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    qmin, qmax = qrange(bits, True)
    amax = w.abs().amax(dim=-1)
    s = torch.where(amax > 0, amax / qmax, torch.ones_like(amax))
    return torch.clamp(torch.round(w / s[:, None]), qmin, qmax), s


def integer_shift_accumulate(codes: TenderCodes, wq: torch.Tensor, s_w: torch.Tensor) -> torch.Tensor:
    """The hardware's order: per chunk, groups streamed outlier-first into an integer accumulator
    that shifts left by one at every group boundary (Horner), dequantised once at the end."""
    n, S, C = codes.codes.shape
    out = []
    for r in range(n):
        g = codes.group[r]
        xq = codes.codes[r].to(torch.int64)
        w = wq.to(torch.int64)
        present = torch.unique(g)
        i_max, i_min = int(present.max()), int(present.min())
        acc = torch.zeros(S, w.shape[0], dtype=torch.int64)
        for i in range(i_max, i_min - 1, -1):
            if i < i_max:
                acc = acc << 1  # one rescale bubble: A <- 2A
            sel = g == i
            if sel.any():
                acc = acc + xq[:, sel] @ w[:, sel].T
        scale = codes.s0[r].double() * (2.0 ** i_min)
        out.append(acc.double() * scale * s_w.double()[None, :])
    return torch.cat(out)[: codes.rows]


def static_or_runtime(runtime: torch.Tensor, static: torch.Tensor | None, dim: int) -> torch.Tensor:
    """Calibrated maxima where they exist (the first ``static.shape[dim]`` positions of ``dim``), runtime ones for the
    rest (a window longer than the calibration windows)."""
    if static is None:
        return runtime
    n = min(static.shape[dim], runtime.shape[dim])
    return torch.cat([static.narrow(dim, 0, n), runtime.narrow(dim, n, runtime.shape[dim] - n)], dim=dim)


def key_bias_and_max(k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Tender (all)'s key operand: the per-channel bias over all keys b_K [.., 1, d] and the per-key-token maxima of
    |K - b_K| [.., T, 1] (the statistics a static scale is calibrated from)."""
    b_k = (k.amax(-2, keepdim=True) + k.amin(-2, keepdim=True)) / 2
    return b_k, (k - b_k).abs().amax(-1, keepdim=True)


def tender_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scaling: float, *, bits: int,
                     groups: int, chunk: int, window: int | None = None, k_absmax: torch.Tensor | None = None,
                     v_absmax: torch.Tensor | None = None) -> torch.Tensor:
    """Tender (all): causal attention of one sequence with both matmuls quantised (tender.md 2.6).

    q: [H, T, d] (after RoPE), k/v: [H, T, d] (KV heads already expanded). Per head:
    Q K^T = Q' K'^T + b_Q K^T + Q b_K^T - b_Q b_K^T, where Q' = Q - b_Q (b_Q per query chunk) is decomposed
    like a linear input and K' = K - b_K (b_K per channel over all keys) is quantised per key token;
    P V with P decomposed over key positions (unsigned, rows chunked by query) and V quantised per
    head-dim channel. The K and V scales are static when ``k_absmax`` [H, T_cal] (per key position) and
    ``v_absmax`` [H, d] (per channel) come from calibration (the reference's calibrated mode), else runtime;
    Q and P use runtime statistics. ``window``: a sliding window (keys ``window`` or more positions back are
    masked, as transformers does)."""
    H, T, d = q.shape
    qs = q * scaling
    blocked = torch.ones(T, T, dtype=torch.bool, device=q.device).triu(1)
    if window is not None and window < T:
        blocked |= torch.ones(T, T, dtype=torch.bool, device=q.device).tril(-window)
    out = torch.empty_like(q)
    for h in range(H):
        codes = tender_codes(qs[h], bits=bits, groups=groups, chunk=chunk, signed=True, use_bias=True)
        q_hat = codes.dequantize()
        b_q = codes.bias.repeat_interleave(chunk, dim=0)[:T]  # [T, d]
        b_k, k_max = key_bias_and_max(k[h])  # per channel over all keys; per key token
        k_max = static_or_runtime(k_max[:, 0], None if k_absmax is None else k_absmax[h], 0)[:, None]
        k_hat = symmetric_fake_quant(k[h] - b_k, bits, dim=-1, amax=k_max)
        b_k = b_k[0]
        logits = q_hat @ k_hat.T + b_q @ k[h].T + (qs[h] @ b_k)[:, None] - (b_q @ b_k)[:, None]
        probs = torch.softmax(logits.masked_fill(blocked, -torch.inf), dim=-1)
        p_hat, _ = tender_fake_quant(probs, bits=bits, groups=groups, chunk=chunk, signed=False, use_bias=False)
        v_max = None if v_absmax is None else v_absmax[h][None, :]
        v_hat = symmetric_fake_quant(v[h], bits, dim=0, amax=v_max)  # per head-dim channel
        out[h] = p_hat @ v_hat
    return out
