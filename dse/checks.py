"""The checks of a configuration that need more than its schema (``dse.config``): the sampler's options against
its class, every name the system's config uses against the system, and an exhaustive run's space. A search runs
them all before its study is touched; each failure is a :class:`~dse.config.ConfigError` naming the key."""

from __future__ import annotations

from dse.config import Config
from dse.samplers import check_sampler
from dse.systems import System, make_system


def check_search(cfg: Config) -> System:
    """The configured system, once every check of a search's configuration has passed."""
    check_sampler(cfg.search.sampler)
    system = make_system(cfg)
    if cfg.search.exhaustive:
        from dse.exhaustive import check_enumerable

        check_enumerable(cfg.system.space, cfg.search.max_points)
    return system
