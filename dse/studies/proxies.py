"""``python -m dse.studies.proxies``: do two proxy models agree on what a search would choose?

The config is ``conf/`` composed with the given Hydra overrides. Its proxy (``accuracy=...``, default SmolLM2) is
compared with a second one (``--other gemma3_270m``: a file of conf/accuracy/ whose ``proxy`` replaces this one's;
every other ``accuracy.*`` setting, windows and length included, is shared). Over the distinct accuracy keys of
each system's default space (``--systems tender infinigen``; the knobs that change
``System.accuracy_spec``, enumerated as the exhaustive sampler does), both proxies measure ppl_increase through the
persistent oracle; the study reports per system the Spearman rank correlation of the two, and whether they pick the
same best setting of each system's algorithm knob (``BEST_OF``: Tender's G at each bit width, InfiniGen's alpha at
each budget; best = lowest mean ppl_increase over the other accuracy knobs). Writes ``proxies.csv`` (one row per
key), ``proxies.md`` and ``proxies.png`` (one proxy's increase against the other's) in ``--out``.

    python -m dse.studies.proxies --out outputs/proxies accuracy.windows=4 accuracy.seq_len=1024
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import itertools
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dse.config import Config, ConfigError, compose_raw, to_config

log = logging.getLogger("dse.studies.proxies")

#: system -> (the algorithm knob whose best value is compared, the knob it is compared at)
BEST_OF: dict[str, tuple[str, str]] = {"tender": ("groups", "bits"), "infinigen": ("alpha", "budget"),
                                       "tender_infinigen": ("alpha", "bits")}


def space_keys(cfg: Config) -> list[tuple[dict[str, Any], Any, Any]]:
    """(accuracy knob values, QuantSpec, KVSpec or None) per distinct accuracy key of ``cfg.system``'s space."""
    from dse.exhaustive import accuracy_knobs
    from dse.space import grid_values
    from dse.systems import make_system

    system = make_system(cfg)
    grid = {k: grid_values(k, spec) for k, spec in cfg.system.space.items()
            if spec.type != "float" or spec.step is not None}
    knobs = accuracy_knobs(system, grid, True)
    out: dict[str, tuple[dict[str, Any], Any, Any]] = {}
    for combo in itertools.product(*(grid[k] for k in knobs)):
        params = dict(zip(knobs, combo, strict=True))
        quant, kv = system.accuracy_spec(system.complete(params))
        out.setdefault(repr((quant, kv)), (params, quant, kv))
    return list(out.values())


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rho with average ranks for ties."""
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic) if len(a) > 2 else float("nan")


def best_values(rows: list[dict[str, Any]], knob: str, at: str, column: str) -> dict[Any, Any]:
    """Per value of ``at``, the value of ``knob`` with the lowest mean ``column`` over the other knobs."""
    best = {}
    for at_value in sorted({r[at] for r in rows}):
        means = {}
        for value in sorted({r[knob] for r in rows if r[at] == at_value}):
            sel = [r[column] for r in rows if r[at] == at_value and r[knob] == value]
            means[value] = float(np.mean(sel))
        best[at_value] = min(means, key=lambda v: (means[v], v))
    return best


def plot(rows: list[dict[str, Any]], names: tuple[str, str], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.2, 4.6))
    for system in dict.fromkeys(r["system"] for r in rows):
        pts = [r for r in rows if r["system"] == system]
        ax.scatter([r["increase_a"] for r in pts], [r["increase_b"] for r in pts], s=16, label=system)
    ax.set_xscale("symlog", linthresh=0.1)
    ax.set_yscale("symlog", linthresh=0.1)
    ax.set_xlabel(f"ppl increase, {names[0]}")
    ax.set_ylabel(f"ppl increase, {names[1]}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    ax.set_title(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def _fmt(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def build_parser() -> argparse.ArgumentParser:
    """The command line (also what the docs' command test parses every documented command with)."""
    parser = argparse.ArgumentParser(prog="python -m dse.studies.proxies", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--other", default="gemma3_270m", help="the second proxy: a file of conf/accuracy/")
    parser.add_argument("--systems", nargs="+", default=["tender", "infinigen"])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides shared by both proxies, e.g. accuracy.windows=2")
    return parser


def main(argv: list[str] | None = None) -> int:
    from dse.oracle import AccuracyOracle

    args = build_parser().parse_args(argv)
    overrides = [o for o in args.overrides if not o.startswith("system=")]
    try:
        cfg = to_config(compose_raw(overrides))
        other_proxy = to_config(compose_raw([f"accuracy={args.other}"])).accuracy.proxy
        oracles = (AccuracyOracle(cfg.accuracy), AccuracyOracle(dataclasses.replace(cfg.accuracy, proxy=other_proxy)))
        keys = {s: space_keys(to_config(compose_raw([f"system={s}", *overrides]))) for s in args.systems}
    except (ConfigError, FileNotFoundError, ValueError) as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    names = (cfg.accuracy.proxy.name, other_proxy.name)
    dense = tuple(o.baseline().ppl for o in oracles)
    rows: list[dict[str, Any]] = []
    for system, specs in keys.items():
        for params, quant, kv in specs:
            ms = [o.measure(quant, kv) for o in oracles]
            rows.append({"system": system, **params, "ppl_a": ms[0].ppl, "ppl_b": ms[1].ppl,
                         "increase_a": ms[0].ppl - dense[0], "increase_b": ms[1].ppl - dense[1]})
            print(f"{system:>10} {params}: {names[0]} {rows[-1]['increase_a']:+.3f}  {names[1]} "
                  f"{rows[-1]['increase_b']:+.3f}", flush=True)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    fields = list(dict.fromkeys(k for r in rows for k in r))
    with (out / "proxies.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    lines = [f"{names[0]} (dense {dense[0]:.3f}) vs {names[1]} (dense {dense[1]:.3f}), {cfg.accuracy.windows} x "
             f"{cfg.accuracy.seq_len} tokens\n",
             "| system | keys | Spearman rho of ppl_increase | best | " + " | ".join(names) + " | same |",
             "|---|---|---|---|---|---|---|"]
    for system in keys:
        sel = [r for r in rows if r["system"] == system]
        rho = spearman([r["increase_a"] for r in sel], [r["increase_b"] for r in sel])
        knob, at = BEST_OF.get(system, (None, None))
        if knob is None or knob not in sel[0] or at not in sel[0]:
            lines.append(f"| {system} | {len(sel)} | {rho:.3f} | | | | |")
            continue
        best_a, best_b = (best_values(sel, knob, at, c) for c in ("increase_a", "increase_b"))
        for at_value in best_a:
            lines.append(f"| {system} | {len(sel)} | {rho:.3f} | {knob} at {at}={at_value} | {best_a[at_value]} | "
                         f"{best_b[at_value]} | {'yes' if best_a[at_value] == best_b[at_value] else 'no'} |")
    summary = len(lines)
    lines.append("\n| " + " | ".join(fields) + " |")
    lines.append("|" + "---|" * len(fields))
    lines += ["| " + " | ".join(_fmt(r.get(f, "")) for f in fields) + " |" for r in rows]
    (out / "proxies.md").write_text("\n".join(lines) + "\n")
    plot(rows, names, out / "proxies.png", lines[0].strip())
    print("\n".join(lines[:summary]))
    print(f"wrote {out / 'proxies.csv'}, proxies.md, proxies.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
