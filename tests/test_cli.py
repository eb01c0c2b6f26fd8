"""The ``tide`` command: one subcommand per tool, each the module's own command line; old config syntax named."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from dse import cli
from dse.config import ConfigError, compose_raw

ROOT = Path(__file__).resolve().parent.parent
TIDE = Path(sys.executable).parent / "tide"  # the console script pyproject.toml declares


def tide(*args: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(TIDE), *args], capture_output=True, text=True, cwd=ROOT, timeout=timeout)


def test_tide_help_lists_every_subcommand() -> None:
    proc = tide("--help")
    assert proc.returncode == 0, proc.stderr
    for name in [*cli.COMMANDS, *cli.GROUPS]:
        assert f"  {name} " in proc.stdout
    assert set(cli.COMMANDS) | set(cli.GROUPS) >= {"search", "evaluate", "report", "dashboard", "accuracy", "fidelity",
                                                   "calibrate", "studies", "bench"}


def test_every_subcommand_is_a_module_with_a_main() -> None:
    for command in cli.COMMANDS.values():
        assert callable(importlib.import_module(command.module).main), command.module
    assert set(cli.studies()) == {"baseline_fronts", "baseline_inputs",
                                  "calibrate", "fidelity", "group_study", "int4_parts", "proxies",
                                  "quant_baselines", "screening", "speculation"}
    assert {"vectorised", "search", "workers"} <= set(cli.benchmarks())


def test_a_subcommand_is_the_modules_command_line() -> None:
    proc = tide("evaluate", "--help")
    assert proc.returncode == 0 and "--breakdown" in proc.stdout
    proc = tide("studies", "calibrate", "--help")
    assert proc.returncode == 0 and "{tender,infinigen}" in proc.stdout


@pytest.mark.parametrize("args", [["bogus"], ["studies", "bogus"], ["bench", "bogus"]])
def test_an_unknown_name_is_refused_with_the_choices(args: list[str]) -> None:
    proc = tide(*args)
    assert proc.returncode == 2 and "choices:" in proc.stderr


def test_tide_search_runs_a_search(tmp_path: Path) -> None:
    proc = tide("search", "system=systolic", "model=smollm2_135m", "accuracy.objective=none", "search.n_trials=4",
                "search.progress=false", "output.report=false", f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "trials.csv").is_file() and (tmp_path / "summary.json").is_file()


@pytest.mark.parametrize("command", [[sys.executable, "-m", "dse"], [str(TIDE), "search"],
                                     [sys.executable, "-m", "dse.accuracy"]])
def test_the_old_sampler_syntax_names_the_group_syntax(command: list[str]) -> None:
    proc = subprocess.run([*command, "search.sampler=random"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 2
    assert "search/sampler=random" in proc.stderr and "'nsga2'" in proc.stderr and "Traceback" not in proc.stderr


def test_compose_names_the_group_syntax_too() -> None:
    with pytest.raises(ConfigError, match=r"search/sampler=tpe .*choices: \[.*'tpe'"):
        compose_raw(["search.sampler=tpe"])
    compose_raw(["search.sampler.population_size=8"])  # an option of the chosen sampler stays a key
