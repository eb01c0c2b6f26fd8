"""``python -m dse`` / ``dse``: a Hydra-configured multi-objective design-space search.

Exit status: 0 done; 2 bad input (Hydra's composition errors and TIDE's configuration errors alike, one
message); 3 the study's storage stopped answering mid-run (a database that went away: resume when it is back);
130 / 143 stopped by Ctrl-C / SIGTERM after writing the results of the finished trials.
"""

from __future__ import annotations

import logging
import os
import shutil
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
    run_dir = Path(hc.runtime.output_dir)
    try:
        summary = run_search(cfg, run_dir)
    except ConfigError as exc:
        remove_if_only_hydra(run_dir)
        print(f"configuration error: {exc}", file=sys.stderr)
        sys.exit(2)
    except StorageLost as exc:
        print(f"storage error: {exc}", file=sys.stderr)
        sys.exit(3)
    if summary.get("interrupted"):  # the results of the finished trials are written; exit as the signal says
        sys.exit(128 + int(signal.Signals[summary["interrupted"]]))


def remove_if_only_hydra(run_dir: Path) -> None:
    """A run refused before any work leaves no run directory: remove it when it holds nothing but what Hydra wrote
    (``.hydra/`` and the job's log); a directory with any result of a run is left alone."""
    if not run_dir.is_dir():
        return
    entries = list(run_dir.iterdir())
    if all(e.name == ".hydra" or (e.is_file() and e.suffix == ".log") for e in entries):
        shutil.rmtree(run_dir, ignore_errors=True)


def unwritable_run_dir(argv: list[str]) -> str | None:
    """The message for a ``hydra.run.dir`` / ``hydra.sweep.dir`` that cannot be created or written (its nearest
    existing folder is read-only or not writable), said before Hydra tries and fails with a traceback."""
    for arg in argv:
        key, _, value = arg.partition("=")
        if key not in ("hydra.run.dir", "hydra.sweep.dir") or not value:
            continue
        folder = Path(value).expanduser().absolute()
        existing = next((p for p in (folder, *folder.parents) if p.exists()), Path("/"))
        if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
            return f"{key}: {folder} cannot be written ({existing} is not a writable directory)"
    return None


def main() -> None:
    exit_on_group_syntax(sys.argv[1:])
    message = unwritable_run_dir(sys.argv[1:])
    if message is not None:
        print(f"configuration error: {message}", file=sys.stderr)
        raise SystemExit(2)
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
