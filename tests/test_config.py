"""Configuration: validation messages, provenance of constants, command-line failures."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from hydra.errors import ConfigCompositionException

from dse.checks import check_search
from dse.config import CONF_DIR, Config, ConfigError, TechConfig
from dse.systems import make_system
from tests.conftest import compose_raw

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("overrides", "pattern"),
    [
        (["search.n_trials=-3"], r"search\.n_trials.*>= 1"),
        (["search.sampler.population_size=1"], r"search\.sampler.*population_size"),
        (["+search.sampler.pop_size=8"], r"search\.sampler\.pop_size.*options:.*population_size"),
        (["+search.sampler.seed=3"], r"search\.sampler\.seed.*search\.seed"),
        (["system.family=bogus"], r"system\.family.*'offload', 'outlier_array', 'systolic', 'tender_infinigen'"),
        (["system.kv_method=bogus"],
         r"system\.kv_method.*'dense', 'h2o', 'h2o_online', 'infinigen', 'local', 'oracle_topk'"),
        (["system.space.dataflow.choices=[os,xs]"], r"system\.space\.dataflow\.choices.*'os', 'ws', 'is'"),
        (["search.timeout=-1"], r"search\.timeout"),
        (["search.seed=-1"], r"search\.seed: must be in \[0, 2\*\*32\)"),
        (["search.seed=4294967295", "search.workers=2"], r"search\.seed.*every worker's seed"),
        (["system.objectives.latency_s=fastest"], r"system\.objectives\.latency_s.*minimize"),
        (["+system.hw.rowz=3"], r"system\.hw\.rowz.*allowed knobs"),
        (["+system.objectives.speed=minimize"], r"system\.objectives\.speed.*allowed metrics"),
        (["workload.batch=0"], r"workload\.batch"),
        (["system.space.clock_ghz.step=-1"], r"system\.space\.clock_ghz\.step.*> 0"),
        (["system.space.memory.choices=[ddr9]"], r"system\.space\.memory\.choices.*'hbm2_2000_x1'"),
        (["+system.catalog.memory.sets.rowz=bandwidth_gbps"],
         r"system\.catalog\.memory\.entries\.\w+\.bandwidth_gbps|system\.catalog\.memory\.sets\.rowz.*allowed knobs"),
        (["system.catalog.memory.sets.dram_bw_gbps=speed"], r"system\.catalog\.memory\.entries\.\w+\.speed.*missing"),
        (["system.catalog.memory.entries.hbm2_2000_x1.bandwidth_gbps.source=''"],
         r"system\.catalog\.memory\.entries\.hbm2_2000_x1\.bandwidth_gbps\.source"),
        (["+system.reference.utilization.best=1"], r"system\.reference\.utilization\.worst.*missing"),
        (["system.hw.dataflow=rs"], r"system\.hw\.dataflow.*'os', 'ws', 'is'"),
        (["tech.dram_energy_pj_per_byte.source=''"], r"tech\.dram_energy_pj_per_byte\.source"),
        (["system.constraints.area_mm2.max=nan"], r"system\.constraints\.area_mm2\.max.*finite"),
        (["system.constraints.area_mm2.max=inf"], r"system\.constraints\.area_mm2\.max.*finite"),
        (["+system.constraints.area_mm2.min=200"], r"system\.constraints\.area_mm2.*min.*<= max"),
        (["workload.gen_len=1000000000"], r"workload\.prompt_len \+ workload\.gen_len.*<= 1048576"),
        (["workload.batch=100000"], r"workload\.batch.*<= 4096"),
    ],
)
def test_bad_values_name_the_key(make_cfg: Callable[..., Config], overrides: list[str], pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        check_search(make_cfg(overrides))


@pytest.mark.parametrize("override", ["search.foo=1", "system.hw.rowz=3", "search.n_trials=abc"])
def test_unknown_keys_and_types_fail_at_composition(override: str) -> None:
    key = override.split("=")[0]
    with pytest.raises(ConfigCompositionException, match=key.replace(".", r"\.")):
        compose_raw([override])


@pytest.mark.slow
def test_cli_exits_nonzero_before_any_work(tmp_path: Path) -> None:
    for override, key in (("search.n_trials=-3", "search.n_trials"), ("search.foo=1", "search.foo"),
                          ("search.seed=-1", "search.seed")):
        run_dir = tmp_path / key
        proc = subprocess.run([sys.executable, "-m", "dse", override, f"hydra.run.dir={run_dir}"],
                              capture_output=True, text=True, cwd=ROOT, timeout=120)
        assert proc.returncode == 2, proc.stderr[-1000:]  # Hydra's errors and TIDE's alike: bad input
        assert key in proc.stderr + proc.stdout
        assert (proc.stderr + proc.stdout).count("configuration error") <= 1  # said once
        assert not run_dir.exists(), "a refused run leaves no run directory (not even Hydra's .hydra/ and log)"
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "trials.csv").write_text("number\n")  # a directory with a run's results is never removed
    proc = subprocess.run([sys.executable, "-m", "dse", "search.n_trials=-3", f"hydra.run.dir={kept}"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 2 and (kept / "trials.csv").is_file()


@pytest.mark.parametrize("node", sorted(p.stem for p in (CONF_DIR / "tech").glob("*.yaml")))
def test_every_tech_constant_has_value_unit_source(make_cfg: Callable[..., Config], node: str) -> None:
    cfg = make_cfg([f"tech={node}"])
    for name in TechConfig.__dataclass_fields__:
        if name == "name":
            continue
        q = getattr(cfg.tech, name)
        assert q.unit.strip() and q.source.strip(), f"tech {node}: {name}"


def test_tech_files_list_every_field_or_extend_one() -> None:
    base = yaml.safe_load((CONF_DIR / "tech" / "45nm.yaml").read_text())
    assert set(base) - {"defaults"} == set(TechConfig.__dataclass_fields__)


def test_every_searched_knob_exists_in_hw(make_cfg: Callable[..., Config]) -> None:
    cfg = make_cfg()
    assert set(cfg.system.space) <= set(cfg.system.hw) | set(cfg.system.catalog)


def test_cost_side_imports_no_torch() -> None:
    """Config validation, every system family and the search loop start without torch (only the accuracy
    emulation needs it), so a cost-only search and ``python -m dse --help`` start fast."""
    code = ("import sys, dse.config, dse.systems, dse.app, cost_models\n"
            "from dse.systems import families, system_class\n"
            "from tests.conftest import compose_raw\n"
            "from dse.config import to_config\n"
            "[system_class(f) for f in families()]\n"
            "to_config(compose_raw(['system=infinigen']))\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_7nm_periphery_is_the_45nm_one_at_the_logic_area_scale(make_cfg: Callable[..., Config]) -> None:
    t45, t7 = make_cfg(["tech=45nm"]).tech, make_cfg(["tech=7nm"]).tech
    assert t7.periphery_area_mm2.value == pytest.approx(
        t45.periphery_area_mm2.value * t7.logic_area_scale.value, rel=1e-3)


def test_accuracy_objective_none_measures_nothing(make_cfg: Callable[..., Config]) -> None:
    """accuracy.objective=none: no measurement, whatever max_ppl_increase says; =constraint: measured and
    constrained, not optimised (the oracle is not built here: problem_for only wires the provider)."""
    from dse.coupling import problem_for

    cfg = make_cfg(["system=tender", "accuracy.objective=none", "accuracy.max_ppl_increase=5"])
    problem, provider = problem_for(cfg, make_system(cfg))
    assert provider is None and "ppl_increase" not in problem.constraints
    assert "ppl_increase" not in problem.objectives
    with pytest.raises(ConfigError, match="accuracy.max_ppl_increase"):
        make_cfg(["accuracy.objective=constraint", "accuracy.max_ppl_increase=null"])


def test_accuracy_constraint_without_objective() -> None:
    from dse.objectives import Observed, build_problem

    problem = build_problem({"latency_s": "minimize"}, {}, {}, {}, lambda points: Observed(), None, 3.0)
    assert list(problem.objectives) == ["latency_s"] and problem.constraints["ppl_increase"].max == 3.0
    problem = build_problem({"latency_s": "minimize"}, {}, {}, {}, lambda points: Observed(), "ppl", None)
    assert list(problem.objectives) == ["latency_s", "ppl"] and "ppl_increase" not in problem.constraints


def test_compositions_are_reused_as_copies_and_an_edited_conf_tree_is_composed_afresh(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    import dse.config as config

    conf = tmp_path / "conf"
    shutil.copytree(config.CONF_DIR, conf)
    monkeypatch.setattr(config, "CONF_DIR", conf)
    first = config.compose_raw(["system=systolic"])
    first.search.seed = 12345  # a caller's edit stays its own
    assert config.compose_raw(["system=systolic"]).search.seed != 12345
    yaml = conf / "search" / "default.yaml"
    yaml.write_text(yaml.read_text().replace("seed: 0", "seed: 7", 1))
    assert config.compose_raw(["system=systolic"]).search.seed == 7
