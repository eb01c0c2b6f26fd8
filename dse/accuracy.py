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

from dse.config import CONF_DIR, ConfigError, register_schema, to_config

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
    record = {"quant": vars(cfg.quant), "kv": vars(cfg.kv), "proxy_model": str(oracle.source.path),
              "cost_model_target": cfg.model.name, "ppl": m.ppl, "tokens": m.tokens, "cached": m.cached,
              "key": m.key, "seconds": m.seconds, "selected_tokens": m.stats}
    (Path(HydraConfig.get().runtime.output_dir) / "accuracy.json").write_text(json.dumps(record, indent=2) + "\n")
    if m.stats and "rounding" in m.stats:  # quant.rounding=auto in calibrated mode
        nll = m.stats["rounding_nll"]
        print(f"rounding: {m.stats['rounding']} (calibration-window NLL rup {nll['rup']:.4f}, rdn {nll['rdn']:.4f})")
    if m.stats and "mean_selected" in m.stats:
        by_ctx = ", ".join(f"{k}: {v:.1f}" for k, v in m.stats["by_context"].items())
        print(f"mean selected tokens per sparse layer and row: {m.stats['mean_selected']:.1f} ({by_ctx})")
        quality = m.stats.get("quality")
        if quality:  # kv.report=true
            print("speculation quality (recall of the exact top-k at the same k, Spearman of the scores):")
            for layer, q in quality["per_layer"].items():
                print(f"  layer {layer:>3}: recall {q['recall']:.3f}  spearman {q['spearman']:.3f}")
            print(f"  mean     : recall {quality['recall']:.3f}  spearman {quality['spearman']:.3f}")
    print(f"ppl={m.ppl:.4f} tokens={m.tokens}")


def main() -> None:
    _app()


if __name__ == "__main__":
    main()
