"""``python -m dse.accuracy``: measure one quantisation configuration on the real model.

A Hydra app over the same ``conf/`` tree (``quant.*``, ``kv.*`` and ``accuracy.*`` keys; ``hydra.run.dir`` works),
going through the persistent oracle cache. The last line printed is ``ppl=<value> tokens=<count>``.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from dse.config import CONF_DIR, ConfigError, exit_on_group_syntax, register_schema, to_config
from workloads.accuracy.measured import Measured

log = logging.getLogger("dse.accuracy")
register_schema()


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def _app(raw: DictConfig) -> None:
    from dse.oracle import AccuracyOracle

    try:
        cfg = to_config(raw)
        spec = cfg.quant.to_spec()
        kv = cfg.kv.to_spec()
        oracle = AccuracyOracle(cfg.accuracy)
        m = oracle.measure(spec, kv)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        sys.exit(2)
    record = {"quant": vars(cfg.quant), "kv": vars(cfg.kv), "proxy_model": str(oracle.source),
              "cost_model_target": cfg.model.name, "ppl": m.ppl, "tokens": m.tokens, "cached": m.cached,
              "key": m.key, "seconds": m.seconds, "measured": m.measured.stats()}
    (Path(HydraConfig.get().runtime.output_dir) / "accuracy.json").write_text(json.dumps(record, indent=2) + "\n")
    for line in describe(m.measured):
        print(line)
    print(f"ppl={m.ppl:.4f} tokens={m.tokens}")


def describe(m: Measured) -> list[str]:
    """What a measurement found besides its perplexity: the rounding chosen, the tokens a KV selection kept and,
    with ``kv.report``, the speculation quality per layer."""
    lines = []
    if m.rounding is not None:  # quant.rounding=auto in calibrated mode
        nll = m.rounding.nll
        lines.append(f"rounding: {m.rounding.chosen} (calibration-window NLL rup {nll['rup']:.4f}, "
                     f"rdn {nll['rdn']:.4f})")
    sel = m.selection
    if sel is not None:
        by_ctx = ", ".join(f"{b.first}-{b.last}: {b.mean:.1f}" for b in sel.buckets)
        lines.append(f"mean selected tokens per sparse layer and row: {sel.mean_selected:.1f} ({by_ctx})")
        if sel.quality is not None:  # kv.report=true
            lines.append("speculation quality (recall of the exact top-k at the same k, Spearman of the scores):")
            for layer, (recall, rho) in sorted(sel.quality.per_layer.items()):
                lines.append(f"  layer {layer:>3}: recall {recall:.3f}  spearman {rho:.3f}")
            lines.append(f"  mean     : recall {sel.quality.recall:.3f}  spearman {sel.quality.spearman:.3f}")
    return lines


def main() -> None:
    exit_on_group_syntax(sys.argv[1:])
    _app()


if __name__ == "__main__":
    main()
