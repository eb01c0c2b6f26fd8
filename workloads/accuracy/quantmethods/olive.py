"""OliVe (Guo et al., ISCA 2023), as its artifact runs it (shared/reference/quant-baselines.md 2, 4.3).

Outlier-victim pairs: in each pair of adjacent values (2k, 2k+1) of the row-major tensor (along the reduction
dimension for linear weights and inputs), an outlier takes its neighbour's slot and the neighbour (the victim) is
zeroed; if both are outliers the even one is kept. Normal values use int4 or flint4 (chosen per tensor by MSE,
mode "ant-int-flint") or int8; outliers the abfloat grid just above the normal range (``formats.olive_format``).
A value is an outlier when its rounded magnitude lies on the abfloat side of the union grid; between the clip
alpha and that threshold it clips to the normal maximum. The clip is searched over alpha = b0 r, r = 0.75, 0.77,
.., 2.49, b0 = max(|mu + 3 sigma|, |mu - 3 sigma|) (per output row for weights, per tensor for activations), by
the MSE after pairing (victims included). Activations are static after calibration (the calibration windows as
one batch, behind the quantised layers before; the artifact's LLM script initialises on the first evaluation
batch). Only signed tensors are encodable (2.8); every input of the proxies' linears is signed. OliVe's LLM path
is uniform precision; ``quant.int8_share`` > 0 promotes layers to 8 bits by ANT's rule (``mixed.py``), the
"share of the work that may need 8 bits" that the cost model charges OliVe (conf/system/olive.yaml)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from workloads.accuracy import formats
from workloads.accuracy.formats import OliveFormat
from workloads.accuracy.quantmethods._base import QuantMethod, Static, always
from workloads.accuracy.specs import QuantSpec

if TYPE_CHECKING:
    from workloads.accuracy.emulation import Site

RATIOS = torch.arange(75, 250, 2, dtype=torch.float64) / 100  # 88 candidates (llm and bert scripts)
IDENTIFIER = 0b1000  # the victim slot's code (4-bit)


@dataclass(frozen=True)
class Choice:
    """The normal type chosen for a tensor, its clip per row [R], the summed squared error of each type at its best
    clips and the number of values it was summed over, and on the tensor it was chosen on: the share of outliers
    (before pairing), of victims, and of values beyond the top abfloat code (clipped)."""

    normal: str
    alpha: torch.Tensor
    bits: int
    errors: dict[str, float]
    count: int = 1
    outlier_rate: float = 0.0
    victim_rate: float = 0.0
    clip_rate: float = 0.0

    @property
    def format(self) -> OliveFormat:
        return formats.olive_format(self.normal, self.bits)

    @property
    def mse(self) -> float:
        """The chosen type's mean squared error after pairing (what ``quant.int8_share`` ranks layers by)."""
        return self.errors[self.normal] / max(self.count, 1)


def _pairs(x: torch.Tensor) -> torch.Tensor:
    """``x`` [R, K] as pairs [R, K/2, 2] (an odd row gets a zero partner for its last value)."""
    if x.shape[-1] % 2:
        x = torch.nn.functional.pad(x, (0, 1))
    return x.reshape(x.shape[0], -1, 2)


def outlier_values(y: torch.Tensor, fmt: OliveFormat) -> torch.Tensor:
    """Outliers ``y`` (in normal units) on the abfloat grid: sign times the nearest magnitude (clipped to the top)."""
    return torch.sign(y) * formats.nearest(y.abs(), fmt.outlier)


def sse(x: torch.Tensor, fmt: OliveFormat, alphas: torch.Tensor, rows: formats.Sorted | None = None
        ) -> torch.Tensor:
    """Squared error after pairing per row and candidate clip, ``x`` [R, K], ``alphas`` [R, A] -> [R, A]: every
    value's normal error (prefix sums), corrected on the pairs that hold an outlier at some candidate (those with a
    value at or above the smallest candidate's threshold), where the kept outlier's abfloat error and the victim's
    whole value replace the two normal errors."""
    scales = alphas / fmt.normal_max  # [R, A]
    err = formats.sse(x, rows, fmt.normal, scales)
    pairs = _pairs(x)
    t_min = scales.min(-1).values * fmt.threshold  # [R]
    r, p = (pairs.abs() >= t_min.to(x.dtype)[:, None, None]).any(-1).nonzero(as_tuple=True)
    if r.numel() == 0:
        return err
    a, b = pairs[r, p, 0].double()[:, None], pairs[r, p, 1].double()[:, None]  # [P, 1]
    s = scales[r]  # [P, A]
    out_a, out_b = (a / s).abs() >= fmt.threshold, (b / s).abs() >= fmt.threshold
    kept = torch.where(out_a, a, b)
    victim = torch.where(out_a, b, a)
    new = (kept - s * outlier_values(kept / s, fmt)) ** 2 + victim ** 2
    old = (a - formats.quantize(a, fmt.normal, s)) ** 2 + (b - formats.quantize(b, fmt.normal, s)) ** 2
    corr = torch.where(out_a | out_b, new - old, torch.zeros_like(new))
    return err.index_add(0, r, corr)


def search(x: torch.Tensor, bits: int) -> Choice:
    """OliVe's clip search and normal-type choice on rows ``x`` [R, K] (quant-baselines.md 2.4)."""
    xd = x.double()
    mu, sd = xd.mean(-1), xd.std(-1) if xd.shape[-1] > 1 else torch.zeros(xd.shape[0], dtype=torch.float64)
    base = torch.maximum((mu + 3 * sd).abs(), (mu - 3 * sd).abs())
    base = torch.where(base > 0, base, torch.ones_like(base))
    alphas = base[:, None] * RATIOS[None, :]
    best: dict[str, tuple[float, torch.Tensor]] = {}
    rows = formats.Sorted.of(x) if bits == 4 or x.shape[0] == 1 else None  # int8 rows: arithmetic, no sort
    for normal in formats.OLIVE_TYPES[bits]:
        err = sse(x, formats.olive_format(normal, bits), alphas, rows)
        m, i = err.min(-1)
        best[normal] = (float(m.sum()), alphas.gather(1, i[:, None])[:, 0])
    normal = min(best, key=lambda k: best[k][0])
    choice = Choice(normal, best[normal][1], bits, {k: v[0] for k, v in best.items()}, x.numel())
    _, rates = fake_quant(x, choice)
    return Choice(choice.normal, choice.alpha, bits, choice.errors, choice.count, *rates)


def fake_quant(x: torch.Tensor, choice: Choice) -> tuple[torch.Tensor, tuple[float, float, float]]:
    """OliVe's dequantised ``x`` [R, K] (one clip per row, or one for all) and its outlier, victim and clip
    shares."""
    fmt = choice.format
    R, K = x.shape
    alpha = choice.alpha.to(x.dtype)
    scale = (alpha / fmt.normal_max)[:, None] if alpha.numel() == R else (alpha / fmt.normal_max).reshape(1, 1)
    y = x / scale
    outlier = y.abs() >= fmt.threshold
    out = formats.quantize(x, fmt.normal, scale)
    out[outlier] = (outlier_values(y[outlier].double(), fmt).to(x.dtype) * scale.expand_as(y)[outlier])
    o = _pairs(outlier.to(torch.uint8)).bool()
    keep_even, keep_odd = o[..., 0], o[..., 1] & ~o[..., 0]
    victim = torch.stack([keep_odd, keep_even], -1).reshape(R, -1)[:, :K]
    out[victim] = 0
    n = x.numel()
    clip = float((y.abs() > fmt.outlier[-1]).sum()) / n
    return out, (float(outlier.sum()) / n, float(victim.sum()) / n, clip)


def encode_int4(pair: torch.Tensor, alpha: float) -> int:
    """One pair of values as OliVe's byte with int4 normals (quant-baselines.md 2.5; the even value in the high
    nibble): two two's-complement normal codes, or the identifier 1000 in the victim's slot and the outlier's
    abfloat code S E2 M1 (magnitude (2 + m) 2^(e + 2) int4 steps) in the other."""
    fmt = formats.olive_format("int", 4)
    y = pair.double() / (alpha / fmt.normal_max)
    out = y.abs() >= fmt.threshold
    if not out.any():
        a, b = (int(v) & 0xF for v in torch.floor(y + 0.5).clamp(-7, 7).tolist())
        return a << 4 | b
    keep = 0 if out[0] else 1
    mag = float(formats.nearest(y[keep].abs().reshape(1), fmt.outlier)[0])
    e = next(e for e in range(4) for m in range(2) if (2 + m) * 2 ** (e + 2) == mag)
    code = (8 if y[keep] < 0 else 0) | e << 1 | (int(mag // 2 ** (e + 2)) - 2)
    return (code << 4 | IDENTIFIER) if keep == 0 else (IDENTIFIER << 4 | code)


def _calibrate(x: torch.Tensor, spec: QuantSpec, site: Site) -> Static:
    return Static(search(x.reshape(1, -1), spec.bits))


def _activation(x: torch.Tensor, spec: QuantSpec, site: Site) -> tuple[torch.Tensor, None]:
    return fake_quant(x.reshape(1, -1), site.calib.activation)[0].reshape(x.shape), None


def _weight(w: torch.Tensor, spec: QuantSpec, site: Site) -> torch.Tensor:
    return fake_quant(w, site.calib.weight(w, lambda t: search(t, spec.bits)))[0]


METHOD = QuantMethod(activation=_activation, weight=_weight, reads=("bits", "int8_share"), needs_calibration=always,
                     calibrate=_calibrate, mixed_precision=True)
