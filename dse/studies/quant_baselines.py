"""``python -m dse.studies.quant_baselines``: the Tender paper's Table 2 (WikiText-2 perplexity of the
outlier-aware quantisation schemes at INT8 and INT4) measured on the proxy models.

Every scheme runs by mechanism in ``workloads/accuracy/quantmethods/`` (one module each, sources in their
docstrings): SmoothQuant (dynamic per-token and static per-tensor activations), ANT, OliVe, OLAccel, Tender
(calibrated, the paper's perplexity setting, tender.md 2.7; and runtime) and Tender (all) (QK^T and PV quantised
too); per-tensor and per-channel round-to-nearest as references. Weights are quantised by each method at the same
width (``quant.quantize_weights``) unless overridden. Each proxy (``--proxies``: files of conf/accuracy/) measures
every row through the persistent oracle, so a repeated study measures only what is new. A third column keeps the
proxies' own 4-bit weights (``quant.quantize_weights=false``) and quantises activations at 4 bits: the schemes'
activation handling on equal weights. Writes
``quant_baselines.csv`` (one row per proxy, scheme and width) and ``quant_baselines.md`` (a table per proxy, with
each scheme's rank among the outlier-aware ones) in ``--out``.

    python -m dse.studies.quant_baselines --out outputs/quant_baselines accuracy.windows=4 accuracy.seq_len=2048
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dse.config import ConfigError, compose_raw, to_config

log = logging.getLogger("dse.studies.quant_baselines")


@dataclass(frozen=True)
class Scheme:
    """One row of the table: a label, the method and its settings (beside ``quant.*``), and whether it is one of
    the outlier-aware schemes the paper ranks (the references are not)."""

    label: str
    method: str
    settings: dict[str, Any]
    ranked: bool = True


SCHEMES = (
    Scheme("per-tensor", "per_tensor", {}, ranked=False),
    Scheme("per-channel", "per_channel", {}, ranked=False),
    Scheme("SmoothQuant", "smoothquant", {"act_scale": "per_token"}),
    Scheme("SmoothQuant (static)", "smoothquant", {"act_scale": "per_tensor"}),
    Scheme("ANT", "ant", {}),
    Scheme("OliVe", "olive", {}),
    Scheme("OLAccel", "olaccel", {}),
    Scheme("Tender", "tender", {"mode": "calibrated"}),
    Scheme("Tender (runtime)", "tender", {"mode": "runtime"}),
    Scheme("Tender (all)", "tender", {"mode": "calibrated", "quantize_attention": True}),
)
#: the table's columns: (label, width, settings over the scheme's); the last holds the weights as shipped (the
#: proxies' own 4-bit weights), so that the schemes' activation handling compares on equal weights
COLUMNS = (("INT8", 8, {}), ("INT4", 4, {}), ("A4, W as shipped", 4, {"quantize_weights": False}))


def measure(overrides: list[str], proxy: str) -> list[dict[str, Any]]:
    """The table's rows on one proxy (``accuracy=<proxy>`` added to ``overrides``)."""
    from dse.oracle import AccuracyOracle

    cfg = to_config(compose_raw([f"accuracy={proxy}", *overrides]))
    oracle = AccuracyOracle(cfg.accuracy)
    dense = oracle.baseline().ppl
    base = cfg.quant.to_spec()
    acc = cfg.accuracy
    rows = [{"proxy": proxy, "scheme": "dense", "column": "dense", "bits": 16, "ppl": dense, "ppl_increase": 0.0,
             "tokens": f"{acc.windows} x {acc.seq_len}", "settings": ""}]
    for scheme in SCHEMES:
        for column, bits, extra in COLUMNS:
            spec = dataclasses.replace(base, method=scheme.method, bits=bits, **{**scheme.settings, **extra})
            ppl = oracle.measure(spec).ppl
            log.info("%s %s %s: ppl %.3f", proxy, scheme.label, column, ppl)
            rows.append({"proxy": proxy, "scheme": scheme.label, "column": column, "bits": bits, "ppl": ppl,
                         "ppl_increase": ppl - dense, "tokens": f"{acc.windows} x {acc.seq_len}",
                         "settings": _settings(spec, scheme)})
    return rows


def _settings(spec: Any, scheme: Scheme) -> str:
    from workloads.accuracy.emulation import quant_method

    fields = quant_method(scheme.method).key_fields(spec)
    return " ".join(f"{k}={v}" for k, v in fields.items() if k not in ("method", "bits"))


def ranks(rows: list[dict[str, Any]]) -> dict[tuple[str, str, str], int]:
    """Each ranked scheme's place (1 = lowest perplexity) among the ranked schemes of its proxy and column."""
    ranked = {s.label for s in SCHEMES if s.ranked}
    out: dict[tuple[str, str, str], int] = {}
    for proxy in {r["proxy"] for r in rows}:
        for column, _bits, _extra in COLUMNS:
            pts = sorted((r for r in rows if r["proxy"] == proxy and r["column"] == column and r["scheme"] in ranked),
                         key=lambda r: r["ppl"])
            out.update({(proxy, r["scheme"], column): i + 1 for i, r in enumerate(pts)})
    return out


def markdown(rows: list[dict[str, Any]]) -> str:
    place = ranks(rows)
    lines = []
    for proxy in dict.fromkeys(r["proxy"] for r in rows):
        mine = [r for r in rows if r["proxy"] == proxy]
        dense = next(r for r in mine if r["scheme"] == "dense")
        head = " | ".join(f"{c} ppl | +ppl | rank" for c, _b, _e in COLUMNS)
        lines += [f"### {proxy} (dense ppl {dense['ppl']:.3f}, {dense['tokens']} tokens)", "",
                  f"| scheme | {head} |", "|---|" + "---:|" * 3 * len(COLUMNS)]
        for scheme in SCHEMES:
            cells = [scheme.label]
            for column, _bits, _extra in COLUMNS:
                r = next(r for r in mine if r["scheme"] == scheme.label and r["column"] == column)
                cells += [num(r["ppl"]), num(r["ppl_increase"]), str(place.get((proxy, scheme.label, column), "-"))]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def num(v: float) -> str:
    """A perplexity for a table: two decimals, or three significant digits from 10^4 on."""
    return f"{v:.3g}" if abs(v) >= 1e4 else f"{v:.2f}"


def proxies_parser(module: str, doc: str | None, out: str, overrides: str) -> argparse.ArgumentParser:
    """A proxy study's command line: ``--proxies`` (files of conf/accuracy/), ``--out`` and Hydra overrides."""
    parser = argparse.ArgumentParser(prog=f"python -m {module}", description=doc,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--proxies", nargs="+", default=["default", "gemma3_270m"],
                        help="files of conf/accuracy/ (default: SmolLM2-135M, Gemma-3-270M)")
    parser.add_argument("--out", type=Path, default=Path(out))
    parser.add_argument("overrides", nargs="*", help=f"Hydra overrides ({overrides})")
    return parser


def build_parser() -> argparse.ArgumentParser:
    """The command line (also what the docs' command test parses every documented command with)."""
    return proxies_parser("dse.studies.quant_baselines", __doc__, "outputs/quant_baselines",
                          "accuracy.*, quant.* such as quant.groups")


def write_table(out: Path, stem: str, rows: list[dict[str, Any]], md: str) -> None:
    """``<stem>.csv`` (the rows) and ``<stem>.md`` (the table) in ``out``; the table printed too."""
    out.mkdir(parents=True, exist_ok=True)
    with (out / f"{stem}.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (out / f"{stem}.md").write_text(md)
    print(md)
    print(f"wrote {out / stem}.csv and {stem}.md")


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = build_parser().parse_args(argv)
    try:
        rows = [r for proxy in args.proxies for r in measure(args.overrides, proxy)]
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    write_table(args.out, "quant_baselines", rows, markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
