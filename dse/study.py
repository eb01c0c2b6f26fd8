"""The Optuna side: sampler and storage from config, and the ask/tell loop.

Every trial records its parameters, the full metric set (user attributes), its constraint values
(``trial.set_constraint``) and, for invalid points, the reason. A trial whose evaluation raises is
told as FAIL with the error text and the loop goes on.
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from tqdm import tqdm

from dse.config import Config, ConfigError, SearchConfig, plain
from dse.coordination import (
    LOST,
    WAIT,
    Heartbeat,
    Ledger,
    Retry,
    StorageLost,
    ask_lock_for,
    claim,
    storage_errors,
    storage_lost,
)
from dse.objectives import Observed, Problem, assess, attributes
from dse.results import design_key
from dse.samplers import exhausted, finite_size, make_sampler
from dse.space import suggest
from dse.stopping import Interrupted, StopRequest
from dse.storage import claim_run_dir, make_storage, record_run_dir, storage_target, sync_storage
from dse.systems import System

log = logging.getLogger(__name__)

WAIT_POLL_S = 0.5  # a worker whose study has no room left looks again this often while others' trials run

PROBLEM_ATTR = "tide_problem"


def problem_record(cfg: Config, problem: Problem) -> dict[str, Any]:
    """What a study is: the cost model's whole config (the system's family, hardware, space and mechanism; the
    model, technology table and workload), the objectives and constraints, and what each provider's metrics mean
    (the accuracy provider: the measurement set-up that makes its keys and the spec fields the system reads from
    ``quant.*`` / ``kv.*``). Derived, not listed: a field added to any of them later is covered. Stored with the
    study; a resume must match it."""
    identities: dict[str, Any] = {}
    for provider in problem.providers:
        identities.update(provider.identity())
    return json.loads(json.dumps({
        "system": {k: v for k, v in plain(cfg.system).items() if k not in ("description", "objectives",
                                                                             "constraints")},
        "model": plain(cfg.model),
        "tech": plain(cfg.tech),
        "workload": plain(cfg.workload),
        "objectives": dict(problem.objectives),
        "constraints": {k: {"max": b.max, "min": b.min} for k, b in problem.constraints.items()},
        "accuracy": identities.get("accuracy"),
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


def worker_seed(search: SearchConfig, worker: int = 0) -> int:
    """The sampler seed of worker ``worker`` of job ``search.job``: workers of one study must not draw the same
    proposals; worker 0 of job 0 keeps ``search.seed`` (a one-process run is as before)."""
    return search.seed + search.job * search.workers + worker


def open_study(cfg: Config, run_dir: Path, problem: Problem,
               storage: optuna.storages.BaseStorage | None = None) -> optuna.Study:
    """Create, resume (``search.resume``) or join (``search.join``) the study, after checking that the
    storage's study is this problem; claims the run directory for it."""
    sampler = make_sampler(cfg.search.sampler, worker_seed(cfg.search), cfg.system.space)  # bad options: first
    target = storage_target(cfg.search, run_dir)
    claim_run_dir(run_dir, target, cfg.search.study_name)
    storage = storage if storage is not None else make_storage(cfg.search, run_dir)
    mode = "join" if cfg.search.join else "resume" if cfg.search.resume else "create"
    study = attach(cfg, storage, problem, sampler, mode)
    record_run_dir(run_dir, target, cfg.search.study_name)
    return study


def attach(cfg: Config, storage: optuna.storages.BaseStorage, problem: Problem,
           sampler: optuna.samplers.BaseSampler, mode: str) -> optuna.Study:
    """``mode``: create (the name must be new), resume (it must exist), join (either), worker (it must
    exist; a worker process of this run, which writes nothing to the study itself)."""
    directions = list(problem.objectives.values())
    name = cfg.search.study_name
    existing = {s.study_name for s in optuna.get_all_study_summaries(storage)}
    if mode in ("resume", "worker") and name not in existing:
        raise ConfigError(f"search.resume: study {name!r} not found in the storage; studies there: "
                          f"{sorted(existing) or 'none'}")
    if mode == "create" and name in existing:
        raise ConfigError(f"search.study_name: study {name!r} already exists in the storage; "
                          "set search.resume=true to continue it (search.join=true to add workers to it) "
                          "or choose another name")
    if mode in ("resume", "worker"):  # loading writes nothing: every check below runs before the study is touched
        study = optuna.load_study(study_name=name, storage=storage, sampler=sampler)
    else:  # join: two jobs starting together both get the one study
        study = optuna.create_study(study_name=name, storage=storage, sampler=sampler, directions=directions,
                                    load_if_exists=mode == "join")
    if list(study.directions) != [optuna.study.StudyDirection[d.upper()] for d in directions]:
        raise ConfigError(f"system.objectives: study {name!r} in the storage was created with other objectives "
                          f"(directions {[d.name.lower() for d in study.directions]}, this run: {directions})")
    if study.metric_names is not None and list(study.metric_names) != list(problem.objectives):
        raise ConfigError(f"system.objectives: study {name!r} optimises {study.metric_names}, "
                          f"this run asks for {list(problem.objectives)}")
    record = problem_record(cfg, problem)
    if mode == "create" or (mode == "join" and PROBLEM_ATTR not in study.user_attrs):
        study.set_user_attr(PROBLEM_ATTR, record)
    else:
        check_same_problem(study, record)
    if mode != "worker":
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
    interrupted: int | None = None  # the signal that stopped the loop
    stopped_at: float | None = None  # when it came (time.monotonic()): the results are written within a budget of it
    measured: int = 0  # accuracy keys measured by worker processes (search.workers > 1; the parent counts its own)


@dataclass(frozen=True)
class Recorded:
    """What a finished trial recorded, reused when a sampler proposes the same design again."""

    number: int
    values: tuple[float, ...]
    constraints: dict[str, float]
    attrs: dict[str, Any]


#: what belongs to the trial, not to its design: not copied to a later trial of the same design
NOT_REUSED = ("worker", "repeat_of", "retry_of", "error", LOST)


class Memo:
    """Finished designs of the study by their knob values (see :func:`dse.report.design_key`)."""

    def __init__(self, study: optuna.Study | None = None) -> None:
        self._done: dict[tuple[tuple[str, str], ...], Recorded] = {}
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)) if study else []:
            self.add(t.params, Recorded(t.number, tuple(t.values), dict(t.constraints),
                                        {k: v for k, v in t.user_attrs.items() if k not in NOT_REUSED}))

    def add(self, params: dict[str, Any], recorded: Recorded) -> None:
        self._done.setdefault(design_key(params), recorded)

    def get(self, params: dict[str, Any]) -> Recorded | None:
        return self._done.get(design_key(params))


def record_result(trial: optuna.Trial, constraints: dict[str, float], attrs: dict[str, Any]) -> None:
    for key, value in constraints.items():
        trial.set_constraint(key, value)
    for key, value in attrs.items():
        trial.set_user_attr(key, value)


def run_trial(trial: optuna.Trial, cfg: Config, system: System, problem: Problem,
              stop: StopRequest | None = None, memo: Memo | None = None) -> tuple[float, ...]:
    """Evaluate one trial's design point; sets constraints and attributes on the trial. ``stop``: a signal
    during the evaluation itself abandons the trial (:class:`Interrupted`). A design the study has already
    evaluated (``memo``) is not evaluated again: its recorded result is copied, with ``repeat_of``."""
    params = suggest(trial, cfg.system.space)
    seen = memo.get(params) if memo is not None else None
    if seen is not None:
        record_result(trial, seen.constraints, {**seen.attrs, "repeat_of": seen.number})
        return seen.values
    point = system.complete(params)
    # Accuracy first (valid points only), then the cost model once with what the measurement observed
    # (e.g. InfiniGen's selected-token counts).
    with stop.evaluating() if stop is not None else contextlib.nullcontext():
        observed = problem.extra(point) if problem.providers and not system.invalid(point)[0] else Observed()
        evaluation = system.evaluate(point, observed.selection)
    (result,) = assess(evaluation, problem.objectives, problem.constraints, observed.metrics)
    attrs = attributes(result)
    record_result(trial, result.constraints, attrs)
    if memo is not None:
        memo.add(params, Recorded(trial.number, result.values, result.constraints, attrs))
    return result.values


def optimise(study: optuna.Study, cfg: Config, system: System, problem: Problem, target: str | None = None,
             progress: bool | None = None) -> LoopResult:
    """This worker's ask/tell loop on the study in ``target`` (a journal path or a database URL, which other
    workers may share; None: an in-memory study of this process). It runs until the study holds
    ``search.n_trials`` counted trials (see :mod:`dse.coordination`), the sampler is exhausted,
    ``search.timeout`` passes or a signal arrives; a trial that raises is told FAIL and the loop goes on. A
    storage that stops answering raises :class:`~dse.coordination.StorageLost`."""
    search = cfg.search
    n_total = study_size(search, study)
    start = time.monotonic()
    failed = asked = 0
    stop = StopRequest()
    memo = Memo(study)
    lock = ask_lock_for(target, search.study_name)
    retry = Retry(search.max_retry)
    ledger = Ledger()
    claimed: tuple[optuna.Trial, Heartbeat] | None = None
    done = ledger.look(study.get_trials(deepcopy=False))[0]
    bar = tqdm(total=n_total, initial=min(done, n_total), desc=f"search[{search.sampler_name}]", unit="trial",
               disable=not (search.progress if progress is None else progress))
    try:
        with stop.installed():
            while stop.signum is None:
                if search.timeout is not None and time.monotonic() - start >= search.timeout:
                    log.info("timeout of %.1f s reached after %d trials", search.timeout, asked)
                    break
                got = claim(study, lock, retry, n_total, lambda: exhausted(study.sampler, study), ledger)
                if got is None:
                    break
                if got == WAIT:  # the others' last trials run; stay until they end (or die and are retried)
                    time.sleep(WAIT_POLL_S)
                    continue
                claimed = got
                trial, beat = claimed
                asked += 1
                try:
                    failed += _evaluate_and_tell(study, trial, cfg, system, problem, stop, memo)
                except optuna.exceptions.UpdateFinishedTrialError:  # this worker was presumed dead: it was not
                    log.warning("trial %d was failed by another worker (no heartbeat from here for "
                                "search.grace_period); its retry stands, this result is dropped", trial.number)
                beat.stop()
                claimed = None
                bar.update(1)
                bar.set_postfix(failed=failed)
    except Interrupted as sig:  # raised during an evaluation, never inside a storage operation
        if claimed is not None and _running(study, claimed[0]):
            failed += 1
            claimed[0].set_user_attr("error", f"interrupted by {sig}")
            claimed[0].set_user_attr(LOST, True)  # not the design's fault: a later session runs another trial
            study.tell(claimed[0], state=optuna.trial.TrialState.FAIL)
    except storage_errors() as exc:
        raise storage_lost(target or "the in-memory storage", exc) from exc
    finally:
        if claimed is not None:
            claimed[1].stop()
        lock.close()
        bar.close()
        with contextlib.suppress(*storage_errors(), StorageLost, OSError):
            sync_storage(study)
    interrupted = stop.signum
    if interrupted is not None:
        log.warning("%s: stopped after %d trials; writing the results of the finished ones",
                    signal.Signals(interrupted).name, asked)
    return LoopResult(n_asked=asked, n_failed=failed, wall_s=time.monotonic() - start, interrupted=interrupted,
                      stopped_at=stop.at)


def _evaluate_and_tell(study: optuna.Study, trial: optuna.Trial, cfg: Config, system: System, problem: Problem,
                       stop: StopRequest, memo: Memo) -> bool:
    """Evaluate and tell the trial; True when its evaluation raised (told FAIL with the error)."""
    try:
        values = run_trial(trial, cfg, system, problem, stop, memo)
    except (*storage_errors(), StorageLost, optuna.exceptions.UpdateFinishedTrialError):
        raise
    except Exception as exc:  # a crashed trial never kills the study
        trial.set_user_attr("error", f"{type(exc).__name__}: {exc}")
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        log.warning("trial %d failed: %s: %s", trial.number, type(exc).__name__, exc)
        return True
    study.tell(trial, list(values))
    return False


def study_size(search: SearchConfig, study: optuna.Study) -> int:
    """The trials the study is to hold: ``search.n_trials``, or fewer when the sampler's space is smaller."""
    size = finite_size(study.sampler)
    return search.n_trials if size is None else min(search.n_trials, size)


def _running(study: optuna.Study, trial: optuna.Trial) -> bool:
    """Whether the trial was not told yet (a signal can arrive between tell and the end of the step)."""
    return study._storage.get_trial(trial._trial_id).state == optuna.trial.TrialState.RUNNING
