"""``python -m dse.studies.baseline_inputs [--write] [overrides...]``: measure the baselines' model-dependent
inputs on the Llama-family proxy model (SmolLM2, ``accuracy.*``), for the Llama-2 rows of the Tender comparison.

OLAccel's outlier ratio: OLAccel keeps the largest ``rho`` of each activation tensor (and weight row) at 16
bits and quantises the rest at 4 bits over the normal range (``quant.method=olaccel``). Its paper's default,
3 %, was chosen for CNNs; what an LLM needs depends on how heavy its outliers are. The input is the smallest
``rho`` that holds accuracy on the proxy: perplexity within ``accuracy.max_ppl_increase`` of the unquantised
model (the project's own acceptance bound), log-perplexity interpolated over a grid of ratios. One proxy
stands for the Llama family, so the three Llama-2 rows get the same value; the OPT rows keep the published
default (no OPT-family model is loaded here).

(Matching Tender INT4 at each model's published G instead was tried and is degenerate on this proxy: Tender
INT4 with G = 14-20 reaches ppl 268 against 23.1 dense, worse than OLAccel at any ratio on the grid.)

ANT's 8-bit share and OliVe's fallback share are not measured yet: both formats are emulated now
(``quant.method=ant|olive``, uniform 4 or 8 bits), but an iso-accuracy share needs the per-layer mixed
precision (ANT's MSE-ranked 8-bit layers, quant-baselines.md 1.4), which the emulation does not have; every row
keeps the value calibrated on the OPT rows (outputs say so).
"""

from __future__ import annotations

import argparse
import math
import sys

from dse.config import CONF_DIR
from dse.studies.fidelity import compose_config

LLAMA_MODELS = ("llama2_7b", "llama2_13b", "llama2_70b")
RATIOS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.08, 0.12, 0.2)
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


def measure(overrides: list[str]) -> dict[str, dict[str, float]]:
    from dse.oracle import AccuracyOracle
    from workloads.accuracy.specs import QuantSpec

    cfg = compose_config(overrides)
    oracle = AccuracyOracle(cfg.accuracy)
    dense = oracle.baseline().ppl
    bound = cfg.accuracy.max_ppl_increase if cfg.accuracy.max_ppl_increase is not None else 5.0
    olaccel = [(r, oracle.measure(QuantSpec(method="olaccel", bits=4, outlier_ratio=r)).ppl) for r in RATIOS]
    print(f"proxy {oracle.source.name}: dense ppl {dense:.3f}; OLAccel INT4 ppl by outlier ratio: "
          + ", ".join(f"{r:.3g}: {p:.3f}" for r, p in olaccel))
    rho = iso_accuracy_ratio(olaccel, dense + bound)
    print(f"smallest outlier ratio within +{bound:g} ppl of dense: {rho:.4f}")
    return {model: {"outlier_ratio": rho, "dense_ppl": dense, "bound": bound} for model in LLAMA_MODELS}


def write(results: dict[str, dict[str, float]], windows: str) -> None:
    for model, r in results.items():
        path = CONF_DIR / "model" / f"{model}.yaml"
        text = path.read_text()
        entry = (f"  olaccel:\n    outlier_ratio: {{value: {r['outlier_ratio']:.4f}, unit: share of activations, "
                 f"source: \"measured on the Llama-family proxy SmolLM2-135M ({COMMAND}, {windows}): the smallest "
                 f"ratio at which OLAccel INT4 holds perplexity within +{r['bound']:g} of dense "
                 f"({r['dense_ppl']:.3f}); the same proxy stands for every Llama-2 size\"}}\n")
        block = ("# The baselines' model-dependent inputs (they replace the system's mechanism values here)\n"
                 "baseline_inputs:\n" + entry)
        head = text.split("# The baselines' model-dependent inputs", 1)[0]
        text = head.rstrip("\n") + "\n" + block
        path.write_text(text)
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
