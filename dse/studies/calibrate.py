"""``python -m dse.studies.calibrate tender``: fit the baselines' calibrated mechanism parameters.

Only parameters labelled "calibrated" in ``conf/system/*.yaml`` are fitted, each to the OPT rows of
Tender's published speed-up figure (conf/fidelity/tender.yaml), in log space:

* ANT ``int8_share``: the share of MACs that must run at 8 bits, fitted to Tender/ANT;
* OliVe ``int8_share``: fitted to OliVe/ANT (given ANT's);
* OLAccel ``outlier_stall_cycles``: fitted to OLAccel/ANT (given ANT's).

and for ``infinigen`` the CPU gather bandwidth of InfiniGen's selected rows (see ``fit_infinigen``).

Each is a one-dimensional monotone fit (bisection of the mean log residual). The script prints the
fitted values and the residuals of every OPT row, speed-up and energy efficiency alike; copy the values
into the system configs (or pass ``--write`` to do it).
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections.abc import Callable

import yaml

from dse.config import CONF_DIR
from dse.studies.fidelity import TENDER_FITS, build_cases, evaluate_rows, ratios, reference


def bisect(f: Callable[[float], float], lo: float, hi: float, iters: int = 40) -> float:
    """Root of a monotone ``f`` on [lo, hi]; a ``ValueError`` when f has the same sign at both bounds (no
    parameter value in the range reproduces the target)."""
    f_lo, f_hi = f(lo), f(hi)
    if f_lo * f_hi > 0:
        raise ValueError(f"no root in [{lo}, {hi}]: the residual is {f_lo:+.4g} at {lo} and {f_hi:+.4g} at {hi}")
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        f_mid = f(mid)
        if f_mid * f_lo <= 0:
            hi = mid
        else:
            lo, f_lo = mid, f_mid
    return 0.5 * (lo + hi)


def fit() -> dict[str, dict[str, float]]:
    ref = reference()
    opt_models = list(ref["speedup"])
    cases = build_cases()
    mechanism: dict[str, dict[str, float]] = {}

    for system, param, target, lo, hi in TENDER_FITS:
        subset = [c for c in cases if c.model in opt_models and c.system.name in ("ant", target)]

        def residual(value: float, system: str = system, param: str = param, target: str = target,
                     subset: list = subset) -> float:
            mech = {**mechanism, system: {**mechanism.get(system, {}), param: value}}
            rat = ratios(evaluate_rows(subset, mech))
            return sum(math.log(rat[(m, target)][0] / ref["speedup"][m][target]) for m in opt_models)

        mechanism.setdefault(system, {})[param] = bisect(residual, lo, hi)
    return mechanism


def report(mechanism: dict[str, dict[str, float]]) -> None:
    ref = reference()
    rat = ratios(evaluate_rows(build_cases(), mechanism))
    print("fitted mechanism parameters:")
    for system, params in mechanism.items():
        for key, value in params.items():
            print(f"  {system}.{key} = {value:.6g}")
    print(f"{'model':<10}{'system':<9}{'speedup':>9}{'paper':>7}{'resid':>8}{'energy':>9}{'paper':>7}{'resid':>8}")
    for model in ref["speedup"]:
        for system in ("olaccel", "olive", "tender"):
            s, e = rat[(model, system)]
            ps, pe = ref["speedup"][model][system], ref["energy_eff"][model][system]
            print(f"{model:<10}{system:<9}{s:>9.3f}{ps:>7}{(s / ps - 1):>+8.1%}{e:>9.3f}{pe:>7}{(e / pe - 1):>+8.1%}")


def write(mechanism: dict[str, dict[str, float]]) -> None:
    for system, params in mechanism.items():
        path = CONF_DIR / "system" / f"{system}.yaml"
        text = path.read_text()
        for key, value in params.items():
            text, n = re.subn(rf"(\n  {key}: \{{value: )[^,]+,", rf"\g<1>{value:.6g},", text)
            if n != 1:
                raise RuntimeError(f"could not find mechanism.{key} in {path}")
        path.write_text(text)
        print(f"updated {path}")


def fit_infinigen() -> dict[str, dict[str, float]]:
    """InfiniGen ``gather_gbps``: the one parameter with no published value, fitted so that InfiniGen's
    speed-up over FlexGen at 2048 tokens (OPT-13B, batch 8) is the paper's 5.28 (Fig. 16a)."""
    import dataclasses as dc

    from dse.studies.fidelity import INFINIGEN, compose_config
    from dse.systems.offload import OffloadSystem

    ref = yaml.safe_load(INFINIGEN.read_text())
    sl = ref["seq_len"]
    target = sl["paper_speedup"]["infinigen"][-1]
    total = sl["totals"][-1]
    systems = {}
    for name in ("flexgen", "infinigen"):
        cfg = compose_config([f"system={name}", f"model={ref['model']}", f"platform@system.hw={ref['platform']}",
                              f"workload.prompt_len={total - sl['gen_len']}", f"workload.gen_len={sl['gen_len']}"])
        systems[name] = (OffloadSystem(cfg), {**cfg.system.hw, "batch": sl["batch"]})
    flex = systems["flexgen"][0].evaluate(systems["flexgen"][1]).metrics["tokens_per_s"][0]
    ig, point = systems["infinigen"]

    def residual(gbps: float) -> float:
        ig.scheme = dc.replace(ig.scheme, gather_gbps=gbps)
        return math.log(ig.evaluate(point).metrics["tokens_per_s"][0] / flex / target)

    value = bisect(residual, 0.5, 200.0)
    print(f"fitted mechanism parameters:\n  infinigen.gather_gbps = {value:.4g}")
    print(f"  residual at {total} tokens: {math.exp(residual(value)) - 1:+.2%}")
    return {"infinigen": {"gather_gbps": value}}


def build_parser() -> argparse.ArgumentParser:
    """The command line (also what the docs' command test parses every documented command with)."""
    parser = argparse.ArgumentParser(prog="python -m dse.studies.calibrate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("study", choices=["tender", "infinigen"])
    parser.add_argument("--write", action="store_true", help="write the fitted values into conf/system/")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.study == "infinigen":
        mechanism = fit_infinigen()
    else:
        mechanism = fit()
        report(mechanism)
    if args.write:
        write(mechanism)
    return 0


if __name__ == "__main__":
    sys.exit(main())
