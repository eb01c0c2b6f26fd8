"""Design files read back: a designs/*.yaml document (the format :mod:`dse.export` writes) as the configuration,
system and design point it describes, re-evaluated (``python -m dse.evaluate``) or broken down per operator (the
report). Anything that keeps a file from describing an evaluable design is a :class:`DesignFileError` naming the
key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from dse.config import CONF_DIR, Config, ConfigError, compose_raw, first_line, to_config
from dse.coupling import problem_for
from dse.systems import System, make_system

FORMAT_VERSION = 1


def shipped_systems() -> list[str]:
    """The systems of ``conf/system/`` (a design file names one of them)."""
    return sorted(p.stem for p in (CONF_DIR / "system").glob("*.yaml"))


def _check_parts(system: dict[str, Any]) -> None:
    """Each recorded catalog part (``system.parts``) is an entry of the shipped system's catalog knob."""
    parts = system.get("parts") or {}
    if not isinstance(parts, dict):
        raise DesignFileError(f"system.parts: a mapping is expected, found {parts!r:.60}")
    catalog = compose_raw([f"system={system['name']}"]).system.get("catalog") or {}
    for knob, part in parts.items():
        if knob not in catalog:
            raise DesignFileError(f"system.parts.{knob}: not a catalog knob of system {system['name']!r}; "
                                  f"allowed: {sorted(catalog)}")
        choice = part.get("choice") if isinstance(part, dict) else None
        entries = sorted(catalog[knob].get("entries") or {})
        if str(choice) not in entries:
            raise DesignFileError(f"system.parts.{knob}.choice: {choice!r} is not a part of the catalog; allowed: "
                                  f"{entries}")


def _check_values(hw: dict[str, Any], system: System) -> None:
    """Every knob one value: a number (or a flag), or for a categorical knob one of its choices."""
    for key, value in hw.items():
        if isinstance(value, list | tuple | dict):
            raise DesignFileError(f"system.hw.{key}: a design holds one value per knob, got {value!r}")
        if key in system.knob_choices:
            if str(value) not in system.knob_choices[key]:
                raise DesignFileError(f"system.hw.{key}: {value!r} is not allowed; allowed values: "
                                      f"{list(system.knob_choices[key])}")
        elif not isinstance(value, int | float):  # bool is an int: flags such as double_buffered
            raise DesignFileError(f"system.hw.{key}: a number is expected, found {value!r:.60}")


def _shipped(name: str) -> tuple[str, str | None]:
    """Family and KV method of the shipped ``conf/system/<name>.yaml`` (design files written before
    they were recorded)."""
    system = compose_raw([f"system={name}"]).system
    return str(system.family), system.kv_method


class DesignFileError(ValueError):
    """A design file that cannot be read or describes no evaluable design (bad input, not a mismatch)."""


def load_design(path: Path) -> dict[str, Any]:
    """The document of a design file; a :class:`DesignFileError` for anything unreadable (the caller names
    the file)."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise DesignFileError(f"cannot read it ({exc.__class__.__name__}: {exc})") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise DesignFileError(f"not valid YAML (truncated or damaged?): {first_line(exc)}") from None
    if doc is None:
        raise DesignFileError("the file is empty")
    if not isinstance(doc, dict):
        raise DesignFileError(f"not a TIDE design file (a mapping is expected, found {type(doc).__name__})")
    return doc


def _mapping(doc: dict[str, Any], key: str) -> dict[str, Any]:
    value = doc.get(key)
    if not isinstance(value, dict):
        raise DesignFileError(f"{key}: a mapping is expected, found {value!r:.60}")
    return value


def config_from_document(doc: dict[str, Any]) -> Config:
    """The run configuration a design file describes (search settings at their defaults); a
    :class:`DesignFileError` naming the key when the document is not a valid design."""
    version = doc.get("tide_design")
    if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
        raise DesignFileError(f"tide_design: format {version} was written by a newer TIDE; this one reads "
                              f"format {FORMAT_VERSION}")
    if version != FORMAT_VERSION:
        raise DesignFileError(f"tide_design: not a TIDE design file (tide_design: {version!r}, expected "
                              f"{FORMAT_VERSION})")
    system = _mapping(doc, "system")
    for key in ("model", "tech", "workload", "objectives"):
        _mapping(doc, key)
    hw = _mapping(system, "hw")
    if not isinstance(system.get("name"), str):
        raise DesignFileError(f"system.name: a system name is expected, found {system.get('name')!r:.60}")
    if system["name"] not in shipped_systems():
        raise DesignFileError(f"system.name: {system['name']!r} is not a system; allowed: {shipped_systems()}")
    _check_parts(system)
    try:
        family, kv_method = ((system["family"], system.get("kv_method")) if "family" in system
                             else _shipped(system["name"]))
        node = OmegaConf.merge(OmegaConf.structured(Config), {
            "system": {"name": system["name"], "family": family, "kv_method": kv_method, "hw": hw,
                       "objectives": doc["objectives"], "mechanism": system.get("mechanism") or {}},
            "model": doc["model"], "tech": doc["tech"], "workload": doc["workload"],
            "search": {"sampler": {"name": "random", "_target_": "optuna.samplers.RandomSampler"}},  # not used
            "accuracy": doc.get("accuracy") or {"objective": "none", "max_ppl_increase": None},
        })
        return to_config(node)
    except DesignFileError:
        raise
    except (ConfigError, OmegaConfBaseException, OSError, ValueError, TypeError, KeyError) as exc:
        raise DesignFileError(first_line(exc)) from exc


def evaluate_document(doc: dict[str, Any]) -> dict[str, float]:
    """Cost-model metrics of the design, plus measured accuracy when the search was coupled
    (through the oracle's cache: the same key as the search, so normally no new measurement)."""
    return evaluated(doc)[2]


def design_system(doc: dict[str, Any]) -> tuple[Config, System, dict[str, Any]]:
    """(its configuration, the system, the design point) of a design document: a :class:`DesignFileError`
    for a design that cannot be built or is invalid."""
    cfg = config_from_document(doc)
    try:
        system = make_system(cfg)
    except (ConfigError, ValueError, TypeError, KeyError) as exc:
        raise DesignFileError(first_line(exc)) from exc
    _check_values(dict(cfg.system.hw), system)
    try:
        point = dict(cfg.system.hw)
        invalid = system.invalid(point)[0]
    except (ConfigError, ValueError, TypeError, KeyError) as exc:
        raise DesignFileError(first_line(exc)) from exc
    if invalid:
        raise DesignFileError(f"system.hw: the design is invalid: {invalid}")
    return cfg, system, point


def design_breakdown(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The per-operator rows (``BREAKDOWN_COLUMNS``) of a design document; empty for a system without a
    per-GEMM model. No accuracy is measured."""
    _, system, point = design_system(doc)
    return system.breakdown(point)


def evaluated(doc: dict[str, Any]) -> tuple[System, dict[str, Any], dict[str, float]]:
    """(the system, the design point, its metrics) of a design document."""
    cfg, system, point = design_system(doc)
    problem, _ = problem_for(cfg, system)
    observed = problem.extra(point)
    metrics = {k: float(v[0]) for k, v in system.evaluate(point, observed.selection).metrics.items()}
    metrics.update({k: float(np.asarray(v).reshape(-1)[0]) for k, v in observed.metrics.items() if np.size(v) == 1})
    return system, point, metrics
