"""Systems the search can explore: one module per cost-model family, each defining ``SYSTEM``.

``conf/system/<name>.yaml`` names its family (``family: offload``); :func:`make_system` loads that
module, builds the system from the config and checks every name the config uses against it. Adding a
family is adding a module here (and its cost model under ``cost_models/``) plus a yaml.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache
from pathlib import Path

from dse.config import Config, ConfigError
from dse.systems._base import Evaluation, System, scheme_from_mechanism, split_points
from workloads.checks import require_choice

__all__ = ["Evaluation", "System", "families", "make_system", "scheme_from_mechanism", "split_points",
           "system_class"]


@cache
def families() -> tuple[str, ...]:
    """The cost-model families: the modules of this package (listed without importing them)."""
    here = str(Path(__file__).resolve().parent)
    return tuple(sorted(m.name for m in pkgutil.iter_modules([here]) if not m.name.startswith("_")))


def system_class(family: str) -> type[System]:
    require_choice("system.family", family, families(), ConfigError)
    return importlib.import_module(f"dse.systems.{family}").SYSTEM


def make_system(cfg: Config) -> System:
    """Build the configured system and check every name the config uses against it."""
    system = system_class(cfg.system.family)(cfg)
    check_system_config(cfg, system)
    return system


def check_system_config(cfg: Config, system: System) -> None:
    knobs = set(system.knobs)
    hw = cfg.system.hw
    unknown = sorted(set(hw) - knobs)
    if unknown:
        raise ConfigError(f"system.hw.{unknown[0]}: unknown knob; allowed knobs: {sorted(knobs)}")
    missing = sorted(knobs - set(hw))
    if missing:
        raise ConfigError(f"system.hw.{missing[0]}: missing; every knob needs a default: {sorted(knobs)}")
    for name, knob in cfg.system.catalog.items():
        for hw_key in knob.sets:
            if hw_key not in knobs:
                raise ConfigError(f"system.catalog.{name}.sets.{hw_key}: unknown knob; allowed knobs: {sorted(knobs)}")
    for key in cfg.system.space:
        if key not in knobs and key not in cfg.system.catalog:
            raise ConfigError(f"system.space.{key}: unknown knob; allowed knobs: {sorted(knobs)}"
                              + (f"; catalog knobs: {sorted(cfg.system.catalog)}" if cfg.system.catalog else ""))
    for section, names in (("objectives", cfg.system.objectives), ("constraints", cfg.system.constraints)):
        for metric in names:
            if metric not in system.metrics:
                raise ConfigError(
                    f"system.{section}.{metric}: unknown metric; allowed metrics: {sorted(system.metrics)}"
                )
    for key, allowed in system.knob_choices.items():
        require_choice(f"system.hw.{key}", str(hw[key]), allowed, ConfigError)
        spec = cfg.system.space.get(key)
        for choice in (spec.choices or []) if spec is not None and spec.type == "categorical" else []:
            require_choice(f"system.space.{key}.choices", str(choice), allowed, ConfigError)
