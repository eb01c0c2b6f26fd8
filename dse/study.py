"""The Optuna side: sampler and storage from config, and the ask/tell loop.

Every trial records its parameters, the full metric set (user attributes), its constraint values
(``trial.set_constraint``) and, for invalid points, the reason. A trial whose evaluation raises is
told as FAIL with the error text and the loop goes on.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock
from tqdm import tqdm

from dse.config import Config, ConfigError, SearchConfig
from dse.objectives import Problem, assess
from dse.samplers import exhausted, finite_size, make_sampler
from dse.space import suggest
from dse.systems import System

log = logging.getLogger(__name__)

JOURNAL_NAME = "study.journal"


def make_storage(search: SearchConfig, run_dir: Path) -> optuna.storages.BaseStorage | str:
    """Journal file in the run dir by default; ``search.storage`` may name a journal file or an RDB URL."""
    target = search.storage
    if target is None:
        path = run_dir / JOURNAL_NAME
    elif "://" in target:
        return target
    else:
        path = Path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path))))


def open_study(cfg: Config, run_dir: Path, problem: Problem) -> optuna.Study:
    sampler = make_sampler(cfg.search.sampler, cfg.search.seed, cfg.system.space)  # bad options: before any file
    storage = make_storage(cfg.search, run_dir)
    directions = list(problem.objectives.values())
    name = cfg.search.study_name
    existing = {s.study_name for s in optuna.get_all_study_summaries(storage)}
    if cfg.search.resume and name not in existing:
        raise ConfigError(f"search.resume: study {name!r} not found in the storage; studies there: "
                          f"{sorted(existing) or 'none'}")
    if not cfg.search.resume and name in existing:
        raise ConfigError(f"search.study_name: study {name!r} already exists in the storage; "
                          "set search.resume=true to continue it or choose another name")
    study = optuna.create_study(study_name=name, storage=storage, sampler=sampler, directions=directions,
                                load_if_exists=cfg.search.resume)
    if list(study.directions) != [optuna.study.StudyDirection[d.upper()] for d in directions]:
        raise ConfigError("system.objectives: the resumed study was created with other objectives")
    if study.metric_names is not None and list(study.metric_names) != list(problem.objectives):
        raise ConfigError(f"system.objectives: the resumed study optimises {study.metric_names}, "
                          f"this run asks for {list(problem.objectives)}")
    with warnings.catch_warnings():  # set_metric_names is marked experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(list(problem.objectives))
    study.set_user_attr("system", cfg.system.name)
    return study


@dataclass(frozen=True)
class LoopResult:
    n_asked: int
    n_failed: int
    wall_s: float


def run_trial(trial: optuna.Trial, cfg: Config, system: System, problem: Problem) -> tuple[float, ...]:
    """Evaluate one trial's design point; sets constraints and attributes on the trial."""
    params = suggest(trial, cfg.system.space)
    point = {**cfg.system.hw, **params}
    # Accuracy first (valid points only), then the cost model once with what the measurement observed
    # (e.g. InfiniGen's selected-token counts).
    extra = problem.extra(point) if problem.providers and not system.invalid(point)[0] else {}
    evaluation = system.evaluate(point, extra)
    (result,) = assess(evaluation, problem.objectives, problem.constraints, extra)
    for key, value in result.constraints.items():
        trial.set_constraint(key, value)
    for key, value in result.metrics.items():
        trial.set_user_attr(key, value if math.isfinite(value) else str(value))
    trial.set_user_attr("feasible", result.feasible)
    if result.invalid_reason:
        trial.set_user_attr("invalid_reason", result.invalid_reason)
    return result.values


def optimise(study: optuna.Study, cfg: Config, system: System, problem: Problem) -> LoopResult:
    """Ask/tell loop with a progress bar, ``n_trials`` and ``timeout``; failures never stop it."""
    search = cfg.search
    size = finite_size(study.sampler)
    n_total = search.n_trials if size is None else min(search.n_trials, size)
    start = time.monotonic()
    failed = asked = 0
    bar = tqdm(total=n_total, desc=f"search[{search.sampler_name}]", unit="trial", disable=not search.progress)
    try:
        while asked < n_total:
            if search.timeout is not None and time.monotonic() - start >= search.timeout:
                log.info("timeout of %.1f s reached after %d trials", search.timeout, asked)
                break
            if exhausted(study.sampler, study):
                break
            trial = study.ask()
            asked += 1
            try:
                values = run_trial(trial, cfg, system, problem)
            except Exception as exc:  # a crashed trial never kills the study
                failed += 1
                trial.set_user_attr("error", f"{type(exc).__name__}: {exc}")
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                log.warning("trial %d failed: %s: %s", trial.number, type(exc).__name__, exc)
            else:
                study.tell(trial, list(values))
            bar.update(1)
            bar.set_postfix(failed=failed)
    finally:
        bar.close()
    return LoopResult(n_asked=asked, n_failed=failed, wall_s=time.monotonic() - start)

