"""The search space, declared in config (``system.space``), turned into Optuna suggestions."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import optuna

from dse.config import ConfigError, ParamSpec


def suggest(trial: optuna.Trial, space: dict[str, ParamSpec]) -> dict[str, Any]:
    """Ask the trial for every knob of the space."""
    params: dict[str, Any] = {}
    for key, spec in space.items():
        if spec.type == "categorical":
            params[key] = trial.suggest_categorical(key, list(spec.choices or []))
        elif spec.type == "int":
            step = int(spec.step) if spec.step is not None else 1
            params[key] = trial.suggest_int(key, int(spec.low), int(spec.high), step=step, log=spec.log)
        else:
            params[key] = trial.suggest_float(key, float(spec.low), float(spec.high), step=spec.step,
                                              log=spec.log)
    return params


def distributions(space: dict[str, ParamSpec]) -> dict[str, optuna.distributions.BaseDistribution]:
    """The Optuna distribution of every knob (what :func:`suggest` asks for)."""
    out: dict[str, optuna.distributions.BaseDistribution] = {}
    for key, spec in space.items():
        if spec.type == "categorical":
            out[key] = optuna.distributions.CategoricalDistribution(list(spec.choices or []))
        elif spec.type == "int":
            out[key] = optuna.distributions.IntDistribution(int(spec.low), int(spec.high), log=spec.log,
                                                            step=int(spec.step) if spec.step is not None else 1)
        else:
            out[key] = optuna.distributions.FloatDistribution(float(spec.low), float(spec.high), log=spec.log,
                                                              step=spec.step)
    return out


def grid_values(key: str, spec: ParamSpec) -> list[Any]:
    """All values of one knob for exhaustive (grid) search."""
    if spec.type == "categorical":
        return list(spec.choices or [])
    low, high = float(spec.low), float(spec.high)
    if spec.type == "int":
        if spec.log and spec.step is None:
            # Powers of two inside [low, high]: the natural grid for array and buffer sizes.
            pows = [2 ** e for e in range(int(np.ceil(np.log2(low))), int(np.floor(np.log2(high))) + 1)]
            return sorted({int(low), *pows, int(high)})
        step = int(spec.step) if spec.step is not None else 1
        return list(range(int(low), int(high) + 1, step))
    if spec.step is None:
        raise ConfigError(f"system.space.{key}: the grid sampler needs a step (or choices) for float knobs")
    n = int(np.floor((high - low) / spec.step + 1e-9)) + 1
    return [round(low + i * spec.step, 12) for i in range(n)]


def grid_space(space: dict[str, ParamSpec]) -> dict[str, list[Any]]:
    return {key: grid_values(key, spec) for key, spec in space.items()}


def grid_size(space: dict[str, ParamSpec]) -> int:
    """The number of points of the grid (exact: Python integers, no int64 overflow for huge spaces)."""
    return math.prod(len(v) for v in grid_space(space).values())
