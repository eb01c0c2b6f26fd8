"""The emulation's shared-activation cache: several windows through one wrapped model must each be
quantised afresh (a later activation can reuse the memory of an earlier, freed one)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from workloads.accuracy.emulation import collect_calibration, quant_method, quantized
from workloads.accuracy.specs import QuantSpec, quant_method_names

WIDTH, TOKENS = 128, 1024  # 512 KiB activations: freed buffers tend to come back at the same address


class Block(nn.Module):
    """A norm (or nothing) feeding q and k projections: the two share one quantisation site (``layer.qkv``)."""

    def __init__(self, norm: bool = True) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(WIDTH) if norm else nn.Identity()
        self.q_proj = nn.Linear(WIDTH, WIDTH)
        self.k_proj = nn.Linear(WIDTH, WIDTH)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        return self.q_proj(h) + self.k_proj(h)


class Tiny(nn.Module):
    def __init__(self, norm: bool) -> None:
        super().__init__()
        self.layer = Block(norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


def windows(n: int = 4) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [torch.randn(1, TOKENS, WIDTH, generator=g) * (i + 1) for i in range(n)]


def summary(out: torch.Tensor) -> tuple[float, list[float]]:
    """Plain numbers only: keeping the output tensors alive would change which buffers get reused, and
    the harness keeps only a loss per window too."""
    return float(out.double().square().sum()), out[0, 0].tolist()


@pytest.mark.parametrize("norm", [True, False])
@torch.no_grad()
def test_every_window_is_quantised_afresh(norm: bool) -> None:
    """With the norm, each window's activation is a new buffer (which the allocator may place where the
    last one lay); without it, the quantised activation is the input itself, a new tensor over the same
    memory each window: an address-keyed cache serves window 1's result to every later window."""
    torch.manual_seed(0)
    model = Tiny(norm)
    spec = QuantSpec("tender", bits=4, groups=4, chunk=256)
    xs = windows()
    fresh = []
    for x in xs:  # one wrapper per window: nothing can be cached across windows
        with quantized(model, spec):
            fresh.append(summary(model(x)))
    with quantized(model, spec):  # one wrapper for all windows, as the perplexity harness does
        shared = [summary(model(x)) for x in xs]
        # The same memory refilled for every window (a new tensor each time, at the same address and with
        # version 0): what an allocator that hands a freed buffer to the next window amounts to.
        buffer = np.empty((1, TOKENS, WIDTH), dtype=np.float32)
        same_address = []
        for x in xs:
            buffer[...] = x.numpy()
            same_address.append(summary(model(torch.from_numpy(buffer))))
    assert len({f[0] for f in fresh}) == len(xs), "the windows should give different outputs"
    for i in range(len(xs)):
        assert shared[i] == fresh[i], f"window {i} used a stale quantised activation"
        assert same_address[i] == fresh[i], f"window {i} (same buffer) used a stale quantised activation"


class Wrapper(nn.Module):
    """``collect_calibration`` runs ``model.model(input_ids=...)``: a stand-in that maps ids to vectors,
    each window's activation a new tensor over the same memory (as a reused buffer would be)."""

    def __init__(self) -> None:
        super().__init__()
        self.model = self
        self.embed = nn.Embedding(100, WIDTH)
        self.layer = Block()
        self.buffer = np.empty((1, TOKENS, WIDTH), dtype=np.float32)

    def forward(self, input_ids: torch.Tensor, use_cache: bool = False) -> torch.Tensor:
        self.buffer[...] = self.embed(input_ids).numpy()
        return self.layer(torch.from_numpy(self.buffer))


@torch.no_grad()
def test_calibration_sees_every_window() -> None:
    torch.manual_seed(0)
    model = Wrapper()
    ids = torch.randint(0, 100, (4, TOKENS), generator=torch.Generator().manual_seed(1))
    stats = collect_calibration(model, ids, chunk=16, device=torch.device("cpu"))["layer.qkv"]
    per_window = [collect_calibration(model, ids[i:i + 1], chunk=16, device=torch.device("cpu"))["layer.qkv"]
                  for i in range(4)]
    torch.testing.assert_close(stats.tmax, torch.stack([s.tmax for s in per_window]).amax(0))
    torch.testing.assert_close(stats.bias, torch.stack([s.bias for s in per_window]).mean(0))


@pytest.mark.parametrize("name", quant_method_names())
def test_every_quantisation_method_keeps_shapes_and_restores_the_model(name: str) -> None:
    """The contract of a module of ``quantmethods/``: wrapped around a model, its quantised forward keeps the
    output's shape and finiteness (and differs from the plain one, unless it is ``none``); afterwards the model is
    as it was (its own linear layers and weights back)."""
    torch.manual_seed(0)
    model = Tiny(norm=True)
    x = torch.randn(1, 256, WIDTH) * torch.linspace(0.1, 8.0, WIDTH)  # channels of very different ranges
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    spec = QuantSpec(method=name, bits=4, groups=4, chunk=64)
    with torch.no_grad():
        plain = model(x)
        calib = None
        if quant_method(name).calibrate is not None:  # static parameters: a calibration pass on other data first
            with quantized(model, spec, calibrating=True) as sites:
                model(torch.randn(1, 256, WIDTH) * torch.linspace(0.1, 8.0, WIDTH))
            calib = {n: site.calib for n, site in sites.items()}
            assert all(c is not None for c in calib.values())
        with quantized(model, spec, calib):
            quant = model(x)
    assert quant.shape == plain.shape and bool(torch.isfinite(quant).all())
    assert (name == "none") == bool(torch.equal(quant, plain))
    assert isinstance(model.layer.q_proj, nn.Linear)
    assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())
    assert quant_method(name).label(QuantSpec(method=name)).startswith(name)


def test_a_static_method_without_its_calibration_says_so() -> None:
    model = Tiny(norm=True)
    with quantized(model, QuantSpec(method="ant", bits=4)), pytest.raises(ValueError, match="calibrat"):
        model(torch.randn(1, 16, WIDTH))
