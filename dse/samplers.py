"""Samplers as data: each file of ``conf/search/sampler/`` names a sampler class (``_target_``) and its
options; this module checks such a node and builds the sampler from it.

Adding a sampler is adding a yaml there (and, for a sampler that needs TIDE-side adaptation, a class
here). The seed is passed to every sampler whose constructor takes one; a sampler that takes a
``search_space`` (grid search) gets the system's space as its list of values per knob.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import optuna
from hydra.utils import get_object

from dse.config import ConfigError, ParamSpec
from dse.space import grid_space

RESERVED = ("_target_", "name")  # keys of a sampler node that are not constructor options
INJECTED = ("seed", "search_space")  # constructor arguments TIDE fills in


class AskTellGridSampler(optuna.samplers.GridSampler):
    """GridSampler for an ask/tell loop: the stock one calls ``study.stop()`` (valid only inside
    ``study.optimize``) when the grid is exhausted; here the loop checks ``is_exhausted`` itself."""

    def after_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial,
                    state: optuna.trial.TrialState, values: Any) -> None:
        return None

    @property
    def size(self) -> int:
        return len(self._all_grids)


def _target(node: Mapping[str, Any]) -> Callable[..., optuna.samplers.BaseSampler]:
    target = node.get("_target_")
    if not target:
        raise ConfigError("search.sampler._target_: missing; choose a sampler with search/sampler=NAME "
                          "(one of the files in conf/search/sampler/)")
    try:
        obj = get_object(str(target))
    except Exception as exc:  # ImportError, AttributeError, ...: the target cannot be found
        raise ConfigError(f"search.sampler._target_: cannot import {target!r} ({exc})") from None
    if not callable(obj):
        raise ConfigError(f"search.sampler._target_: {target!r} is not a sampler class or factory")
    return obj


def _parameters(target: Callable[..., Any]) -> dict[str, inspect.Parameter]:
    return dict(inspect.signature(target).parameters)


def check_sampler(node: Mapping[str, Any]) -> None:
    """Every option of the sampler node is an argument of its class (the message lists them)."""
    target = _target(node)
    params = _parameters(target)
    allowed = sorted(p for p in params if p not in INJECTED and p != "self")
    for key in node:
        if key in RESERVED:
            continue
        if key in INJECTED:
            raise ConfigError(f"search.sampler.{key}: set by TIDE (search.seed / system.space), not here")
        if key not in params:
            raise ConfigError(f"search.sampler.{key}: not an option of {node['_target_']}; options: {allowed}")
    if "search_space" not in params:  # the values too: build it once (samplers are cheap to construct)
        _construct(node, target, {"seed": 0} if "seed" in params else {})  # seeded: no "no seed" warning


def _construct(node: Mapping[str, Any], target: Callable[..., optuna.samplers.BaseSampler],
               injected: dict[str, Any]) -> optuna.samplers.BaseSampler:
    kwargs = {k: v for k, v in node.items() if k not in RESERVED}
    try:
        with warnings.catch_warnings():  # several samplers are marked experimental; they are used as they are
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return target(**kwargs, **injected)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"search.sampler ({node.get('name', node['_target_'])}): {exc}") from None


def make_sampler(node: Mapping[str, Any], seed: int, space: dict[str, ParamSpec]) -> optuna.samplers.BaseSampler:
    """The sampler a ``search/sampler`` node describes (checked by the config's validation), seeded; bad
    options still raise :class:`ConfigError`."""
    target = _target(node)
    params = _parameters(target)
    injected: dict[str, Any] = {}
    if "seed" in params:
        injected["seed"] = seed
    if "search_space" in params:
        injected["search_space"] = grid_space(space)
    return _construct(node, target, injected)


def finite_size(sampler: optuna.samplers.BaseSampler) -> int | None:
    """How many distinct trials a sampler that enumerates its space can propose (None: unbounded)."""
    size = getattr(sampler, "size", None)
    return int(size) if size is not None else None


def exhausted(sampler: optuna.samplers.BaseSampler, study: optuna.Study) -> bool:
    is_exhausted = getattr(sampler, "is_exhausted", None)
    return bool(is_exhausted(study)) if is_exhausted is not None else False
