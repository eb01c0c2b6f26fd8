"""``python -m dse.studies.baseline_inputs [--write] [overrides...]``: measure the baselines' model-dependent
inputs on the Llama-family proxy model (SmolLM2, ``accuracy.*``), for the Llama-2 rows of the Tender comparison.

OLAccel's outlier ratio: OLAccel keeps the largest ``rho`` of each activation tensor (and weight row) at 16
bits and quantises the rest at 4 bits over the normal range (``quant.method=olaccel``). Its paper's default,
3 %, was chosen for CNNs; what an LLM needs depends on how heavy its outliers are. The input is the smallest
``rho`` that holds accuracy on the proxy: perplexity within ``accuracy.max_ppl_increase`` of the unquantised
model (the project's own acceptance bound): a grid of ratios, then three measured steps of regula falsi on
log-perplexity between the grid points around the bound (the value written is a measured one that meets it). One proxy
stands for the Llama family, so the three Llama-2 rows get the same value; the OPT rows keep the published
default (no OPT-family model is loaded here).

ANT's and OliVe's 8-bit share: both accelerators run INT4 designs with a share of the MACs at 8 bits
(``int8_share`` in conf/system/ant.yaml, olive.yaml). The input is the smallest share that holds accuracy by the
same rule, with the layers chosen by ANT's mixed-precision rule (``quant.int8_share``, workloads/accuracy/
mixed.py: the last two linears, then the largest weight + input MSE at 4 bits). The shares are scanned upwards
from uniform INT4 and the scan stops at the first that meets the bound; a share of 1 is uniform INT8 (every site
promoted is bit-identical to ``quant.bits=8``, tests/test_quant_baselines.py), and is measured first: a method
that misses the bound even there gets 1, the grid's end, and the table says so.

(Matching Tender INT4 at each model's published G instead was tried and is degenerate on this proxy: Tender
INT4 with G = 14-20 reaches ppl 268 against 23.1 dense, worse than OLAccel at any ratio on the grid.)
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass

from dse.config import CONF_DIR
from dse.studies.fidelity import compose_config
from workloads.accuracy.specs import QuantSpec

LLAMA_MODELS = ("llama2_7b", "llama2_13b", "llama2_70b")
RATIOS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.08, 0.12, 0.2)
#: the 8-bit shares scanned (ANT's and OliVe's), and the methods that run INT4 designs with such a share
SHARES = (0.0, 0.1, 0.25, 0.5, 0.75, 1.0)
SHARED_8BIT = ("ant", "olive")
REFINE_STEPS = 3  # measurements between the bracketing grid points (baseline_inputs.refine)
UNITS = {"outlier_ratio": "share of activations", "int8_share": "share of MACs"}
COMMAND = "python -m dse.studies.baseline_inputs --write"


def iso_accuracy_ratio(grid: list[tuple[float, float]], target: float) -> float:
    """Smallest ratio whose perplexity reaches ``target``: log-perplexity interpolated linearly between
    the grid points (ratio ascending, perplexity falling); the grid's ends when it is never or always met."""
    if grid[0][1] <= target:
        return grid[0][0]
    for (r0, p0), (r1, p1) in zip(grid, grid[1:], strict=False):
        if p1 <= target:
            t = (math.log(p0) - math.log(target)) / (math.log(p0) - math.log(p1))
            return r0 + t * (r1 - r0)
    return grid[-1][0]


def measure(overrides: list[str]) -> dict[str, dict[str, Input]]:
    """Each Llama-2 model's measured inputs: system -> parameter -> :class:`Input` (one proxy for all three)."""
    from dse.oracle import AccuracyOracle

    cfg = compose_config(overrides)
    oracle = AccuracyOracle(cfg.accuracy)
    dense = oracle.baseline().ppl
    bound = cfg.accuracy.max_ppl_increase if cfg.accuracy.max_ppl_increase is not None else 5.0
    target = dense + bound
    print(f"proxy {oracle.source.name}: dense ppl {dense:.3f}; bound +{bound:g} (ppl {target:.3f})")
    def olaccel(r: float) -> float:
        return oracle.measure(QuantSpec(method="olaccel", bits=4, outlier_ratio=r)).ppl

    found = {("olaccel", "outlier_ratio"): refine(olaccel, [(r, olaccel(r)) for r in RATIOS], target)}
    for method in SHARED_8BIT:
        def at(share: float, m: str = method) -> float:
            return oracle.measure(share_spec(m, share)).ppl

        found[(method, "int8_share")] = refine(at, share_scan(at, target), target)
    for (system, param), (_value, grid, _met) in found.items():
        print(f"{system} INT4 ppl by {param}: " + ", ".join(f"{r:.4g}: {p:.3f}" for r, p in grid))
    inputs: dict[str, dict[str, Input]] = {}
    for (system, param), (value, grid, met) in found.items():
        inputs.setdefault(system, {})[param] = Input(value, tuple(grid), met, dense, bound)
        print(f"{system}.{param}: {value:.4f}" + ("" if met else " (the bound is never met: the grid's end)"))
    return {model: inputs for model in LLAMA_MODELS}


@dataclass(frozen=True)
class Input:
    """One measured input: its value, the (setting, ppl) grid it came from, whether the bound was met on it,
    and the dense perplexity and bound it was measured against."""

    value: float
    grid: tuple[tuple[float, float], ...]
    met: bool
    dense_ppl: float
    bound: float


def refine(ppl_at: Callable[[float], float], grid: list[tuple[float, float]], target: float,
           steps: int = REFINE_STEPS) -> tuple[float, list[tuple[float, float]], bool]:
    """(value, every (setting, ppl) measured, whether the bound is met): the smallest *measured* setting that meets
    ``target``. Between the last grid point that misses it and the first that meets it, ``steps`` of regula falsi
    on log-perplexity (each candidate rounded to 4 decimals, as it is written to conf/model/, so the measured value is
    the configured one); the grid's start when it already meets the bound, its end when no point does."""
    grid = sorted(grid)
    first = next((i for i, (_r, p) in enumerate(grid) if p <= target), None)
    if first is None or first == 0:
        return grid[-1 if first is None else 0][0], grid, first is not None
    lo, hi = grid[first - 1], grid[first]
    for _ in range(steps):
        r = round(iso_accuracy_ratio([lo, hi], target), 4)
        if not lo[0] < r < hi[0]:
            break
        point = (r, ppl_at(r))
        grid.append(point)
        lo, hi = (lo, point) if point[1] <= target else (point, hi)
    return hi[0], sorted(grid), True


def share_spec(method: str, share: float) -> QuantSpec:
    """INT4 with ``share`` of the MACs at 8 bits (a share of 1 runs as uniform INT8: ``QuantMethod.canonical``)."""
    return QuantSpec(method=method, bits=4, int8_share=share)


def share_scan(ppl_at: Callable[[float], float], target: float) -> list[tuple[float, float]]:
    """(share, ppl) measured at 1, then upwards from 0 through ``SHARES`` until one meets ``target`` (ascending);
    when 1 misses it, only the ends and the middle, for the record."""
    top = ppl_at(1.0)
    if top > target:
        return [(s, ppl_at(s)) for s in (0.0, 0.5)] + [(1.0, top)]
    grid = []
    for share in SHARES:
        grid.append((share, ppl_at(share) if share < 1 else top))
        if grid[-1][1] <= target:
            break
    return grid


def write(results: dict[str, dict[str, Input]], windows: str) -> None:
    for model, inputs in results.items():
        path = CONF_DIR / "model" / f"{model}.yaml"
        lines = ["# The baselines' model-dependent inputs (they replace the system's mechanism values here)",
                 "baseline_inputs:"]
        for system, params in inputs.items():
            lines.append(f"  {system}:")
            for param, r in params.items():
                unit = UNITS[param]
                rule = (f"the smallest {unit} at which {system} INT4 holds perplexity within +{r.bound:g} of "
                        f"dense ({r.dense_ppl:.3f})" if r.met else
                        f"{system} INT4 misses +{r.bound:g} of dense ({r.dense_ppl:.3f}) at every {unit} up to 1 "
                        f"(uniform INT8, ppl {r.grid[-1][1]:.2f}): the grid's end")
                lines.append(f"    {param}: {{value: {r.value:.4f}, unit: {unit}, source: \"measured on the "
                             f"Llama-family proxy SmolLM2-135M ({COMMAND}, {windows}): {rule}; the same proxy stands "
                             f"for every Llama-2 size\"}}")
        head = path.read_text().split("# The baselines' model-dependent inputs", 1)[0]
        path.write_text(head.rstrip("\n") + "\n" + "\n".join(lines) + "\n")
        print(f"updated {path}")


def build_parser() -> argparse.ArgumentParser:
    """The command line (also what the docs' command test parses every documented command with)."""
    parser = argparse.ArgumentParser(prog="python -m dse.studies.baseline_inputs", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", action="store_true", help="write the measured inputs into conf/model/")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of accuracy.* (e.g. accuracy.windows=8)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    results = measure(args.overrides)
    if args.write:
        acc = compose_config(args.overrides).accuracy
        write(results, f"{acc.windows} x {acc.seq_len} tokens of {acc.text_path.rsplit('/', 1)[-1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
