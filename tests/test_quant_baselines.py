"""ANT, OliVe and SmoothQuant by mechanism: their grids and worked examples from the reference digest
(shared/reference/quant-baselines.md), their choice procedures against brute force and on constructed tensors,
and SmoothQuant's smoothing as an exact rewrite (no model needed)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from workloads.accuracy import formats, mixed
from workloads.accuracy.emulation import quantized
from workloads.accuracy.quantmethods import ant, olive, smoothquant
from workloads.accuracy.specs import QuantSpec


def test_ant_grids_are_the_digest_table() -> None:
    grid = {(k, s): formats.ant_grid(k, 4, s).tolist() for k in ("int", "pot", "flint") for s in (True, False)}
    assert grid["int", True] == list(range(-8, 8))
    assert grid["int", False] == list(range(16))
    assert grid["pot", True] == [-64, -32, -16, -8, -4, -2, -1, 0, 1, 2, 4, 8, 16, 32, 64]
    assert grid["pot", False] == [0] + [2 ** i for i in range(15)]
    assert grid["flint", True] == [-16, -8, -6, -4, -3, -2, -1, 0, 1, 2, 3, 4, 6, 8, 16]
    assert grid["flint", False] == [*range(9), 10, 12, 14, 16, 24, 32, 64]
    assert all(len(g) <= 16 for g in grid.values())  # 4-bit codes
    assert formats.ant_grid("int", 8, True).tolist() == list(range(-128, 128))
    with pytest.raises(ValueError, match="int above 6 bits"):
        formats.ant_grid("flint", 8, True)


def test_ant_worked_example() -> None:
    """Signed flint4 at alpha = 1.6 (s = 0.1): 0.5 ties between 0.4 and 0.6 and goes up, 1.1 -> 0.8, 1.25 -> 1.6;
    int4 at the same alpha: 1.1 -> 5 steps of 1.6/7."""
    x = torch.tensor([[0.5, 1.1, 1.25, -0.5]], dtype=torch.float64)
    choice = ant.Choice("flint", torch.tensor([1.6], dtype=torch.float64), True, 4, {})
    assert ant.fake_quant(x, choice)[0].tolist() == pytest.approx([0.6, 0.8, 1.6, -0.4])
    choice = ant.Choice("int", torch.tensor([1.6], dtype=torch.float64), True, 4, {})
    assert float(ant.fake_quant(x, choice)[0, 1]) == pytest.approx(5 * 1.6 / 7)


@pytest.mark.parametrize(("kind", "bits"), [("int", 4), ("pot", 4), ("flint", 4), ("int", 8)])
def test_squared_error_by_prefix_sums_is_brute_force(kind: str, bits: int) -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(6, 301, generator=g, dtype=torch.float64) * torch.linspace(0.2, 3, 6, dtype=torch.float64)[:, None]
    grid = formats.ant_grid(kind, bits, True)
    scales = (torch.rand(6, 9, generator=g, dtype=torch.float64) + 0.2) * 3 / float(grid[-1])
    brute = torch.stack([((x - formats.quantize(x, grid, scales[:, j:j + 1])) ** 2).sum(-1) for j in range(9)], -1)
    torch.testing.assert_close(formats.grid_sse(formats.Sorted.of(x), grid, scales), brute)
    if kind == "int":
        lo, hi = float(grid[0]), float(grid[-1])
        torch.testing.assert_close(formats.uniform_sse(x, lo, hi, scales), brute)


def test_ant_search_is_the_brute_force_argmin() -> None:
    g = torch.Generator().manual_seed(2)
    w = torch.randn(8, 200, generator=g, dtype=torch.float64)
    w[:, :3] *= 6
    choice = ant.search(w, 4, signed=True)
    lo, hi = ant.SEARCH[4]
    for kind in ("int", "pot", "flint"):
        grid = formats.ant_grid(kind, 4, True)
        total = 0.0
        for r in range(8):
            base = float(w[r].abs().max())
            errs = [float(((w[r] - formats.quantize(w[r], grid, torch.tensor(base * i / 100 / float(grid[-1]),
                                                                              dtype=torch.float64))) ** 2).sum())
                    for i in range(lo, hi)]
            total += min(errs)
            if kind == choice.kind:
                assert float(choice.alpha[r]) == pytest.approx(base * (lo + errs.index(min(errs))) / 100)
        assert choice.errors[kind] == pytest.approx(total)
    assert choice.kind == min(choice.errors, key=choice.errors.get)


@pytest.mark.parametrize(("make", "expected"), [
    (lambda g: torch.rand(1, 4000, generator=g) * 2 - 1, "int"),  # uniform: evenly spaced codes win
    (lambda g: torch.sign(torch.randn(1, 4000, generator=g)) * 2.0 ** torch.randint(0, 7, (1, 4000), generator=g),
     "pot"),  # values on a power-of-two ladder
    (lambda g: torch.distributions.Laplace(0.0, 1.0).sample((1, 4000)), "flint"),  # bell with long tails
    (lambda g: torch.distributions.StudentT(3.0).sample((1, 4000)), "pot"),  # tails heavier still
])
def test_ant_picks_the_type_the_data_suits(make: object, expected: str) -> None:
    torch.manual_seed(0)
    x = make(torch.Generator().manual_seed(3)).double()  # type: ignore[operator]
    assert ant.search(x, 4, signed=True).kind == expected
    assert ant.search(x, 8, signed=True).kind == "int"  # 8 bits: int only


def test_ant_calibration_takes_an_unsigned_tensor_unsigned() -> None:
    site = type("S", (), {"name": "x.qkv"})()
    x = torch.rand(64, 32)
    assert not ant._calibrate(x, QuantSpec("ant", bits=4), site).activation.signed  # type: ignore[arg-type]
    assert ant._calibrate(x - 0.5, QuantSpec("ant", bits=4), site).activation.signed  # type: ignore[arg-type]


def test_olive_grids_and_thresholds() -> None:
    assert formats.abfloat_normalised(4) == [48, 64, 96, 128, 192, 256, 384]
    eight = formats.abfloat_normalised(8)
    assert len(eight) == 127 and eight[0] == 33 and eight[-1] == 504
    int4, flint4, int8 = (formats.olive_format(n, b) for n, b in (("int", 4), ("flint", 4), ("int", 8)))
    # the outlier threshold in units of alpha (quant-baselines.md 2.4) and the outlier ceiling (2.3)
    assert int4.threshold / int4.normal_max == pytest.approx(1.357, abs=1e-3)
    assert flint4.threshold / flint4.normal_max == pytest.approx(1.25)
    assert int8.threshold / int8.normal_max == pytest.approx(1.020, abs=1e-3)
    assert float(int4.outlier[-1]) / int4.normal_max == pytest.approx(13.7, abs=0.02)
    assert float(flint4.outlier[-1]) / flint4.normal_max == pytest.approx(12.0)
    assert int4.outlier.tolist() == [12, 16, 24, 32, 48, 64, 96]  # (2 + m) 2^(e + 2) int4 steps


@pytest.mark.parametrize(("pair", "alpha", "byte", "value"), [
    ((-5.2, -98.0), 7.0, "10001111", (0.0, -96.0)),  # the figure (unit int4 step)
    ((17.6, 4.2), 7.0, "00101000", (16.0, 0.0)),
    ((30.7, 5.9), 7.0, "01001000", (32.0, 0.0)),
    ((0.23, 2.9), 0.7, "10000100", (0.0, 3.2)),  # the digest's own table (step 0.1)
    ((-0.68, 0.04), 0.7, "10010000", (-0.7, 0.0)),
    ((1.37, -0.46), 0.7, "00011000", (1.2, 0.0)),
    ((0.85, 0.1), 0.7, "01110001", (0.7, 0.1)),
])
def test_olive_encodes_the_digest_pairs(pair: tuple[float, float], alpha: float, byte: str,
                                        value: tuple[float, float]) -> None:
    x = torch.tensor([pair], dtype=torch.float64)
    assert format(olive.encode_int4(x[0], alpha), "08b") == byte
    choice = olive.Choice("int", torch.tensor([alpha], dtype=torch.float64), 4, {})
    assert olive.fake_quant(x, choice)[0][0].tolist() == pytest.approx(value)


def test_olive_keeps_the_even_outlier_of_two() -> None:
    x = torch.tensor([[5.0, -9.0, 0.1, 0.2]], dtype=torch.float64)
    choice = olive.Choice("int", torch.tensor([0.7], dtype=torch.float64), 4, {})
    out, (outliers, victims, _clip) = olive.fake_quant(x, choice)
    assert out[0, 1] == 0 and out[0, 0] == pytest.approx(4.8)  # 50 steps -> 48: kept; the odd one is the victim
    assert outliers == 0.5 and victims == 0.25


@pytest.mark.parametrize(("normal", "bits"), [("int", 4), ("flint", 4), ("int", 8)])
def test_olive_error_after_pairing_is_brute_force(normal: str, bits: int) -> None:
    g = torch.Generator().manual_seed(4)
    x = torch.randn(5, 64, generator=g, dtype=torch.float64)
    x[0, 5], x[1, 6], x[1, 7], x[2, 10], x[3, 0] = 9, 8, -7, 6, -12
    alphas = torch.rand(5, 6, generator=g, dtype=torch.float64) * 2 + 0.8
    brute = torch.stack([((olive.fake_quant(x, olive.Choice(normal, alphas[:, j], bits, {}))[0] - x) ** 2).sum(-1)
                         for j in range(6)], -1)
    torch.testing.assert_close(olive.sse(x, formats.olive_format(normal, bits), alphas), brute)


def test_olive_search_starts_from_three_sigma_and_picks_by_error() -> None:
    g = torch.Generator().manual_seed(5)
    x = torch.randn(1, 5000, generator=g, dtype=torch.float64)
    x[0, ::97] *= 12  # sparse outliers
    choice = olive.search(x, 4)
    base = max(abs(float(x.mean() + 3 * x.std())), abs(float(x.mean() - 3 * x.std())))
    ratio = float(choice.alpha[0]) / base
    assert 0.75 - 1e-9 <= ratio <= 2.49 + 1e-9 and round(ratio * 100) % 2 == 1
    assert choice.normal == min(choice.errors, key=choice.errors.get)
    assert 0 < choice.victim_rate <= choice.outlier_rate


class Attn(nn.Module):
    """A norm feeding q/k/v (a smoothed site, ``attn.qkv``), then o_proj (not smoothed, ``attn.o_proj``)."""

    def __init__(self, width: int = 64) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.q_proj, self.k_proj, self.v_proj = (nn.Linear(width, width) for _ in range(3))
        self.o_proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        return self.o_proj(self.q_proj(h) * self.k_proj(h) + self.v_proj(h))


class Normed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attn = Attn()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attn(x)


def _calibrated(model: nn.Module, spec: QuantSpec, x: torch.Tensor) -> dict:
    with quantized(model, spec, calibrating=True) as sites:
        model(x)
    return {n: s.calib for n, s in sites.items()}


@torch.no_grad()
def test_smoothing_is_an_exact_rewrite_and_follows_the_formula() -> None:
    torch.manual_seed(0)
    model = Normed()
    x = torch.randn(1, 128, 64) * torch.linspace(0.1, 20, 64)
    spec = QuantSpec("smoothquant", bits=8, smooth_alpha=0.5, quantize_weights=False, quantize_activations=False)
    calib = _calibrated(model, spec, x)
    assert calib["attn.o_proj"].factors is None  # o_proj's input is not smoothed
    a = model.attn
    h = a.norm(x).reshape(-1, 64)
    w_max = torch.stack([m.weight.abs().amax(0) for m in (a.q_proj, a.k_proj, a.v_proj)]).amax(0)
    torch.testing.assert_close(calib["attn.qkv"].factors, (h.abs().amax(0) ** 0.5 / w_max ** 0.5).clamp(min=1e-5))
    plain = model(x)
    with quantized(model, spec, calib):
        torch.testing.assert_close(model(x), plain, rtol=1e-5, atol=1e-5)
    smoothed = QuantSpec("smoothquant", bits=8, smooth_alpha=0.5)
    with quantized(model, smoothed, _calibrated(model, smoothed, x)):
        with_smoothing = (model(x) - plain).norm()
    with quantized(model, QuantSpec("per_token", bits=8)):
        plain_rtn = (model(x) - plain).norm()
    assert with_smoothing < plain_rtn  # the outlier channels' migration pays at 8 bits
    assert smoothquant.factors(torch.tensor([4.0]), torch.tensor([1.0]), 1.0).item() == 4.0


@torch.no_grad()
def test_static_per_tensor_scale_is_the_calibrated_maximum() -> None:
    torch.manual_seed(0)
    model = Normed()
    x = torch.randn(1, 64, 64)
    spec = QuantSpec("smoothquant", bits=8, act_scale="per_tensor")
    calib = _calibrated(model, spec, x)
    c = calib["attn.qkv"]
    assert float(c.smoothed_max) == pytest.approx(float((c.absmax / c.factors).max()))
    big = x * 3  # beyond the calibrated maximum: clips
    with quantized(model, spec, calib) as sites:
        model(big)
        xq, _ = sites["attn.qkv"]._value
    assert float(xq.abs().max()) == pytest.approx(float(c.smoothed_max), rel=1e-5)


@torch.no_grad()
def test_quant_sites_restricts_what_is_wrapped() -> None:
    model = Normed()
    with quantized(model, QuantSpec("per_tensor", bits=4, sites=r"\.o_proj$")) as sites:
        assert list(sites) == ["attn.o_proj"] and isinstance(model.attn.q_proj, nn.Linear)
    with pytest.raises(ValueError, match="quant.sites"):
        QuantSpec("per_tensor", sites="(")


class Stack(nn.Module):
    """Three norm-fed attention blocks: six sites (``layers.i.qkv``, ``layers.i.o_proj``), 12 linears."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList(Attn() for _ in range(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = x + layer(x)
        return x


def test_promotion_forces_the_last_two_linears_then_ranks_by_error() -> None:
    s = [mixed.LinearScore("l0", "a", 5.0, 10), mixed.LinearScore("l1", "b", 9.0, 10),
         mixed.LinearScore("l2", "c", 1.0, 10), mixed.LinearScore("l3", "d", 7.0, 30),
         mixed.LinearScore("l4", "e", 0.0, 20), mixed.LinearScore("l5", "f", 0.0, 20)]
    assert mixed.promote(s, 0.0) == frozenset()
    assert mixed.promote(s, 0.01) == {"e", "f"}  # the forced pair alone already holds 40 % of the MACs
    assert mixed.promote(s, 0.45) == {"e", "f", "b"}  # then the largest error first, not the largest layer
    assert mixed.promote(s, 0.6) == {"e", "f", "b", "d"}
    assert mixed.promote(s, 1.0) == {"a", "b", "c", "d", "e", "f"}
    assert mixed.mac_share(s, frozenset({"e", "f", "b", "d"})) == pytest.approx(0.8)


@torch.no_grad()
@pytest.mark.parametrize("method", ["ant", "olive"])
def test_mixed_precision_runs_the_promoted_sites_at_8_bits(method: str) -> None:
    torch.manual_seed(0)
    model = Stack()
    x = torch.randn(1, 64, 64) * torch.linspace(0.1, 8, 64)
    four = QuantSpec(method, bits=4)
    scores = mixed.linear_scores(model, _calibrated(model, four, x))
    assert len(scores) == 12 and all(s.mse > 0 for s in scores)
    assert {s.site for s in scores[-2:]} == {"layers.2.qkv", "layers.2.o_proj"}
    share = QuantSpec(method, bits=4, int8_share=0.5)
    promoted = mixed.promote(scores, share.int8_share)
    assert {"layers.2.qkv", "layers.2.o_proj"} <= promoted and mixed.mac_share(scores, promoted) >= 0.5
    with quantized(model, share, calibrating=True, promoted=promoted) as sites:
        model(x)
    assert {n for n, site in sites.items() if site.spec.bits == 8} == promoted
    assert {n for n, site in sites.items() if site.spec.bits == 4} == set(sites) - promoted
    calib = {n: site.calib for n, site in sites.items()}
    with quantized(model, share, calib, promoted=promoted):
        y_mixed = model(x)
    with quantized(model, four, _calibrated(model, four, x)):
        y_four = model(x)
    eight = QuantSpec(method, bits=8)
    everything = frozenset(s.site for s in scores)
    with quantized(model, share, calibrating=True, promoted=everything) as sites:
        model(x)
    with quantized(model, share, {n: site.calib for n, site in sites.items()}, promoted=everything):
        y_all = model(x)
    with quantized(model, eight, _calibrated(model, eight, x)):
        y_eight = model(x)
    plain = model(x)
    assert torch.equal(y_all, y_eight)  # every site promoted is uniform 8 bits, bit for bit
    assert (y_eight - plain).norm() < (y_mixed - plain).norm() < (y_four - plain).norm()


def test_the_8_bit_share_is_read_at_4_bits_only() -> None:
    from workloads.accuracy.emulation import quant_method

    assert QuantSpec("ant", bits=8, int8_share=0.3).int8_share == 0.0
    keys = {str(quant_method("ant").key_fields(QuantSpec("ant", bits=4, int8_share=s))) for s in (0.0, 0.3)}
    assert len(keys) == 2
    assert "int8_share" not in quant_method("tender").key_fields(QuantSpec("tender", bits=4, int8_share=0.3))
    with pytest.raises(ValueError, match="quant.int8_share"):
        QuantSpec("ant", bits=4, int8_share=1.5)


def test_every_layer_promoted_is_measured_as_uniform_8_bits() -> None:
    from workloads.accuracy.emulation import quant_method

    ant_ = quant_method("ant")
    assert ant_.canonical(QuantSpec("ant", bits=4, int8_share=1.0)) == QuantSpec("ant", bits=8)
    assert ant_.key_fields(QuantSpec("ant", bits=4, int8_share=1.0)) == ant_.key_fields(QuantSpec("ant", bits=8))
    assert ant_.canonical(QuantSpec("ant", bits=4, int8_share=0.5)).bits == 4
    tender_ = quant_method("tender")
    assert tender_.canonical(QuantSpec("tender", bits=4, int8_share=1.0)).bits == 4  # not a mixed-precision method
