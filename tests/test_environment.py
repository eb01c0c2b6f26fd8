"""What a run was made with: run.json records the environment and the accuracy keys; design files record package
versions and ``tide evaluate`` names the ones that differ; the installed set is the lock file's."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import pytest
import yaml

from dse import evaluate as evaluate_cli
from dse.app import run_search
from dse.config import Config
from dse.environment import packages, requirement_names, version_differences

ROOT = Path(__file__).resolve().parent.parent


def test_run_json_records_the_environment(make_cfg: Callable[..., Config], tmp_path: Path) -> None:
    run_search(make_cfg(["search.n_trials=4", "search.progress=false"]), tmp_path)
    record = json.loads((tmp_path / "run.json").read_text())
    assert record["storage"] == str(tmp_path / "study.journal") and record["study_name"] == "tide"
    env = record["environment"]
    assert env["packages"]["optuna"] == metadata.version("optuna") and env["packages"]["tide-dse"]
    assert env["cores"] >= 1 and env["python"].count(".") == 2
    # torch's threads and kernels are recorded where torch is loaded (another test may have loaded it in this
    # process; that a cost-only run never imports torch is tests/test_layering.py's)
    assert ("torch_threads" in env) == ("kernels" in env) == ("torch" in sys.modules)
    assert record["accuracy_keys"] == []
    # the directory still belongs to its study: a resume claims it
    run_search(make_cfg(["search.n_trials=6", "search.progress=false", "search.resume=true"]), tmp_path)


def test_evaluate_names_the_packages_that_differ(make_cfg: Callable[..., Config], tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    run_search(make_cfg(["search.n_trials=4", "search.progress=false", "output.plot_formats=[]"]), tmp_path / "run")
    path = sorted((tmp_path / "run" / "designs").glob("*.yaml"))[0]
    assert evaluate_cli.main([str(path)]) == 0 and "warning" not in capsys.readouterr().err
    doc = yaml.safe_load(path.read_text())
    assert doc["provenance"]["packages"] == packages()
    doc["provenance"]["packages"]["numpy"] = "1.0.0"
    path.write_text(yaml.safe_dump(doc))
    assert evaluate_cli.main([str(path)]) == 0  # the values still reproduce: a warning, not a failure
    err = capsys.readouterr().err
    assert re.search(r"warning: .* other package versions \(numpy: 1\.0\.0 -> \d", err)


def test_version_differences() -> None:
    assert version_differences({"a": "1", "b": "2"}, {"a": "1", "b": "3"}) == ["b: 2 -> 3"]
    assert version_differences(None, {"a": "1"}) == []


def test_the_installed_set_is_the_lock_files() -> None:
    """make setup installs from constraints.txt (every line name==version); the tests run with exactly that set
    for every direct dependency."""
    lines = [ln for ln in (ROOT / "constraints.txt").read_text().splitlines() if ln and not ln.startswith("#")]
    pins = dict(ln.split("==", 1) for ln in lines)
    assert all(re.fullmatch(r"[A-Za-z0-9_.-]+==[^\s+]+", ln) for ln in lines), "a line that is not name==version"
    norm = {re.sub(r"[-_.]+", "-", k).lower(): v for k, v in pins.items()}
    for name in requirement_names():
        assert name in norm, f"{name} is a dependency but not in constraints.txt (run make lock)"
        assert metadata.version(name).split("+")[0] == norm[name], f"{name}: installed != constraints.txt"
    assert "setuptools>=77" in (ROOT / "pyproject.toml").read_text() and 'license = "MIT"' in (
        ROOT / "pyproject.toml").read_text()
