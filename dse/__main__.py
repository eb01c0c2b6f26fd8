"""``python -m dse`` / ``dse``: a Hydra-configured multi-objective design-space search.

Exit status: 0 done; 2 bad input (Hydra's composition errors and TIDE's configuration errors alike, one
message); 3 the study's storage stopped answering mid-run (a database that went away: resume when it is back);
130 / 143 stopped by Ctrl-C / SIGTERM after writing the results of the finished trials.
"""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from dse.config import CONF_DIR, ConfigError, exit_on_group_syntax, register_schema
from dse.coordination import StorageLost

log = logging.getLogger("dse")

register_schema()


def _search(cfg: DictConfig) -> None:
    from dse.app import run_search  # heavy imports after Hydra has parsed the command line

    hc = HydraConfig.get()
    if (hc.mode == RunMode.MULTIRUN and cfg.search.storage is not None and not cfg.search.resume
            and not cfg.search.join):
        # jobs sharing one storage get a study each; search.join=true makes them workers of one study
        cfg.search.study_name = f"{cfg.search.study_name}-{hc.job.num}"
        log.info("multirun job %s: study %r in the shared storage", hc.job.num, cfg.search.study_name)
    try:
        summary = run_search(cfg, Path(hc.runtime.output_dir))
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        sys.exit(2)
    except StorageLost as exc:
        print(f"storage error: {exc}", file=sys.stderr)
        sys.exit(3)
    if summary.get("interrupted"):  # the results of the finished trials are written; exit as the signal says
        sys.exit(128 + int(signal.Signals[summary["interrupted"]]))


def main() -> None:
    exit_on_group_syntax(sys.argv[1:])
    started: list[bool] = []

    @hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
    def app(cfg: DictConfig) -> None:
        started.append(True)
        _search(cfg)

    try:
        app()
    except SystemExit as exc:
        if exc.code == 1 and not started:  # Hydra's own error (unknown key, wrong type): bad input as well
            raise SystemExit(2) from None
        raise


if __name__ == "__main__":
    main()
