"""The search run: config -> system -> Optuna study -> run-directory artefacts."""

from __future__ import annotations

import logging
import signal
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from dse import __version__
from dse.config import Config, to_config
from dse.coupling import problem_for
from dse.export import export_designs
from dse.plots import save_pareto_plots
from dse.report import study_table, summarise, write_summary, write_tables
from dse.study import open_study, optimise
from dse.systems import make_system

log = logging.getLogger(__name__)


def run_search(raw: DictConfig | Config, run_dir: Path) -> dict[str, Any]:
    """Validate, search, and write trials.csv, pareto.csv, pareto.png, designs/ and summary.json."""
    cfg = to_config(raw)
    system = make_system(cfg)  # all config checks happen before the study is touched
    problem, accuracy = problem_for(cfg, system)
    if accuracy is not None:  # loads the model (unless cached): a model that cannot load stops the run here
        log.info("unquantised proxy-model perplexity %.4f", accuracy.baseline_ppl)
    run_dir.mkdir(parents=True, exist_ok=True)
    study = open_study(cfg, run_dir, problem)
    result = optimise(study, cfg, system, problem)

    objectives = list(problem.objectives)
    table = study_table(study, objectives, list(problem.objectives.values()))
    write_tables(table, run_dir)
    proxy = f", accuracy on {accuracy.oracle.source.path.name}" if accuracy is not None else ""
    title = (f"{cfg.system.name} on {cfg.model.name} ({cfg.tech.name}){proxy}, "
             f"{len(table.feasible)} feasible designs")
    save_pareto_plots(table, problem.descriptions, title, run_dir, cfg.output.plot_formats)
    designs = (export_designs(cfg, system, problem, table.pareto, run_dir, cfg.output.max_exported_designs)
               if cfg.output.export_designs else [])
    summary = summarise(table, result.wall_s, {
        "this_session": {"asked": result.n_asked, "failed": result.n_failed},
        "interrupted": signal.Signals(result.interrupted).name if result.interrupted else None,
        "study_name": cfg.search.study_name,
        "sampler": cfg.search.sampler_name,
        "seed": cfg.search.seed,
        "system": cfg.system.name,
        "model": cfg.model.name,
        "tech": cfg.tech.name,
        "workload": {"batch": cfg.workload.batch, "prompt_len": cfg.workload.prompt_len,
                     "gen_len": cfg.workload.gen_len},
        "constraints": {k: {"max": b.max, "min": b.min} for k, b in problem.constraints.items()},
        "cost_model_target": cfg.model.name,
        "accuracy": accuracy.describe() if accuracy is not None else None,
        "exported_designs": len(designs),
        "tide_version": __version__,
    })
    write_summary(summary, run_dir)
    log.info("%d trials (%d feasible, %d failed), Pareto set %d, hypervolume %.4f -> %s", summary["n_trials"],
             summary["n_feasible"], summary["n_failed"], summary["pareto_size"], summary["hypervolume"], run_dir)
    return summary
