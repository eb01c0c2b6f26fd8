"""``python -m dse.studies.speculation``: InfiniGen's speculation quality and its design choices, on the real model.

A Hydra app over the same ``conf/`` (``accuracy.*`` and ``kv.budget`` apply). The reference is the paper's method as
the artifact runs it (``PAPER_METHOD``: alpha 4, r 0.2, layer l-1's normed input, ...). It measures, through the
persistent oracle (a repeated study only measures what is new), each choice of infinigen.md 4 alone against the
reference, then the best combination at alpha 4 and 5, TIDE's default (``kv.*``), and the baselines at the same
budget:

* speculation input: layer l-1's normed attention input (reference) / the same residual stream normed with
  layer l's own norm / layer l's real input (upper bound);
* skewing per KV head (reference; the query heads of a GQA group stacked) / per query head;
* partial columns r in {0.2, 0.3, 0.4, 0.5} of head_dim, and r as a column count (the paper's OPT heads keep
  26 of 128 columns: 26 columns here);
* column rule: top of sum |Q~| + |K~| (paper) / union of the two tops (the accuracy code); per request
  (paper) / offline from the calibration text (the accuracy code);
* per-row count: mean over heads (paper) / per head.

Every InfiniGen run also reports, per layer, the recall of the exact per-head top-k by the speculated top-k at
the same k and the Spearman correlation of speculated and exact scores (``kv.report``). Writes
``speculation.csv`` (one row per variant), ``speculation_layers.csv`` (per layer, reference and best),
``speculation.md`` and ``speculation_quality.png`` in the run directory.

    python -m dse.studies.speculation accuracy.windows=4 accuracy.seq_len=2048
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import sys
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from dse.config import CONF_DIR, ConfigError, exit_on_group_syntax, register_schema, to_config
from dse.oracle import Measurement
from workloads.accuracy.specs import KVSpec, QuantSpec

log = logging.getLogger("dse.studies.speculation")
register_schema()

#: (group, name, changes to the reference KV spec): each design choice alone
ABLATIONS: list[tuple[str, str, dict[str, Any]]] = [
    ("input", "prev_own_norm", {"spec_input": "prev_own_norm"}),
    ("input", "real (upper bound)", {"spec_input": "real"}),
    ("skew", "per query head", {"skew_per": "query_head"}),
    ("r", "r=0.3", {"partial_ratio": 0.3}),
    ("r", "r=0.4", {"partial_ratio": 0.4}),
    ("r", "r=0.5", {"partial_ratio": 0.5}),
    ("r", "26 columns (as OPT's 0.2 x 128)", {"partial_cols": 26}),
    ("columns", "union of tops", {"column_rule": "union"}),
    ("columns", "offline (calibration text)", {"column_source": "offline"}),
    ("count", "per head", {"count_rule": "per_head"}),
]
#: the paper's method as the reference artifact runs it on OPT (infinigen.md 4): the reference of the ablation
PAPER_METHOD: dict[str, Any] = {"alpha": 4.0, "partial_ratio": 0.2, "partial_cols": 0, "spec_input": "prev",
                                "skew_per": "kv_head", "column_rule": "sum", "column_source": "request",
                                "count_rule": "mean"}
#: choices never part of "the best combination" (an upper bound is not a method)
NOT_COMBINABLE = {"real (upper bound)"}


def best_combination(reference_ppl: float, results: dict[str, float]) -> dict[str, Any]:
    """Per group, the ablation that lowered the perplexity most (if any did): their changes together."""
    changes: dict[str, Any] = {}
    for group in dict.fromkeys(g for g, _, _ in ABLATIONS):
        options = [(results[name], ch) for g, name, ch in ABLATIONS
                   if g == group and name not in NOT_COMBINABLE and results.get(name, reference_ppl) < reference_ppl]
        if options:
            changes.update(min(options, key=lambda o: o[0])[1])
    return changes


def plot(layers: dict[str, dict[str, dict[str, float]]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, per_layer in layers.items():
        xs = sorted(int(k) for k in per_layer)
        for ax, key in zip(axes, ("recall", "spearman"), strict=True):
            ax.plot(xs, [per_layer[str(x)][key] for x in xs], marker="o", ms=3, label=name)
    axes[0].set_ylabel("recall of the exact top-k by the speculated top-k")
    axes[1].set_ylabel("Spearman correlation, speculated vs exact scores")
    for ax in axes:
        ax.set_xlabel("layer")
        ax.grid(True, alpha=0.3)
        ax.set_ylim(0, 1)
    axes[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def _row(group: str, name: str, kv: KVSpec, m: Measurement, dense: float) -> dict[str, Any]:
    sel = m.selection
    quality = sel.quality if sel is not None else None
    return {"group": group, "variant": name, "method": kv.method, "alpha": kv.alpha, "budget": kv.budget,
            "ppl": m.ppl, "ppl_increase": m.ppl - dense, "selected_per_row": sel.mean_selected if sel else None,
            "selected_last_bucket": sel.buckets[-1].mean if sel and sel.buckets else None,
            "recall": quality.recall if quality else None, "spearman": quality.spearman if quality else None,
            "spec": {f.name: getattr(kv, f.name) for f in dataclasses.fields(kv) if f.name != "report"}}


def _markdown(rows: list[dict[str, Any]]) -> str:
    head = ["group", "variant", "alpha", "ppl", "ppl_increase", "selected_per_row", "selected_last_bucket", "recall",
            "spearman"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        out.append("| " + " | ".join("" if r[h] is None else f"{r[h]:.3f}" if isinstance(r[h], float) else str(r[h])
                                      for h in head) + " |")
    return "\n".join(out) + "\n"


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def _app(raw: DictConfig) -> None:
    from dse.oracle import AccuracyOracle

    try:
        cfg = to_config(raw)
        default = dataclasses.replace(cfg.kv.to_spec(), method="infinigen", report=True)
        base = dataclasses.replace(default, **PAPER_METHOD)
        oracle = AccuracyOracle(cfg.accuracy)
    except (ConfigError, FileNotFoundError, ValueError) as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        sys.exit(2)
    none = QuantSpec()
    dense = oracle.measure(none).ppl
    rows: list[dict[str, Any]] = []
    layers: dict[str, dict[str, dict[str, float]]] = {}

    def run(group: str, name: str, kv: KVSpec) -> Measurement:
        m = oracle.measure(none, kv)
        rows.append(_row(group, name, kv, m, dense))
        r = rows[-1]
        print(f"{group:>9} {name:<34} ppl {m.ppl:8.3f} ({m.ppl - dense:+.3f})  selected/row "
              f"{r['selected_per_row'] or 0:6.1f}  recall {r['recall'] or 0:.3f}  spearman {r['spearman'] or 0:.3f}",
              flush=True)
        return m

    def per_layer(m: Measurement) -> dict[str, dict[str, float]]:
        quality = m.selection.quality if m.selection is not None else None
        return quality.to_dict()["per_layer"] if quality is not None else {}

    ref = run("reference", "paper's method", base)
    layers["reference"] = per_layer(ref)
    results: dict[str, float] = {}
    for group, name, changes in ABLATIONS:
        m = run(group, name, dataclasses.replace(base, **changes))
        results[name] = m.ppl
        if group == "input":
            layers[name] = per_layer(m)
    combo = best_combination(ref.ppl, results)
    for alpha in (4.0, 5.0):
        m = run("best", f"best combination a={alpha:g}: {combo or 'none better'}",
                dataclasses.replace(base, **combo, alpha=alpha))
        if alpha == 4.0:
            layers["best combination"] = per_layer(m)
    run("default", f"TIDE default (kv.*) a={default.alpha:g}", default)
    for method in ("h2o", "local", "oracle_topk"):
        run("baseline", method, dataclasses.replace(base, method=method, report=False))
    out = Path(HydraConfig.get().runtime.output_dir)
    with (out / "speculation.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with (out / "speculation_layers.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["variant", "layer", "recall", "spearman"])
        for name, per_layer in layers.items():
            for layer, q in sorted(per_layer.items(), key=lambda kv: int(kv[0])):
                writer.writerow([name, layer, f"{q['recall']:.4f}", f"{q['spearman']:.4f}"])
    title = (f"{oracle.source.name}: {cfg.accuracy.windows} x {cfg.accuracy.seq_len} tokens, budget "
             f"{base.budget}, alpha {base.alpha}, r {base.partial_ratio}; dense ppl {dense:.3f}")
    plot(layers, out / "speculation_quality.png", title)
    (out / "speculation.md").write_text(f"{title}\n\n{_markdown(rows)}")
    print(f"dense ppl={dense:.4f}; wrote {out / 'speculation.csv'}, speculation_layers.csv, speculation.md, "
          "speculation_quality.png")


def main() -> None:
    exit_on_group_syntax(sys.argv[1:])
    _app()


if __name__ == "__main__":
    main()
