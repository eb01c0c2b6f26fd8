"""``python -m dse`` / ``dse``: a Hydra-configured multi-objective design-space search."""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from dse.config import CONF_DIR, ConfigError, register_schema

log = logging.getLogger("dse")

register_schema()


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def _app(cfg: DictConfig) -> None:
    from dse.app import run_search  # heavy imports after Hydra has parsed the command line

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        summary = run_search(cfg, run_dir)
    except ConfigError as exc:
        log.error("configuration error: %s", exc)
        print(f"configuration error: {exc}", file=sys.stderr)
        sys.exit(2)
    if summary.get("interrupted"):  # the results of the finished trials are written; exit as the signal says
        sys.exit(128 + int(signal.Signals[summary["interrupted"]]))


def main() -> None:
    _app()


if __name__ == "__main__":
    main()
