"""``python -m dse.studies.group_study``: perplexity against Tender's group count G at 4 and 8 bits.

A Hydra app over the same ``conf/`` (so ``accuracy.*`` and ``quant.chunk``/``quant.mode`` apply);
writes ``accuracy_vs_groups.csv`` and ``accuracy_vs_groups.png`` in the run directory. Every point
goes through the persistent oracle, so a repeated study only measures what is new.

    python -m dse.studies.group_study accuracy.windows=8 accuracy.seq_len=2048 +study.groups_max=16
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from dse.config import CONF_DIR, ConfigError, exit_on_group_syntax, register_schema, to_config

log = logging.getLogger("dse.studies.group_study")
register_schema()


def plot(rows: list[dict], baseline: float, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for bits, marker in ((4, "o"), (8, "s")):
        pts = [r for r in rows if r["bits"] == bits]
        ax.plot([r["groups"] for r in pts], [r["ppl"] for r in pts], marker=marker, label=f"Tender INT{bits}")
    ax.axhline(baseline, color="k", ls="--", lw=0.8, label=f"unquantised ({baseline:.2f})")
    ax.set_yscale("log")
    ax.set_xlabel("group count G")
    ax.set_ylabel("perplexity (WikiText-2, lower is better)")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def _app(raw: DictConfig) -> None:
    from dse.oracle import AccuracyOracle

    node = raw.get("study")
    study = OmegaConf.to_container(node) if node is not None else {}
    g_max = int(study.get("groups_max", 16))  # type: ignore[union-attr]
    OmegaConf.set_struct(raw, False)
    raw.pop("study", None)
    try:
        cfg = to_config(raw)
        base = dataclasses.replace(cfg.quant.to_spec(), method="tender")
        oracle = AccuracyOracle(cfg.accuracy)
    except (ConfigError, FileNotFoundError, ValueError) as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        sys.exit(2)
    baseline = oracle.baseline().ppl
    rows = []
    for bits in (4, 8):
        for g in range(1, g_max + 1):
            m = oracle.measure(dataclasses.replace(base, bits=bits, groups=g))
            rows.append({"bits": bits, "groups": g, "ppl": m.ppl, "ppl_increase": m.ppl - baseline,
                         "tokens": m.tokens, "chunk": base.chunk, "mode": base.mode, "cached": m.cached})
            print(f"INT{bits} G={g:2d}: ppl {m.ppl:.4f}", flush=True)
    out = Path(HydraConfig.get().runtime.output_dir)
    with (out / "accuracy_vs_groups.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    title = (f"{oracle.source.name}: {cfg.accuracy.windows} x {cfg.accuracy.seq_len} tokens, "
             f"chunk {base.chunk}, {base.mode}")
    plot(rows, baseline, out / "accuracy_vs_groups.png", title)
    print(f"unquantised ppl={baseline:.4f}; wrote {out / 'accuracy_vs_groups.csv'} and accuracy_vs_groups.png")


def main() -> None:
    exit_on_group_syntax(sys.argv[1:])
    _app()


if __name__ == "__main__":
    main()
