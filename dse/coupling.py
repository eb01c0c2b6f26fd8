"""Coupling the measured-accuracy oracle into a search as a metric provider."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from dse.config import Config
from dse.objectives import Problem, build_problem
from dse.systems import System

log = logging.getLogger(__name__)


class AccuracyProvider:
    """Perplexity (and its increase over the unquantised proxy model) of each design point."""

    def __init__(self, cfg: Config, system: System) -> None:
        from dse.oracle import AccuracyOracle

        self.system = system
        self.oracle = AccuracyOracle(cfg.accuracy)
        self._baseline: float | None = None

    @property
    def baseline_ppl(self) -> float:
        if self._baseline is None:
            self._baseline = self.oracle.baseline().ppl
        return self._baseline

    def __call__(self, points: dict[str, Any]) -> dict[str, np.ndarray]:
        n = max((np.size(v) for v in points.values() if isinstance(v, np.ndarray)), default=1)
        ppl = np.empty(n)
        for i in range(n):
            point = {k: (np.asarray(v).reshape(-1)[i] if isinstance(v, np.ndarray) else v) for k, v in points.items()}
            spec = self.system.quant_spec(point)
            ppl[i] = self.oracle.measure(spec).ppl if spec is not None else np.nan
        return {"ppl": ppl, "ppl_increase": ppl - self.baseline_ppl}

    def describe(self) -> dict[str, Any]:
        ident = self.oracle.identity()
        return {"proxy_model": ident["model"], "proxy_model_sha256": ident["model_sha256"],
                "text_sha256": ident["text_sha256"], "windows": ident["windows"], "seq_len": ident["seq_len"],
                "baseline_ppl": self.baseline_ppl, "measurements_this_run": self.oracle.measured,
                "cache": str(self.oracle.db_path)}


def problem_for(cfg: Config, system: System) -> tuple[Problem, AccuracyProvider | None]:
    """Objectives/constraints of a run; with a measured-accuracy objective where the system has one."""
    provider = None
    if cfg.accuracy.coupled and system.quant_spec(dict(cfg.system.hw)) is not None:
        provider = AccuracyProvider(cfg, system)
    elif cfg.accuracy.coupled:
        log.info("system %s has no accuracy coupling; searching its cost model only", system.name)
    problem = build_problem(cfg.system.objectives, cfg.system.constraints, system.intrinsic_constraints,
                            system.metrics, provider, cfg.accuracy.objective, cfg.accuracy.max_ppl_increase)
    return problem, provider
