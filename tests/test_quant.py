"""Tender's quantiser and the baselines on synthetic tensors (no model needed)."""

from __future__ import annotations

import pytest
import torch

from workloads.accuracy import quant


def planted(T: int = 300, C: int = 96, seed: int = 0) -> torch.Tensor:
    """Activations with a few outlier channels (x40) and channel offsets, like LLM linear inputs."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(T, C, generator=g, dtype=torch.float64)
    x[:, [3, 17, 60]] *= 40.0
    x += torch.linspace(-2, 2, C, dtype=torch.float64)[None, :]
    return x


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


OUTLIERS = [3, 17, 60]


@pytest.mark.parametrize("bits", [4, 8])
def test_tender_error_far_below_per_tensor(bits: int) -> None:
    """The many normal channels keep fine steps under Tender; per-tensor scaling gives them the
    outliers' coarse step."""
    x = planted()
    tender, beta = quant.tender_fake_quant(x, bits=bits, groups=8, chunk=64)
    assert beta is not None
    recon = tender + beta.repeat_interleave(64, 0)[: x.shape[0]]
    normal = [c for c in range(x.shape[1]) if c not in OUTLIERS]
    err_tender = rel_err(recon[:, normal], x[:, normal])
    err_tensor = rel_err(quant.symmetric_fake_quant(x, bits, None)[:, normal], x[:, normal])
    err_token = rel_err(quant.symmetric_fake_quant(x, bits, -1)[:, normal], x[:, normal])
    assert err_tender < err_tensor / 5
    assert err_tender < err_token / 3
    assert rel_err(recon, x) < rel_err(quant.symmetric_fake_quant(x, bits, None), x)


def test_group_one_without_bias_is_per_chunk_per_tensor() -> None:
    x = planted()
    xq, beta = quant.tender_fake_quant(x, bits=8, groups=1, chunk=1000, use_bias=False)
    assert beta is None
    torch.testing.assert_close(xq, quant.symmetric_fake_quant(x, 8, None))


def test_group_assignment_boundaries_rup_and_rdn() -> None:
    t = torch.tensor([8.0])
    # thresholds for G = 4: 1, 2, 4, 8
    m = torch.tensor([[0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 8.0]])
    assert quant.assign_groups(m, t, 4, "rup").tolist() == [[0, 0, 1, 1, 2, 2, 3]]
    assert quant.assign_groups(m, t, 4, "rdn").tolist() == [[0, 0, 0, 1, 1, 2, 3]]


def test_rup_never_clips_and_scales_are_a_power_of_two_ladder() -> None:
    x = planted()
    c = quant.tender_codes(x, bits=4, groups=6, chunk=50)
    qmin, qmax = quant.qrange(4, True)
    z = x - c.bias.repeat_interleave(50, 0)[: x.shape[0]]
    s = c.scales()
    assert torch.all(z.view(-1, 50, x.shape[1]).abs() <= s[:, None, :] * qmax * (1 + 1e-12))
    ratios = s / c.s0[:, None]
    assert torch.all(torch.log2(ratios) == c.group.to(ratios.dtype))
    assert c.codes.min() >= qmin and c.codes.max() <= qmax


def test_unsigned_operands_use_the_full_range() -> None:
    x = torch.relu(planted())
    c = quant.tender_codes(x, bits=4, groups=4, chunk=64, signed=False, use_bias=False)
    assert c.codes.min() >= 0 and c.codes.max() == 15


def test_bias_is_added_back_exactly() -> None:
    x = planted(T=128)
    w = torch.randn(40, x.shape[1], dtype=torch.float64)
    xq, beta = quant.tender_fake_quant(x, bits=8, groups=8, chunk=32)
    y = xq @ w.T + (beta @ w.T).repeat_interleave(32, 0)
    exact = x @ w.T
    assert rel_err(y, exact) < 0.02


@pytest.mark.parametrize(("bits", "groups", "chunk"), [(4, 8, 64), (8, 4, 100), (4, 14, 300), (8, 1, 64)])
def test_integer_shift_accumulate_equals_sum_of_dequantised_groups(bits: int, groups: int, chunk: int) -> None:
    x = planted(T=200)
    w = torch.randn(24, x.shape[1], dtype=torch.float64)
    codes = quant.tender_codes(x, bits=bits, groups=groups, chunk=chunk)
    wq, s_w = quant.weight_codes(w, bits)
    hardware = quant.integer_shift_accumulate(codes, wq, s_w)
    fake = codes.dequantize() @ (wq * s_w[:, None]).T
    torch.testing.assert_close(hardware, fake, rtol=1e-10, atol=1e-10)


def test_calibrated_statistics_are_used_and_fall_back_at_runtime() -> None:
    x = planted(T=256)
    stats = quant.chunk_stats(planted(T=128, seed=5), 64, True)  # 2 calibrated chunk indices
    c = quant.tender_codes(x, bits=8, groups=4, chunk=64, calib=stats)
    torch.testing.assert_close(c.bias[:2], stats.bias)
    runtime = quant.chunk_stats(x, 64, True)
    torch.testing.assert_close(c.bias[2:], runtime.bias[2:])


def test_per_token_beats_per_tensor_on_token_outliers() -> None:
    x = planted()
    x[5] *= 100
    assert rel_err(quant.symmetric_fake_quant(x, 8, -1), x) < rel_err(quant.symmetric_fake_quant(x, 8, None), x)


def test_tender_all_attention_close_at_8_bits_and_worse_at_4() -> None:
    torch.manual_seed(3)
    H, T, d = 2, 96, 16
    q, k, v = (torch.randn(H, T, d, dtype=torch.float64) for _ in range(3))
    q[:, :, 3] *= 8  # an outlier channel
    scale = d ** -0.5
    future = torch.ones(T, T, dtype=torch.bool).triu(1)
    exact = torch.softmax((q * scale) @ k.transpose(-1, -2) + torch.where(future, -torch.inf, 0.0), -1) @ v
    e8 = rel_err(quant.tender_attention(q, k, v, scale, bits=8, groups=8, chunk=32), exact)
    e4 = rel_err(quant.tender_attention(q, k, v, scale, bits=4, groups=8, chunk=32), exact)
    assert e8 < 0.02 < e4 < 0.5


def test_tender_all_static_scales() -> None:
    """Static K (per key position) and V (per channel) maxima equal to the window's own reproduce the runtime result
    exactly; maxima half as large clip and cost accuracy; a window longer than the calibration falls back to the
    runtime maxima for the positions beyond it; a sliding window masks keys `window` or more positions back."""
    torch.manual_seed(5)
    H, T, d = 2, 64, 16
    q, k, v = (torch.randn(H, T, d, dtype=torch.float64) for _ in range(3))
    kw = {"bits": 8, "groups": 4, "chunk": 32}
    runtime = quant.tender_attention(q, k, v, 0.25, **kw)
    k_max = torch.stack([quant.key_bias_and_max(k[h])[1][:, 0] for h in range(H)])  # [H, T]
    v_max = v.abs().amax(1)  # [H, d]
    torch.testing.assert_close(quant.tender_attention(q, k, v, 0.25, k_absmax=k_max, v_absmax=v_max, **kw), runtime,
                               rtol=0, atol=0)
    torch.testing.assert_close(quant.tender_attention(q, k, v, 0.25, k_absmax=k_max[:, :10], v_absmax=v_max, **kw),
                               runtime, rtol=0, atol=0)  # positions 10.. at runtime maxima: the same values
    future = torch.ones(T, T, dtype=torch.bool).triu(1)
    exact = torch.softmax((q * 0.25) @ k.transpose(-1, -2) + torch.where(future, -torch.inf, 0.0), -1) @ v
    clipped = quant.tender_attention(q, k, v, 0.25, k_absmax=k_max / 2, v_absmax=v_max / 2, **kw)
    assert rel_err(clipped, exact) > 2 * rel_err(runtime, exact)
    window = 8
    blocked = future | torch.ones(T, T, dtype=torch.bool).tril(-window)
    local = torch.softmax((q * 0.25) @ k.transpose(-1, -2) + torch.where(blocked, -torch.inf, 0.0), -1) @ v
    assert rel_err(quant.tender_attention(q, k, v, 0.25, window=window, **kw), local) < 0.02


def test_tender_all_bias_terms_are_exact_without_rounding() -> None:
    """With enough bits the bias decomposition Q'K'^T + b_Q K^T + Q b_K^T - b_Q b_K^T is exact."""
    torch.manual_seed(4)
    H, T, d = 1, 40, 8
    q, k, v = (torch.randn(H, T, d, dtype=torch.float64) + 3.0 for _ in range(3))
    future = torch.ones(T, T, dtype=torch.bool).triu(1)
    exact = torch.softmax((q * 0.5) @ k.transpose(-1, -2) + torch.where(future, -torch.inf, 0.0), -1) @ v
    got = quant.tender_attention(q, k, v, 0.5, bits=16, groups=4, chunk=16)
    assert rel_err(got, exact) < 1e-3


def test_olaccel_keeps_the_largest_share_and_quantises_the_rest_over_the_normal_range() -> None:
    """OLAccel: exactly round(ratio x n) outliers keep their value (FP16); the rest is quantised max-abs over
    the normal values only, so their error is at most half a step of (largest normal) / 7."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(512, 64, generator=g)
    x[:, 5] *= 50.0  # an outlier channel
    ratio = 0.02
    y = quant.outlier_fake_quant(x, 4, ratio)
    n_out = round(ratio * x.numel())
    order = x.abs().reshape(-1).argsort(descending=True)
    outliers, normal = order[:n_out], order[n_out:]
    assert torch.equal(y.reshape(-1)[outliers], x.reshape(-1)[outliers].half().float())
    step = x.abs().reshape(-1)[normal].max() / 7
    assert (y.reshape(-1)[normal] - x.reshape(-1)[normal]).abs().max() <= step / 2 + 1e-6
    assert (y - x).pow(2).mean() < 0.05 * (quant.symmetric_fake_quant(x, 4, None) - x).pow(2).mean()
    w = torch.randn(8, 100, generator=g)
    wq = quant.outlier_fake_quant(w, 4, 0.05, dim=-1)  # per output row: 5 outliers each
    top = w.abs().topk(5, dim=-1).indices
    assert torch.equal(wq.gather(-1, top), w.gather(-1, top).half().float())
    assert torch.equal(quant.outlier_fake_quant(x, 4, 0.0), quant.symmetric_fake_quant(x, 4, None))


@pytest.mark.parametrize(("rows", "chunk", "use_bias", "signed", "calibrated"), [
    (256, 64, True, True, False), (300, 64, True, True, False), (256, 256, False, False, False),
    (300, 64, True, True, True), (256, 64, False, True, True)])
def test_the_in_place_fake_quantiser_is_the_codes_dequantised_bit_for_bit(rows: int, chunk: int, use_bias: bool,
                                                                         signed: bool, calibrated: bool) -> None:
    """The emulation's fast path (one buffer, in place) and the integer codes of the hardware check are one
    computation: equal bits, float32 like the model, whether the rows tile the chunks or are padded, and with
    calibrated statistics that cover only some chunks."""
    x = planted(T=rows).float()
    if not signed:
        x = x.abs()
    calib = quant.chunk_stats(planted(T=128, seed=1).float(), chunk, use_bias) if calibrated else None
    kw = {"bits": 4, "groups": 8, "chunk": chunk, "signed": signed, "use_bias": use_bias, "calib": calib}
    fast, beta = quant.tender_fake_quant(x, **kw)
    codes = quant.tender_codes(x, **kw)
    assert torch.equal(fast, codes.dequantize())
    assert (beta is None) == (codes.bias is None) and (beta is None or torch.equal(beta, codes.bias))
    assert torch.equal(x, planted(T=rows).float().abs() if not signed else planted(T=rows).float())  # input kept


@pytest.mark.parametrize("rows", [256, 250])
def test_the_per_chunk_add_back_is_the_repeated_rows_added(rows: int) -> None:
    from workloads.accuracy.emulation import add_per_chunk

    y = torch.randn(rows, 40)
    corr = torch.randn(-(-rows // 64), 40)
    expected = y + corr.repeat_interleave(64, dim=0)[:rows]
    assert torch.equal(add_per_chunk(y.clone(), corr, 64), expected)
