"""The search application: samplers, Pareto fronts, storage/resume, failures and the run directory."""

from __future__ import annotations

import configparser
import csv
import itertools
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import optuna
import pytest
import yaml

from dse import evaluate as evaluate_cli
from dse.app import run_search
from dse.config import CONF_DIR, Config, ConfigError
from dse.hardware import layer_name
from dse.objectives import assess, merged_constraints
from dse.pareto import non_dominated
from dse.results import study_table
from dse.storage import make_storage
from dse.systems import make_system
from dse.systems.systolic import SystolicSystem
from tests import brute
from tests.conftest import SMALL_SPACE

ROOT = Path(__file__).resolve().parent.parent
RUN_FILES = ("trials.csv", "pareto.csv", "pareto.png", "hypervolume.png", "summary.json", "designs")


#: the samplers that propose trials (exhaustive enumerates instead: tests/test_exhaustive.py)
SAMPLERS = sorted(p.stem for p in (CONF_DIR / "search" / "sampler").glob("*.yaml") if p.stem != "exhaustive")
#: smaller start-up phases for a 14-trial study, applied to the samplers that have these options
SMALL_OPTIONS = {"population_size": 8, "n_startup_trials": 5}


def small_cfg(make_cfg: Callable[..., Config], sampler: str, n_trials: int, *extra: str) -> Config:
    options = yaml.safe_load((CONF_DIR / "search" / "sampler" / f"{sampler}.yaml").read_text())
    small = [f"search.sampler.{k}={v}" for k, v in SMALL_OPTIONS.items() if k in options]
    return make_cfg([f"search/sampler={sampler}", f"search.n_trials={n_trials}", "search.progress=false", *small,
                     "system.constraints.area_mm2.max=4", *extra], system__space=SMALL_SPACE)


def brute_force_front(cfg: Config) -> set[tuple[float, ...]]:
    system = make_system(cfg)
    keys = list(SMALL_SPACE)
    combos = list(itertools.product(*(SMALL_SPACE[k]["choices"] for k in keys)))
    points = {**cfg.system.hw, **{k: np.array([c[i] for c in combos]) for i, k in enumerate(keys)}}
    results = assess(system.evaluate(points), cfg.system.objectives,
                     merged_constraints(system.intrinsic_constraints, cfg.system.constraints))
    feasible = np.array([r.values for r in results if r.feasible])
    assert 0 < len(feasible) < len(combos), "the area bound should cut the space"
    mask = brute.front_mask(feasible.tolist(), list(cfg.system.objectives.values()))  # independent of dse.pareto
    return {tuple(v) for v, keep in zip(feasible, mask, strict=True) if keep}


def load_study(cfg: Config, run_dir: Path) -> optuna.Study:
    return optuna.load_study(study_name=cfg.search.study_name, storage=make_storage(cfg.search, run_dir))


def test_grid_front_equals_brute_force(make_cfg: Callable[..., Config], tmp_path: Path) -> None:
    cfg = small_cfg(make_cfg, "grid", 1000)
    summary = run_search(cfg, tmp_path)
    assert summary["n_trials"] == 48  # 2 x 2 x 3 x 2 x 2 grid, exhausted, then the loop stops
    study = load_study(cfg, tmp_path)
    table = study_table(study, list(cfg.system.objectives), list(cfg.system.objectives.values()))
    assert {tuple(t.values) for t in table.pareto} == brute_force_front(cfg)


def test_every_sampler_has_a_test() -> None:
    assert {"nsga2", "nsga3", "tpe", "random", "gp", "qmc", "grid"} <= set(SAMPLERS)


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_every_sampler_runs_without_failures_to_a_non_dominated_front(make_cfg: Callable[..., Config],
                                                                      tmp_path: Path, sampler: str) -> None:
    cfg = small_cfg(make_cfg, sampler, 14)
    summary = run_search(cfg, tmp_path)
    assert summary["n_failed"] == 0, f"{sampler}: failed trials"
    assert summary["n_trials"] == 14 and summary["sampler"] == sampler
    study = load_study(cfg, tmp_path)
    directions = list(cfg.system.objectives.values())
    table = study_table(study, list(cfg.system.objectives), directions)
    front = table.values(table.pareto)
    assert summary["pareto_size"] == len(front) > 0
    assert non_dominated(front, directions).all()
    everything = table.values(table.feasible)
    for point in front:  # no feasible trial of the study dominates a front member
        sign = np.where(np.array(directions) == "minimize", 1.0, -1.0)
        dominated = np.all(everything * sign <= point * sign, axis=1) & np.any(everything * sign < point * sign,
                                                                               axis=1)
        assert not dominated.any()
    # and the Optuna view agrees (best_trials honours set_constraint)
    # (a repeated design is one Pareto design listed once, its repeats among its hits)
    assert {t.number for t in study.best_trials} == {n for hits in table.hits.values() for n in hits}


def test_resume_adds_trials_to_the_same_study(make_cfg: Callable[..., Config], tmp_path: Path) -> None:
    journal = tmp_path / "shared.journal"
    first = make_cfg(["search.n_trials=7", "search.progress=false", f"search.storage={journal}"])
    run_search(first, tmp_path / "a")
    with pytest.raises(ConfigError, match="search.resume"):
        run_search(first, tmp_path / "b")
    again = make_cfg(["search.n_trials=12", "search.progress=false", f"search.storage={journal}",
                      "search.resume=true"])  # n_trials is the study's total: the resume runs the 5 missing
    summary = run_search(again, tmp_path / "c")
    assert summary["n_trials"] == 12 and summary["this_session"]["asked"] == 5
    assert len(optuna.load_study(study_name="tide", storage=make_storage(again.search, tmp_path)).trials) == 12
    missing = make_cfg(["search.progress=false", f"search.storage={journal}", "search.resume=true",
                        "search.study_name=other"])
    with pytest.raises(ConfigError, match="not found"):
        run_search(missing, tmp_path / "d")



@pytest.mark.parametrize(("overrides", "named"), [
    (["system=tender"], r"system\.family: 'systolic' -> 'outlier_array'"),
    (["tech=7nm", "model=llama2_70b"], r"model\.name.*tech\.name: '45nm' -> '7nm'"),
    (["workload.batch=4"], r"workload\.batch: 1 -> 4"),
    (["system.space.rows.high=64"], r"system\.space\.rows\.high"),
    (["system.constraints.area_mm2.max=5"], r"constraints\.area_mm2\.max"),
])
def test_resume_refuses_another_problem(make_cfg: Callable[..., Config], tmp_path: Path, overrides: list[str],
                                        named: str) -> None:
    journal = tmp_path / "shared.journal"
    run_search(make_cfg(["search.n_trials=3", "search.progress=false", f"search.storage={journal}"]), tmp_path / "a")
    before = journal.read_bytes()
    other = make_cfg(["search.n_trials=3", "search.progress=false", f"search.storage={journal}", "search.resume=true",
                      *overrides])
    with pytest.raises(ConfigError, match=named):
        run_search(other, tmp_path / "b")
    assert journal.read_bytes() == before, "a refused resume must not write to the study"


def test_rdb_storage_url(make_cfg: Callable[..., Config], tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    summary = run_search(make_cfg(["search.n_trials=4", "search.progress=false", f"search.storage={url}"]),
                         tmp_path / "run")
    assert summary["n_trials"] == 4
    assert len(optuna.load_study(study_name="tide", storage=url).trials) == 4


def test_crashing_trials_are_recorded_and_the_study_goes_on(make_cfg: Callable[..., Config], tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"n": 0}
    original = SystolicSystem.evaluate

    def flaky(self: SystolicSystem, points: dict, measured: object = None) -> object:
        calls["n"] += 1
        if calls["n"] % 3 == 0:
            raise RuntimeError("injected model failure")
        return original(self, points, measured)

    monkeypatch.setattr(SystolicSystem, "evaluate", flaky)
    summary = run_search(make_cfg(["search.n_trials=12", "search.progress=false"]), tmp_path)
    assert summary["n_trials"] == 12
    assert summary["n_failed"] == 4
    rows = list(csv.DictReader((tmp_path / "trials.csv").open()))
    failed = [r for r in rows if r["state"] == "FAIL"]
    assert len(failed) == 4 and all("injected model failure" in r["error"] for r in failed)


def test_invalid_design_points_are_infeasible_not_crashes(make_cfg: Callable[..., Config],
                                                          tmp_path: Path) -> None:
    space = {"rows": {"type": "int", "low": 0, "high": 3}, "cols": {"type": "categorical", "choices": [8, 16]}}
    cfg = make_cfg(["search/sampler=grid", "search.progress=false"], system__space=space)
    summary = run_search(cfg, tmp_path)
    assert summary["n_trials"] == 8 and summary["n_failed"] == 0
    assert summary["n_feasible"] == 6  # rows = 0 is invalid for both column counts
    rows = list(csv.DictReader((tmp_path / "trials.csv").open()))
    bad = [r for r in rows if r["param.rows"] == "0"]
    assert all(r["invalid_reason"] == "rows < 1" and r["feasible"] == "False" for r in bad)


def test_timeout_returns_a_partial_front(make_cfg: Callable[..., Config], tmp_path: Path) -> None:
    summary = run_search(make_cfg(["search.n_trials=1000000", "search.timeout=1", "search.progress=false"]),
                         tmp_path)
    assert 0 < summary["n_trials"] < 1000000
    assert (tmp_path / "pareto.csv").exists()


def test_run_directory_and_exported_designs_reproduce(make_cfg: Callable[..., Config], tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    cfg = make_cfg(["search.n_trials=40", "search.progress=false", "tech=7nm", "model=llama2_7b"])
    summary = run_search(cfg, tmp_path)
    for name in RUN_FILES:
        assert (tmp_path / name).exists(), name
    data = json.loads((tmp_path / "summary.json").read_text())
    for key in ("n_trials", "n_feasible", "pareto_size", "hypervolume", "box", "wall_time_s"):
        assert key in data
    designs = sorted((tmp_path / "designs").glob("*.yaml"))
    assert len(designs) == summary["pareto_size"] > 0
    assert len(list(csv.DictReader((tmp_path / "pareto.csv").open()))) == summary["pareto_size"]
    for path in designs:
        assert evaluate_cli.main([str(path)]) == 0
    assert "reproduced exactly" in capsys.readouterr().out
    check_scalesim_files(designs[0], make_system(cfg))


def check_scalesim_files(design: Path, system: SystolicSystem) -> None:
    """The exported SCALE-Sim 3 inputs, parsed: the array, buffers and dataflow of the design, and one
    topology row (M, N, K in SCALE-Sim's order) per GEMM of the workload."""
    hw = yaml.safe_load(design.read_text())["system"]["hw"]
    cp = configparser.ConfigParser()
    cp.optionxform = str  # type: ignore[assignment,method-assign]
    tools = design.with_suffix("")  # designs/<stem>/: the next tools' inputs
    cp.read(tools / "array.scalesim.cfg")
    arch = cp["architecture_presets"]
    assert (int(arch["ArrayHeight"]), int(arch["ArrayWidth"])) == (hw["rows"], hw["cols"])
    assert (int(arch["IfmapSramSzkB"]), int(arch["FilterSramSzkB"]), int(arch["OfmapSramSzkB"])) == (
        hw["a_buf_kib"], hw["b_buf_kib"], hw["c_buf_kib"])
    assert arch["Dataflow"] == hw["dataflow"]
    # the design's DRAM bandwidth in operand words per cycle, not a constant
    assert int(arch["Bandwidth"]) == max(1, int(hw["dram_bw_gbps"] / hw["clock_ghz"] / (hw["bits"] / 8)))
    with (tools / "array.topology.csv").open() as fh:
        rows = list(csv.reader(fh))
    assert rows[0][:4] == ["Layer", "M", "N", "K"]
    ops = system.ops
    assert [r[0] for r in rows[1:]] == [layer_name(n) for n in ops.names]
    with (tools / "array.layout.csv").open() as fh:  # SCALE-Sim 3.0.0 always opens one
        layout = list(csv.reader(fh))
    assert [r[0] for r in layout[1:]] == [r[0] for r in rows[1:]] and len(layout[0]) == 22
    for r, m, n, k in zip(rows[1:], ops.M, ops.N, ops.K, strict=True):
        assert (int(r[1]), int(r[2]), int(r[3])) == (round(m), round(n), round(k))


def test_exported_tender_designs_keep_their_mechanism(make_cfg: Callable[..., Config], tmp_path: Path) -> None:
    """A design of a system with mechanism parameters (Tender's decomposition) re-evaluates exactly."""
    cfg = make_cfg(["system=tender", "search.n_trials=15", "search.progress=false"])
    run_search(cfg, tmp_path)
    designs = sorted((tmp_path / "designs").glob("*.yaml"))
    assert designs
    for path in designs:
        assert evaluate_cli.main([str(path)]) == 0
        system = yaml.safe_load(path.read_text())["system"]  # the memory part, buildable, with its source
        part = system["parts"]["memory"]
        assert system["hw"]["hbm_bw_gbps"] == part["entry"]["bandwidth_gbps"]["value"]
        assert part["entry"]["bandwidth_gbps"]["source"] and "memory" not in system["hw"]


@pytest.mark.slow
def test_readme_search_command_smoke(tmp_path: Path) -> None:
    """The README's search command (`python -m dse`, here with few trials)."""
    proc = subprocess.run([sys.executable, "-m", "dse", "search.n_trials=12", "accuracy.windows=1",
                           "accuracy.seq_len=128", f"hydra.run.dir={tmp_path}"],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for name in RUN_FILES:
        assert (tmp_path / name).exists(), name


@pytest.mark.slow
def test_multirun_jobs_sharing_a_storage_get_a_study_each(tmp_path: Path) -> None:
    journal = tmp_path / "shared.journal"
    proc = subprocess.run([sys.executable, "-m", "dse", "--multirun", "tech=45nm,7nm", "system=systolic",
                           "model=smollm2_135m", "accuracy.objective=none", "search.n_trials=3",
                           "search.progress=false", f"search.storage={journal}", f"hydra.sweep.dir={tmp_path / 'm'}"],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    storage = make_storage(optuna_search_config(journal), tmp_path)
    names = sorted(s.study_name for s in optuna.get_all_study_summaries(storage))
    assert names == ["tide-0", "tide-1"]


def optuna_search_config(journal: Path) -> object:
    from dse.config import SearchConfig

    return SearchConfig(sampler={"_target_": "optuna.samplers.RandomSampler"}, storage=str(journal))
