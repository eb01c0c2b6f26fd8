"""Coupling the measured-accuracy oracle into a search as a metric provider."""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from dse.accuracy_store import AccuracyStore
from dse.config import Config
from dse.objectives import Observed, Problem, build_problem
from dse.oracle import AccuracyOracle, Measurement
from dse.systems import System, split_points
from workloads.accuracy.measured import SelectionStats
from workloads.accuracy.specs import KVSpec, QuantSpec

log = logging.getLogger(__name__)


class AccuracyProvider:
    """Perplexity (and its increase over the unquantised proxy model) of each design point."""

    def __init__(self, cfg: Config, system: System, store: AccuracyStore | None = None) -> None:
        self.system = system
        self.oracle = AccuracyOracle(cfg.accuracy, store)
        self._baseline: float | None = None
        scr = cfg.accuracy.screening
        self.bound = cfg.accuracy.max_ppl_increase
        self.screen = (AccuracyOracle(dataclasses.replace(cfg.accuracy, windows=scr.windows, seq_len=scr.seq_len),
                                      self.oracle.store, beside=self.oracle)
                       if scr.enabled and self.bound is not None else None)
        self.factor = scr.factor
        self._screen_baseline: float | None = None
        self.screened_out = 0

    @property
    def baseline_ppl(self) -> float:
        if self._baseline is None:
            self._baseline = self.oracle.baseline().ppl
        return self._baseline

    def __call__(self, points: dict[str, Any]) -> Observed:
        rows = split_points(points)
        n = len(rows)
        ppl = np.full(n, np.nan)
        selected = np.full(n, np.nan)
        screened = np.zeros(n)
        selections: list[SelectionStats] = []
        for i, point in enumerate(rows):
            spec = self.system.accuracy_spec(point)
            if spec is None:
                continue
            m, screened[i] = self.measure(spec)
            ppl[i] = m.ppl if not screened[i] else m.ppl - self.screen_baseline + self.baseline_ppl
            if m.selection is not None:
                selected[i] = m.selection.mean_selected
                selections.append(m.selection)
        metrics = {"ppl": ppl, "ppl_increase": ppl - self.baseline_ppl, "mean_selected_measured": selected}
        if self.screen is not None:
            metrics["accuracy_screened"] = screened
        return Observed(metrics, selections[0] if n == 1 and selections else None)

    @property
    def screen_baseline(self) -> float:
        assert self.screen is not None
        if self._screen_baseline is None:
            self._screen_baseline = self.screen.baseline().ppl
        return self._screen_baseline

    def measure(self, spec: tuple[QuantSpec, KVSpec | None]) -> tuple[Measurement, bool]:
        """The full measurement, or (screening on, the key not measured fully yet) the screen's when it shows
        the design beyond the accuracy bound even after dividing its increase by the stated factor."""
        if self.screen is None or self.oracle.lookup(self.oracle.key(*spec)) is not None:
            return self.oracle.measure(*spec), False
        s = self.screen.measure(*spec)
        assert self.bound is not None
        if math.isfinite(s.ppl) and (s.ppl - self.screen_baseline) / self.factor <= self.bound:
            return self.oracle.measure(*spec), False
        self.screened_out += 1
        return s, True

    def identity(self) -> dict[str, Any]:
        """What this provider's metrics mean (a resumed study must have the same): the measurement set-up (what makes
        its keys: content hashes of model and texts, windows, dtype, the emulation's code; the model's path is
        provenance only; the screen differs from it in ``accuracy.screening``'s windows only), the proxy by name, the
        ``quant.*`` / ``kv.*`` fields the system's specs read, and how a measurement becomes the objective and
        constraint."""
        cfg = self.oracle.cfg
        return {"accuracy": {
            "proxy": cfg.proxy.name if cfg.model_path is None else Path(cfg.model_path).name,
            "measurement": _without_provenance(self.oracle.identity()),
            "specs": self.spec_inputs(),
            "objective": cfg.objective, "max_ppl_increase": cfg.max_ppl_increase,
            "screening": dataclasses.asdict(cfg.screening),
        }}

    def spec_inputs(self) -> dict[str, dict[str, Any]]:
        """The ``quant.*`` / ``kv.*`` fields the system reads from the config (``System.spec_inputs``) that enter the
        measurement's key (the quantisation method's fields; the KV selection where attention differs from the
        model's own), judged on the system's default design point: a field that changes no measurement changes no
        problem."""
        quant, kv = self.system.accuracy_spec(self.system.complete({})) or (None, None)
        keyed = self.oracle.session.describe(quant, kv) if quant is not None else {}
        return {section: {k: v for k, v in fields.items() if k in (keyed.get(section) or {})}
                for section, fields in self.system.spec_inputs().items()}

    def keys_of(self, params: Iterable[dict[str, Any]], space: dict[str, Any]) -> list[str]:
        """The accuracy cache keys the designs of ``params`` (trials' knob values) rest on, each once: one key per
        combination of the knobs that change the accuracy spec (found by probing, as the exhaustive run does)."""
        from dse.exhaustive import accuracy_knobs
        from dse.space import grid_values

        values = {k: grid_values(k, v) if v.type != "float" or v.step is not None else [v.low, v.high]
                  for k, v in space.items()}
        knobs = accuracy_knobs(self.system, values, True)
        combos = {tuple((k, p[k]) for k in knobs if k in p) for p in params}
        keys = set()
        for combo in sorted(combos, key=repr):
            spec = self.system.accuracy_spec(self.system.complete(dict(combo)))
            if spec is not None:
                keys.add(self.oracle.key(*spec))
        return sorted(keys)

    def describe(self, measured_elsewhere: int = 0) -> dict[str, Any]:
        """``measured_elsewhere``: keys this run's worker processes measured (search.workers > 1)."""
        ident = self.oracle.identity()
        return {"proxy_model": ident["model"], "proxy_model_sha256": ident["model_sha256"],
                "text_sha256": ident["text_sha256"], "windows": ident["windows"], "seq_len": ident["seq_len"],
                "baseline_ppl": self.baseline_ppl,
                "measurements_this_run": self.oracle.measured + measured_elsewhere,
                "screening": ({"windows": self.screen.cfg.windows, "seq_len": self.screen.cfg.seq_len,
                               "factor": self.factor, "screen_measurements": self.screen.measured,
                               "keys_screened_out": self.screened_out} if self.screen is not None else None),
                "cache": self.oracle.store.location}


def _without_provenance(identity: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in identity.items() if k != "model"}


def problem_for(cfg: Config, system: System, store: AccuracyStore | None = None
                ) -> tuple[Problem, AccuracyProvider | None]:
    """Objectives/constraints of a run; with a measured-accuracy objective where the system has one.
    ``store``: where measurements live (default: the SQLite file in ``accuracy.cache_dir``)."""
    provider = None
    if cfg.accuracy.coupled and system.accuracy_spec(dict(cfg.system.hw)) is not None:
        provider = AccuracyProvider(cfg, system, store)
    elif cfg.accuracy.coupled:
        log.info("system %s has no accuracy coupling; searching its cost model only", system.name)
    problem = build_problem(cfg.system.objectives, cfg.system.constraints, system.intrinsic_constraints,
                            system.metrics, provider, cfg.accuracy.optimised, cfg.accuracy.max_ppl_increase)
    return problem, provider
