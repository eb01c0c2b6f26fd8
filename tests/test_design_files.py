"""Design files that cannot be evaluated give one clean line and exit 2 (a mismatch is 1, a match 0);
a fuzz test of the loader only ever sees those outcomes."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dse import evaluate as evaluate_cli
from dse.app import run_search
from dse.designs import evaluate_document


@pytest.fixture(scope="module")
def design(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One exported design of a short cost-only search."""
    from dse.config import to_config
    from tests.conftest import compose_raw

    run = tmp_path_factory.mktemp("run")
    cfg = to_config(compose_raw(["search.n_trials=6", "search.progress=false", "output.plot_formats=[]"]))
    run_search(cfg, run)
    return yaml.safe_load(sorted((run / "designs").glob("*.yaml"))[0].read_text())


def run_cli(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = evaluate_cli.main([str(path)])
    return code, capsys.readouterr().err


def write(tmp_path: Path, doc: Any) -> Path:
    path = tmp_path / "design.yaml"
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc))
    return path


def with_value(doc: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    node = out
    *parents, last = dotted.split(".")
    for p in parents:
        node = node[p]
    node[last] = value
    return out


def test_the_exported_design_reproduces(design: dict[str, Any], tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(write(tmp_path, design), capsys)[0] == 0


def test_a_changed_recorded_objective_is_a_mismatch(design: dict[str, Any], tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    key = next(iter(design["recorded"]["objectives"]))
    doc = with_value(design, f"recorded.objectives.{key}", design["recorded"]["objectives"][key] * 1.5)
    code, err = run_cli(write(tmp_path, doc), capsys)
    assert code == 1 and "MISMATCH" in err


@pytest.mark.parametrize(("make", "message"), [
    (lambda d, p: p / "missing.yaml", "cannot read"),
    (lambda d, p: write(p, ""), "empty"),
    (lambda d, p: write(p, yaml.safe_dump(d)[:300] + "\n  - [unclosed"), "not valid YAML"),
    (lambda d, p: write(p, "- a\n- b\n"), "a mapping is expected"),
    (lambda d, p: write(p, with_value(d, "system.hw.rows", -8)), "rows < 1"),
    (lambda d, p: write(p, with_value(d, "system.hw.dataflow", "xyz")), "system.hw.dataflow"),
    (lambda d, p: write(p, with_value(d, "tide_design", 99)), "newer TIDE"),
    (lambda d, p: write(p, with_value(d, "tide_design", "x")), "not a TIDE design file"),
    (lambda d, p: write(p, with_value(d, "model", 3)), "model: a mapping is expected"),
    (lambda d, p: write(p, with_value(d, "system.name", "warp9")), "system.name: 'warp9' is not a system; allowed: ["),
    (lambda d, p: write(p, with_value(d, "system.parts.memory.choice", "hbm9_fake")),
     "system.parts.memory.choice: 'hbm9_fake' is not a part of the catalog; allowed: ['hbm2_2000_x1'"),
    (lambda d, p: write(p, with_value(d, "system.hw.rows", "sixteen")), "system.hw.rows: a number is expected"),
])
def test_bad_files_give_one_line_and_exit_2(design: dict[str, Any], tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str], make: Callable, message: str) -> None:
    code, err = run_cli(make(design, tmp_path), capsys)
    assert code == 2
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


VALUES = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                   st.text(max_size=8), st.lists(st.integers(), max_size=3),
                   st.dictionaries(st.text(max_size=4), st.integers(), max_size=2))


def _paths(node: Any, prefix: str = "") -> list[str]:
    if not isinstance(node, dict):
        return [prefix]
    out = [prefix] if prefix else []
    for k, v in node.items():
        out += _paths(v, f"{prefix}.{k}" if prefix else str(k))
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_design_files_only_give_clean_outcomes(design: dict[str, Any], tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str], data: st.DataObject) -> None:
    kind = data.draw(st.sampled_from(["replace", "delete", "truncate", "bytes"]))
    path = tmp_path / "fuzz.yaml"
    if kind == "bytes":
        path.write_bytes(data.draw(st.binary(max_size=200)))
    elif kind == "truncate":
        text = yaml.safe_dump(design)
        path.write_text(text[: data.draw(st.integers(0, len(text)))])
    else:
        where = data.draw(st.sampled_from(_paths(design)))
        doc = copy.deepcopy(design)
        node = doc
        *parents, last = where.split(".")
        for p in parents:
            node = node[p]
        if kind == "delete":
            del node[last]
        else:
            node[last] = data.draw(VALUES)
        path.write_text(yaml.safe_dump(doc))
    code = evaluate_cli.main([str(path)])
    err = capsys.readouterr().err
    assert code in (0, 1, 2)
    assert "Traceback" not in err
    if code == 2:
        assert err.startswith("error: ") and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_breakdown_as_data_adds_up_to_the_design(design: dict[str, Any], tmp_path: Path, fmt: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """``--breakdown --format csv|json``: one row per GEMM (with its phase) plus the vector work and the leakage;
    the rows add up to the design's latency and energy; stdout carries only the data (or ``--out`` does)."""
    import csv
    import io
    import json
    import math

    path = write(tmp_path, design)
    metrics = evaluate_document(design)
    out = tmp_path / f"breakdown.{fmt}"
    for extra in ([], ["--out", str(out)]):
        assert evaluate_cli.main([str(path), "--breakdown", "--format", fmt, *extra]) == 0
        stdout = capsys.readouterr().out
        text = out.read_text() if extra else stdout
        if extra:
            assert "wrote" in stdout
        rows = json.loads(text) if fmt == "json" else list(csv.DictReader(io.StringIO(text)))
        assert list(rows[0]) == list(evaluate_cli.BREAKDOWN_COLUMNS)
        num = lambda v: float(v) if v not in (None, "") else math.nan  # noqa: E731
        assert sum(num(r["latency_s"]) for r in rows) == pytest.approx(metrics["latency_s"], rel=1e-9)
        assert sum(num(r["energy_j"]) for r in rows) == pytest.approx(metrics["energy_j"], rel=1e-9)
        phases = {r["phase"] for r in rows}
        assert {"prefill", "decode"} <= phases
        assert [r["op"] for r in rows][-1] == "leakage"
        gemms = [r for r in rows if r["kind"] not in ("vector", "leakage")]
        assert all(num(r["M"]) > 0 and num(r["cycles"]) > 0 for r in gemms)


def test_a_knob_with_several_values_is_a_clean_error(design: dict[str, Any], tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """Found by the fuzz test: a list where a knob's value belongs (``rows: []``) was an IndexError traceback."""
    for bad in ([], [16, 32]):
        doc = copy.deepcopy(design)
        doc["system"]["hw"]["rows"] = bad
        code, err = run_cli(write(tmp_path, doc), capsys)
        assert code == 2 and "system.hw.rows: a design holds one value per knob" in err
