"""``python -m dse.studies.int4_parts``: where an INT4 design's perplexity loss comes from, on each proxy.

The proxies' weights already lie on a 4-bit grid (SmolLM2: Q4_1, groups of 32; Gemma-3-270M: Q4_K_M), and TIDE
re-quantises them per output channel on top (``quant.quantize_weights=true``). This study separates the two
operands and the places (every row through the persistent oracle):

1. **Operands**: for per-tensor, per-channel and Tender at G = 1, 2, 4, 8, 16 (runtime and calibrated), the
   weights as shipped with 4-bit activations (``W-shipped/A4``), 4-bit weights with float activations (``W4/A16``:
   per-output-channel weights, the same for every activation scheme) and both (``W4/A4``).
2. **Places**: Tender INT4 (``--groups``, runtime, weights as shipped) quantising one kind of site at a time
   (q/k/v input, o_proj input, gate/up input, down_proj input) and one layer at a time (``quant.sites``).
3. **Calibrated INT8**: Tender INT8 calibrated with 1, 4, 16 and 64 calibration windows against runtime, and
   calibrated with the weights as shipped: whether calibrated mode loses by too little calibration text
   (channels whose evaluation maxima exceed their calibrated group, and so clip) or by its weights.

Writes ``int4_parts.csv`` and ``int4_parts.md`` in ``--out``.

    python -m dse.studies.int4_parts --out outputs/int4_parts accuracy.windows=4 accuracy.seq_len=1024
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from typing import Any

from dse.config import ConfigError, compose_raw, to_config
from dse.studies.quant_baselines import num, proxies_parser, write_table

log = logging.getLogger("dse.studies.int4_parts")

OPERANDS = {"W-shipped/A4": {"quantize_weights": False}, "W4/A16": {"quantize_activations": False},
            "W4/A4": {}}
SITE_KINDS = {"q/k/v input": r"\.qkv$", "o_proj input": r"\.o_proj$", "gate/up input": r"\.gate_up$",
              "down_proj input": r"\.down_proj$"}
GROUPS = (1, 2, 4, 8, 16)
CALIB_WINDOWS = (1, 4, 16, 64)  # the reference calibrates on 128 x 2048 tokens (tender.md 3)


def _oracle(overrides: list[str], beside: Any = None) -> tuple[Any, Any, float]:
    from dse.oracle import AccuracyOracle

    cfg = to_config(compose_raw(overrides))
    oracle = AccuracyOracle(cfg.accuracy, beside=beside)
    return cfg, oracle, oracle.baseline().ppl


PARTS = ("operands", "places", "int8")


def measure(overrides: list[str], proxy: str, groups: int, parts: tuple[str, ...] = PARTS) -> list[dict[str, Any]]:
    """The study's rows on one proxy (``accuracy=<proxy>`` added to ``overrides``), of the ``parts`` asked for."""
    cfg, oracle, dense = _oracle([f"accuracy={proxy}", *overrides])
    base = dataclasses.replace(cfg.quant.to_spec(), bits=4, chunk=cfg.quant.chunk)
    rows: list[dict[str, Any]] = []

    def row(part: str, scheme: str, setting: str, spec: Any, ppl: float | None = None) -> None:
        ppl = oracle.measure(spec).ppl if ppl is None else ppl
        log.info("%s | %s | %s | %s: ppl %.3f", proxy, part, scheme, setting, ppl)
        rows.append({"proxy": proxy, "part": part, "scheme": scheme, "setting": setting, "bits": spec.bits,
                     "ppl": ppl, "ppl_increase": ppl - dense, "dense_ppl": dense})

    schemes = [("per-tensor", {"method": "per_tensor"}), ("per-channel", {"method": "per_channel"})]
    schemes += [(f"Tender G{g} {mode}", {"method": "tender", "groups": g, "mode": mode})
                for mode in ("runtime", "calibrated") for g in GROUPS]
    if "operands" not in parts:
        schemes = []
    w4 = None
    for scheme, fields in schemes:
        for operands, flags in OPERANDS.items():
            spec = dataclasses.replace(base, **fields, **flags)
            if operands == "W4/A16":  # per-output-channel weights whatever the activation scheme: measured once
                w4 = oracle.measure(dataclasses.replace(base, method="per_tensor", **flags)).ppl if w4 is None else w4
                row("operands", scheme, operands, spec, w4)
            else:
                row("operands", scheme, operands, spec)
    place = dataclasses.replace(base, method="tender", groups=groups, mode="runtime", quantize_weights=False)
    if "places" in parts:
        _places(row, place, groups, _layers(oracle))
    if "int8" in parts:
        _calibrated_int8(row, oracle, overrides, proxy, dataclasses.replace(base, method="tender", bits=8,
                                                                         groups=groups), cfg.accuracy.calib_windows)
    return rows


def _places(row: Any, place: Any, groups: int, layers: int) -> None:
    for kind, pattern in SITE_KINDS.items():
        row("site kind", f"Tender G{groups} runtime", kind, dataclasses.replace(place, sites=pattern))
    for layer in range(layers):
        row("layer", f"Tender G{groups} runtime", f"layer {layer}",
            dataclasses.replace(place, sites=rf"^model\.layers\.{layer}\."))


def _calibrated_int8(row: Any, oracle: Any, overrides: list[str], proxy: str, int8: Any, calib_windows: int) -> None:
    groups = int8.groups
    row("calibrated INT8", f"Tender G{groups}", "runtime", dataclasses.replace(int8, mode="runtime"))
    row("calibrated INT8", f"Tender G{groups}", "runtime, weights as shipped",
        dataclasses.replace(int8, mode="runtime", quantize_weights=False))
    row("calibrated INT8", f"Tender G{groups}", f"calibrated, {calib_windows} windows, weights as shipped",
        dataclasses.replace(int8, mode="calibrated", quantize_weights=False))
    for n in CALIB_WINDOWS:
        _, other, _ = _oracle([f"accuracy={proxy}", *overrides, f"accuracy.calib_windows={n}"], beside=oracle)
        spec = dataclasses.replace(int8, mode="calibrated")
        row("calibrated INT8", f"Tender G{groups}", f"calibrated, {n} windows", spec, other.measure(spec).ppl)


def _layers(oracle: Any) -> int:
    return int(oracle.session.model.model.config.num_hidden_layers)


def markdown(rows: list[dict[str, Any]]) -> str:
    lines: list[str] = []
    for proxy in dict.fromkeys(r["proxy"] for r in rows):
        mine = [r for r in rows if r["proxy"] == proxy]
        lines += [f"### {proxy} (dense ppl {mine[0]['dense_ppl']:.3f})", "",
                  "| scheme | " + " | ".join(f"{o} +ppl" for o in OPERANDS) + " |",
                  "|---|" + "---:|" * len(OPERANDS)]
        for scheme in dict.fromkeys(r["scheme"] for r in mine if r["part"] == "operands"):
            cells = [next(r for r in mine if r["part"] == "operands" and r["scheme"] == scheme
                          and r["setting"] == o) for o in OPERANDS]
            lines.append(f"| {scheme} | " + " | ".join(num(c["ppl_increase"]) for c in cells) + " |")
        for part in ("site kind", "layer", "calibrated INT8"):
            if not any(r["part"] == part for r in mine):
                continue
            lines += ["", f"| {part} | scheme | +ppl |", "|---|---|---:|"]
            lines += [f"| {r['setting']} | {r['scheme']} INT{r['bits']} | {num(r['ppl_increase'])} |"
                      for r in mine if r["part"] == part]
        lines.append("")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The command line (also what the docs' command test parses every documented command with)."""
    parser = proxies_parser("dse.studies.int4_parts", __doc__, "outputs/int4_parts", "accuracy.*, quant.chunk")
    parser.add_argument("--groups", type=int, default=8, help="Tender's G for the places and the INT8 part")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS),
                        help="operands (W/A split), places (site kinds, layers), int8 (calibrated INT8)")
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = build_parser().parse_args(argv)
    try:
        rows = [r for proxy in args.proxies for r in measure(args.overrides, proxy, args.groups, tuple(args.parts))]
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    write_table(args.out, "int4_parts", rows, markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
