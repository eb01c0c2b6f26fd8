"""The stated ranges a joint draw moves, the draws themselves, and a run's config at one draw.

Every calibrated constant and labelled assumption in ``conf/`` states ``range: [low, high]`` next to its value and
source. A joint draw samples all of them at once: uniformly unless the entry names another ``dist``
(``loguniform`` for a figure known to an order of magnitude, ``triangular`` with its mode at the configured value),
and inputs that share a ``moves_with`` name move together (one quantile for all of them: the node's logic energy and
area scales follow one geometry, conf/tech/7nm.yaml). What a run searches is a decision, not an uncertain input: a
hardware default the space sets, or a catalog part sets (a memory's bandwidth), is not drawn.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import yaml

from dse.config import Config, ConfigError
from dse.uncertainty import UNCERTAINTY_DIR, Uncertain, mechanism_ranges, tech_ranges


def decided(cfg: Config) -> set[str]:
    """Hardware keys a run's design point sets: its space's knobs and what its catalog parts set."""
    return set(cfg.system.space) | {k for knob in cfg.system.catalog.values() for k in knob.sets}


def hw_ranges(cfg: Config) -> list[Uncertain]:
    """The ranges of ``conf/uncertainty/<system.uncertainty>.yaml`` for the hardware defaults the run does not
    search; a configured value outside its range means the file was written for other hardware (a ConfigError)."""
    if cfg.system.uncertainty is None:
        return []
    path = UNCERTAINTY_DIR / f"{cfg.system.uncertainty}.yaml"
    entries = yaml.safe_load(path.read_text()) or {}
    skip = decided(cfg)
    out = []
    for key, e in entries.items():
        if key in skip:
            continue
        if key not in cfg.system.hw:
            raise ConfigError(f"system.uncertainty={cfg.system.uncertainty}: {key} is not a hardware default of "
                              f"system {cfg.system.name}; known: {sorted(cfg.system.hw)}")
        lo, hi = map(float, e["range"])
        value = float(cfg.system.hw[key])
        if not lo <= value <= hi:
            raise ConfigError(f"system.uncertainty={cfg.system.uncertainty}: system.hw.{key}={value:g} lies outside "
                              f"its range [{lo:g}, {hi:g}] ({path.name} was written for other hardware); name the "
                              "file for this hardware or set system.uncertainty=null")
        out.append(Uncertain("hw", key, value, lo, hi, str(e["source"]), (), e.get("dist", "uniform"),
                             e.get("moves_with")))
    return out


def run_ranges(cfg: Config) -> list[Uncertain]:
    """Every stated range that applies to one run: its system's mechanism parameters, its technology table and its
    undisclosed hardware defaults (those its design points do not set)."""
    return mechanism_ranges({cfg.system.name: cfg}) + tech_ranges(cfg) + hw_ranges(cfg)


def quantile(p: Uncertain, u: np.ndarray) -> np.ndarray:
    """The values of ``p`` at quantiles ``u`` of its distribution over its range."""
    lo, hi = p.low, p.high
    if hi == lo:
        return np.full(u.shape, lo)
    if p.dist == "loguniform":
        return np.exp(math.log(lo) + u * (math.log(hi) - math.log(lo)))
    if p.dist == "triangular":
        mode = min(max(p.nominal, lo), hi)
        c = (mode - lo) / (hi - lo)
        left = lo + np.sqrt(u * (hi - lo) * (mode - lo))
        right = hi - np.sqrt((1 - u) * (hi - lo) * (hi - mode))
        return np.where(u < c, left, right)
    return lo + u * (hi - lo)


def draw(params: Sequence[Uncertain], n: int, seed: int) -> np.ndarray:
    """``n`` joint draws ([n, len(params)]), reproducible by ``seed``: one uniform quantile per input, or per
    ``moves_with`` name for inputs that move together, mapped through each input's distribution."""
    rng = np.random.default_rng(seed)
    shared: dict[str, np.ndarray] = {}
    cols = []
    for p in params:
        if p.moves_with is None:
            u = rng.random(n)
        else:
            u = shared.setdefault(p.moves_with, rng.random(n))
        cols.append(quantile(p, u))
    return np.column_stack(cols) if cols else np.zeros((n, 0))


def configured(cfg: Config, params: Sequence[Uncertain], values: Sequence[float]) -> Config:
    """``cfg`` with every parameter of ``params`` at its value in ``values`` (the mechanism, tech and hardware
    entries replaced; sources and ranges kept)."""
    tech: dict[str, Any] = {}
    mechanism = dict(cfg.system.mechanism)
    hw = dict(cfg.system.hw)
    for p, v in zip(params, values, strict=True):
        if p.kind == "tech":
            tech[p.key] = dataclasses.replace(getattr(cfg.tech, p.key), value=float(v))
        elif p.kind == "mechanism":
            mechanism[p.key] = dataclasses.replace(mechanism[p.key], value=float(v))
        else:
            hw[p.key] = float(v)
    return dataclasses.replace(cfg, tech=dataclasses.replace(cfg.tech, **tech),
                               system=dataclasses.replace(cfg.system, mechanism=mechanism, hw=hw))
