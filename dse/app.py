"""The search run: config -> system -> Optuna study -> run-directory artefacts."""

from __future__ import annotations

import json
import logging
import shutil
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from omegaconf import DictConfig

from dse import __version__, environment
from dse.accuracy_store import store_for
from dse.checks import check_search
from dse.config import Config, to_config
from dse.coupling import AccuracyProvider, problem_for
from dse.export import export_designs
from dse.objectives import Problem
from dse.pareto import Box
from dse.plots import save_history_plot, save_pareto_plots
from dse.results import (
    StudyTable,
    history,
    indicators,
    load_reference_front,
    study_table,
    summarise,
    write_summary,
    write_tables,
)
from dse.run_config import write_config
from dse.stopping import Interrupted, StopRequest
from dse.storage import cannot_write, claim_run_dir, make_storage, record_run_dir, storage_target
from dse.study import LoopResult, open_study, optimise, problem_record
from dse.systems import System
from dse.workers import run_workers

log = logging.getLogger(__name__)


#: after a signal, the results are written within a few seconds of it (a scheduler's grace period is often 30 s,
#: some give 10): trials.csv, pareto.csv and summary.json always; each further part (plots, designs, report) only
#: if it can start within this many seconds of the signal; what is left out is listed in summary.json's
#: ``incomplete`` (a resume, or ``tide report`` for the report, writes it). A second signal while writing cuts the
#: part being written (files are replaced whole: never a cut one).
SIGNAL_BUDGET_S = 2.5


def write_run_report(run_dir: Path) -> None:
    """report.html of this run. A report that cannot be built is logged, not raised: the search's results are
    written and stay usable."""
    from dse.report.html import write_report
    from dse.report.runs import ReportError

    try:
        write_report([run_dir], run_dir / "report.html")
    except ReportError as exc:
        log.warning("report.html not written: %s", exc)
    except Exception as exc:  # the search's own results are written: a report bug must not turn the run into a failure
        log.warning("report.html not written: %s: %s (python -m dse.report %s --debug shows the traceback)",
                    type(exc).__name__, exc, run_dir)


@dataclass(frozen=True)
class Part:
    """One part of the results beyond the tables: what writes it, the files a skipped one leaves stale, and whether
    it is written at all once a signal has come (the report is not: it takes longest)."""

    name: str
    write: Callable[[], object]
    stale: tuple[str, ...] = ()
    after_signal: bool = True


def write_parts(parts: Sequence[Part], stop: StopRequest, signalled_at: float | None, run_dir: Path) -> list[str]:
    """Write each part unless a signal came more than :data:`SIGNAL_BUDGET_S` ago (or at all, for a part not
    ``after_signal``); a signal during a part cuts it. The names of the parts not written (their stale files
    removed: a page or a plot of an earlier state of the study would mislead)."""
    skipped = []
    for part in parts:
        at = signalled_at if signalled_at is not None else stop.at
        if at is not None and (not part.after_signal or time.monotonic() - at > SIGNAL_BUDGET_S):
            skipped.append(part)
            continue
        try:
            with stop.evaluating():
                part.write()
        except Interrupted:  # cut; the next part starts if the budget allows (stop.at keeps the first signal)
            skipped.append(part)
            stop.signum = None
    for part in skipped:
        for pattern in part.stale:
            for path in run_dir.glob(pattern):
                shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    return [p.name for p in skipped]


def write_results(cfg: Config, system: System, problem: Problem, accuracy: AccuracyProvider | None,
                  study: optuna.Study, run_dir: Path, target: str, result: LoopResult, box: Box,
                  reference_front: np.ndarray | None, exhaustive: dict[str, Any] | None) -> dict[str, Any]:
    """trials.csv, pareto.csv, summary.json, then the plots, designs/, run.json and report.html of a finished
    loop; after a signal (in the loop or while writing), within a budget of it (:data:`SIGNAL_BUDGET_S`)."""
    stop = StopRequest()
    with stop.installed():
        table = study_table(study, list(problem.objectives), list(problem.objectives.values()))
        write_tables(table, run_dir)
        quality = indicators(table, box, reference_front, cfg.search.reference_front)
        if quality["pareto_outside_box"]:  # normal for a few; all of them means the box does not fit this problem
            level = logging.WARNING if quality["hypervolume"] == 0 else logging.INFO
            log.log(level, "%d of %d Pareto design(s) lie beyond the hypervolume box's worst values and add nothing "
                    "to the hypervolume%s (box: summary.json)", quality["pareto_outside_box"], len(table.pareto),
                    "; widen system.reference / accuracy.reference for this model" if level == logging.WARNING
                    else "")
        designs: list[Path] = []
        parts = [Part("pareto plots", lambda: save_pareto_plots(table, problem.descriptions, _title(
            cfg, accuracy, table, exhaustive), run_dir, cfg.output.plot_formats),
                      tuple(f"pareto.{fmt}" for fmt in cfg.output.plot_formats))]
        if exhaustive is None:  # an enumeration has no order of discovery
            parts.append(Part("hypervolume plot", lambda: _history_plot(cfg, table, box, quality, run_dir),
                              tuple(f"hypervolume.{fmt}" for fmt in cfg.output.plot_formats)))
        if cfg.output.export_designs:
            parts.append(Part("designs/", lambda: designs.extend(export_designs(
                cfg, system, problem, table, run_dir, cfg.output.max_exported_designs)), ("designs",)))
        if cfg.output.report:
            parts.append(Part("report.html", lambda: write_run_report(run_dir), ("report.html",), after_signal=False))
        summary = summarise(table, result.wall_s, quality, {
            "this_session": {"asked": result.n_asked, "failed": result.n_failed, "workers": cfg.search.workers},
            "interrupted": signal.Signals(result.interrupted).name if result.interrupted else None,
            "incomplete": [p.name for p in parts],  # until they are written: a kill leaves an honest summary
            "study_name": cfg.search.study_name,
            "sampler": cfg.search.sampler_name,
            "seed": cfg.search.seed,
            "exhaustive": exhaustive,
            "distinct_pareto_designs": len(table.pareto),
            "repeated_trials": sum(1 for t in table.trials if "repeat_of" in t.user_attrs),
            "system": cfg.system.name,
            "model": cfg.model.name,
            "tech": cfg.tech.name,
            "workload": {"batch": cfg.workload.batch, "prompt_len": cfg.workload.prompt_len,
                         "gen_len": cfg.workload.gen_len},
            "constraints": {k: {"max": b.max, "min": b.min} for k, b in problem.constraints.items()},
            "cost_model_target": cfg.model.name,
            "accuracy": accuracy.describe(measured_elsewhere=result.measured) if accuracy is not None else None,
            "exported_designs": 0,
            "tide_version": __version__,
        })
        write_summary(summary, run_dir)
        skipped = write_parts(parts, stop, result.stopped_at, run_dir)
        summary.update(incomplete=skipped, exported_designs=len(designs))
        if stop.first is not None and summary["interrupted"] is None:  # a signal while the results were written
            summary["interrupted"] = signal.Signals(stop.first).name
        write_summary(summary, run_dir)
        record_run_dir(run_dir, target, cfg.search.study_name, environment=environment.describe(),
                       accuracy_keys=(accuracy.keys_of((t.params for t in table.complete), cfg.system.space)
                                      if accuracy is not None else []))
    if skipped:
        log.warning("stopped by a signal: %s not written (summary.json lists them under 'incomplete'); "
                    "search.resume=true writes them (tide report %s --out %s for the report alone)",
                    ", ".join(skipped), run_dir, run_dir / "report.html")
    return summary


def _title(cfg: Config, accuracy: AccuracyProvider | None, table: StudyTable, exhaustive: dict[str, Any] | None
           ) -> str:
    proxy = f", accuracy on {accuracy.oracle.source.name}" if accuracy is not None else ""
    title = (f"{cfg.system.name} on {cfg.model.name} ({cfg.tech.name}){proxy}, "
             f"{len(table.feasible)} feasible designs")
    if exhaustive is not None and exhaustive.get("partial"):
        title += f" (partial: {exhaustive['chunks_done']} of {exhaustive['chunks_total']} chunks)"
    return title


def _history_plot(cfg: Config, table: StudyTable, box: Box, quality: dict[str, Any], run_dir: Path) -> None:
    numbers, hv = history(table, box)
    save_history_plot(numbers, hv, f"{cfg.system.name}: hypervolume of the feasible front "
                      f"({cfg.search.sampler_name}, seed {cfg.search.seed})", run_dir, cfg.output.plot_formats,
                      reference=(quality.get("reference_front") or {}).get("hypervolume"))


def run_enumeration(cfg: Config, system: System, problem: Problem, study: optuna.Study, run_dir: Path
                    ) -> tuple[optuna.Study, dict[str, Any], LoopResult]:
    """``search/sampler=exhaustive``: the exact front recorded in the study; or, stopped by a signal, the front of
    the chunks done, recorded in a study in memory (the stored study stays empty of it: a resume continues from the
    chunks persisted in the run directory and records the exact front once)."""
    from dse.exhaustive import STATE_FILE, enumerate_front, record

    sampler = study.sampler
    stop = StopRequest()
    with stop.installed():
        enumeration = enumerate_front(system, problem, cfg.system.space, chunk_points=sampler.chunk_points,
                                      workers=sampler.workers, progress=cfg.search.progress, seed=cfg.search.seed,
                                      state=run_dir / STATE_FILE, key=json.dumps(problem_record(cfg, problem)),
                                      stop=stop)
    if enumeration.partial:
        done, total = enumeration.chunks
        log.warning("%s: the enumeration stopped after %d of %d chunks; writing the front of those as a partial "
                    "front (resume with search.resume=true for the exact one)",
                    signal.Signals(enumeration.interrupted or signal.SIGINT).name, done, total)
        study = optuna.create_study(directions=list(problem.objectives.values()), sampler=sampler)
    record(study, enumeration, system, problem, cfg.system.space)
    result = LoopResult(n_asked=enumeration.counts["enumerated"], n_failed=0,
                        wall_s=enumeration.measure_s + enumeration.enumerate_s, interrupted=enumeration.interrupted,
                        stopped_at=stop.at)
    return study, enumeration.describe(), result


def run_search(raw: DictConfig | Config, run_dir: Path) -> dict[str, Any]:
    """Validate, search, and write trials.csv, pareto.csv, pareto.png, hypervolume.png, designs/,
    summary.json and report.html."""
    cfg = to_config(raw)
    run_dir = run_dir.resolve()  # worker processes and the journal path do not depend on the working directory
    system = check_search(cfg)  # all config checks happen before the study is touched
    target = storage_target(cfg.search, run_dir)
    claim_run_dir(run_dir, target, cfg.search.study_name)
    # a database that cannot open is refused before any work (a journal file is created below, when the rest
    # of the set-up has been checked)
    storage = make_storage(cfg.search, run_dir) if "://" in target else None
    problem, accuracy = problem_for(cfg, system, store_for(target, cfg.search.accuracy_lease_s))
    box = Box.of(problem.objectives, {**cfg.system.reference, **cfg.accuracy.reference})
    ref_path = cfg.search.reference_front
    reference_front = load_reference_front(Path(ref_path), list(problem.objectives)) if ref_path else None
    if accuracy is not None:  # loads the model (unless cached): a model that cannot load stops the run here
        log.info("unquantised proxy-model perplexity %.4f", accuracy.baseline_ppl)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_config(cfg, run_dir)
    study = open_study(cfg, run_dir, problem, storage or make_storage(cfg.search, run_dir))
    exhaustive: dict[str, Any] | None = None
    if cfg.search.exhaustive:
        study, exhaustive, result = run_enumeration(cfg, system, problem, study, run_dir)
    elif cfg.search.workers > 1:
        result = run_workers(cfg, run_dir, target, study)
    else:
        result = optimise(study, cfg, system, problem, target)

    try:
        summary = write_results(cfg, system, problem, accuracy, study, run_dir, target, result, box, reference_front,
                                exhaustive)
    except OSError as exc:
        raise cannot_write(exc.filename or run_dir, exc, target, "the results (tables, plots, designs, report) "
                           "are not all written") from exc
    log.info("%d trials (%d feasible, %d failed), Pareto set %d, hypervolume %.4f -> %s", summary["n_trials"],
             summary["n_feasible"], summary["n_failed"], summary["pareto_size"], summary["hypervolume"], run_dir)
    return summary
