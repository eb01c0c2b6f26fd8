"""The Optuna side: sampler and storage from config, and the ask/tell loop.

Every trial records its parameters, the full metric set (user attributes), its constraint values
(``trial.set_constraint``) and, for invalid points, the reason. A trial whose evaluation raises is
told as FAIL with the error text and the loop goes on.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import signal
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from omegaconf import OmegaConf
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


PROBLEM_ATTR = "tide_problem"
#: accuracy settings that change what a measured objective means (progress bars, threads, device do not)
ACCURACY_KEYS = ("model_path", "text_path", "calib_path", "windows", "seq_len", "calib_windows", "dtype",
                 "objective", "max_ppl_increase")


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(OmegaConf.structured(node), resolve=True)


def problem_record(cfg: Config, problem: Problem) -> dict[str, Any]:
    """What a study is: the system (family, hardware, space, mechanism), model, technology table, workload,
    objectives, constraints and accuracy set-up. Stored with the study; a resume must match it."""
    coupled = bool(problem.providers)
    return json.loads(json.dumps({
        "system": {k: v for k, v in _plain(cfg.system).items() if k not in ("description", "objectives",
                                                                             "constraints")},
        "model": _plain(cfg.model),
        "tech": _plain(cfg.tech),
        "workload": _plain(cfg.workload),
        "objectives": dict(problem.objectives),
        "constraints": {k: {"max": b.max, "min": b.min} for k, b in problem.constraints.items()},
        "accuracy": {k: getattr(cfg.accuracy, k) for k in ACCURACY_KEYS} if coupled else None,
    }, sort_keys=True, default=str))


def _flat(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for k, v in node.items():
            out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: node}


def differences(old: dict[str, Any], new: dict[str, Any], limit: int = 6) -> list[str]:
    """'key: old -> new' for the leaves that differ (at most ``limit``, then a count)."""
    a, b = _flat(old), _flat(new)
    keys = sorted(set(a) | set(b), key=lambda k: (not k.endswith(".name"), k))  # names say most: first
    diff = [f"{k}: {a.get(k, '(absent)')!r} -> {b.get(k, '(absent)')!r}" for k in keys
            if a.get(k, "(absent)") != b.get(k, "(absent)")]
    return diff[:limit] + ([f"... and {len(diff) - limit} more"] if len(diff) > limit else [])


def check_same_problem(study: optuna.Study, record: dict[str, Any]) -> None:
    """A resumed study must be the same problem: refuse (naming what differs) before any trial is added."""
    stored = study.user_attrs.get(PROBLEM_ATTR)
    if stored is None:
        log.warning("study %r records no problem description (written by an older TIDE); resuming unchecked",
                    study.study_name)
        return
    diff = differences(stored, record)
    if diff:
        raise ConfigError(f"search.resume: study {study.study_name!r} is another problem than this run; "
                          f"differences (stored -> now): {'; '.join(diff)}. Resume it with its own settings, "
                          "or start a new study with another search.study_name")


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
    if cfg.search.resume:  # loading writes nothing: every check below runs before the study is touched
        study = optuna.load_study(study_name=name, storage=storage, sampler=sampler)
    else:
        study = optuna.create_study(study_name=name, storage=storage, sampler=sampler, directions=directions)
    if list(study.directions) != [optuna.study.StudyDirection[d.upper()] for d in directions]:
        raise ConfigError("system.objectives: the resumed study was created with other objectives")
    if study.metric_names is not None and list(study.metric_names) != list(problem.objectives):
        raise ConfigError(f"system.objectives: the resumed study optimises {study.metric_names}, "
                          f"this run asks for {list(problem.objectives)}")
    record = problem_record(cfg, problem)
    if cfg.search.resume:
        check_same_problem(study, record)
    else:
        study.set_user_attr(PROBLEM_ATTR, record)
    with warnings.catch_warnings():  # set_metric_names is marked experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(list(problem.objectives))
    study.set_user_attr("system", cfg.system.name)
    return study


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived: the loop stops, the trial in flight is told FAIL, the run writes its
    results. A BaseException (as KeyboardInterrupt is), so a trial's own error handling does not swallow it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextlib.contextmanager
def signals_as_interrupts() -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM raise :class:`Interrupted` (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise Interrupted(signum)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


@dataclass(frozen=True)
class LoopResult:
    n_asked: int
    n_failed: int
    wall_s: float
    interrupted: int | None = None  # the signal that stopped the loop


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
    interrupted: int | None = None
    trial: optuna.Trial | None = None
    bar = tqdm(total=n_total, desc=f"search[{search.sampler_name}]", unit="trial", disable=not search.progress)
    try:
        with signals_as_interrupts():
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
                trial = None
                bar.update(1)
                bar.set_postfix(failed=failed)
    except Interrupted as sig:
        interrupted = sig.signum
        log.warning("%s: stopping after %d trials; writing the results of the finished ones", sig, asked)
        if trial is not None and _running(study, trial):
            failed += 1
            trial.set_user_attr("error", f"interrupted by {sig}")
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
    finally:
        bar.close()
    return LoopResult(n_asked=asked, n_failed=failed, wall_s=time.monotonic() - start, interrupted=interrupted)


def _running(study: optuna.Study, trial: optuna.Trial) -> bool:
    """Whether the trial was not told yet (a signal can arrive between tell and the end of the step)."""
    return study._storage.get_trial(trial._trial_id).state == optuna.trial.TrialState.RUNNING

