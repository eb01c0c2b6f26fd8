"""A run directory's config: ``config.yaml``, the whole validated config a search ran with, written at its start and
read back by the tools that work on finished runs (``python -m dse.robust``)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from dse.config import Config, ConfigError, to_config

RUN_CONFIG = "config.yaml"


def write_config(cfg: Config, run_dir: Path) -> None:
    """``config.yaml``: the run's whole validated config, what later tools re-read (``python -m dse.robust``)."""
    (run_dir / RUN_CONFIG).write_text(OmegaConf.to_yaml(OmegaConf.structured(cfg)))


def read_config(run_dir: Path) -> Config:
    """The config a run directory was searched with (its ``config.yaml``; a Hydra run's ``.hydra/config.yaml``)."""
    for path in (run_dir / RUN_CONFIG, run_dir / ".hydra" / "config.yaml"):
        if path.is_file():
            return to_config(OmegaConf.merge(OmegaConf.structured(Config), OmegaConf.load(path)))
    raise ConfigError(f"{run_dir}: no {RUN_CONFIG} (nor .hydra/config.yaml): not a run directory of this version "
                      "(search again, or resume it, to write one)")
