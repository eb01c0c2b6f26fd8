"""The HTML report (python -m dse.report): what it holds, how it compares runs, and how it treats bad input.
The same report in a real browser: tests/test_report_browser.py."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dse.app import run_search
from dse.config import to_config
from dse.designs import design_breakdown, load_design
from dse.pareto import epsilon_additive, igd_plus, non_dominated
from dse.report.__main__ import main as report_main
from dse.report.html import build_report, importances
from dse.report.runs import design_file, knee, load_run, load_runs
from tests.conftest import compose_raw


def _search(run_dir: Path, *overrides: str) -> Path:
    run_search(to_config(compose_raw(["search.n_trials=40", "search.progress=false", "output.report=true",
                                      *overrides])), run_dir)
    return run_dir


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Three finished searches: two of the same problem (different samplers) and one with a fourth objective."""
    base = tmp_path_factory.mktemp("runs")
    return {"tpe": _search(base / "tpe", "search/sampler=tpe"),
            "random": _search(base / "random", "search/sampler=random", "search.seed=3"),
            "power": _search(base / "power", "+system.objectives.power_w=minimize")}


def _external_resources(text: str) -> list[str]:
    """Every script, stylesheet or image the page would fetch (script elements' src, link href, img src)."""
    from html.parser import HTMLParser

    found: list[str] = []

    class Finder(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            a = dict(attrs)
            ref = a.get("src") if tag in ("script", "img", "iframe") else a.get("href") if tag == "link" else None
            if ref:
                found.append(f"<{tag}> {ref}")

    Finder().feed(text)
    return found


def _data(text: str) -> dict:
    """The data the page's script draws (the JSON after ``const DATA =``)."""
    start = text.index("const DATA = ") + len("const DATA = ")
    return json.JSONDecoder().raw_decode(text[start:])[0]


def test_every_search_writes_a_self_contained_report(runs: dict[str, Path]) -> None:
    text = (runs["tpe"] / "report.html").read_text()
    assert _external_resources(text) == []  # plotly.js is embedded: opens offline
    assert "Plotly.newPlot" in text and len(text) > 1_000_000
    data = _data(text)
    view = data["pareto"]
    assert view["objectives"] == ["latency_s", "energy_j", "area_mm2"]
    classes = {c["kind"]: c for c in view["runs"][0]["classes"]}
    run = load_run(runs["tpe"])
    assert classes["pareto"]["count"] == len(run.pareto) > 0
    assert classes["pareto"]["count"] + classes["feasible"]["count"] == len(run.feasible)
    hover = classes["pareto"]["text"][0]  # knobs, objectives and metrics of the trial
    assert "knobs" in hover and "rows=" in hover and "latency_s=" in hover and "utilization=" in hover
    ids = [f["id"] for f in data["figures"]]
    assert ids == ["parcoords0", "history", "importance0", "breakdown0"]
    for heading in ("Pareto view", "Parallel coordinates", "Hypervolume history", "What drives each objective",
                    "time and energy go"):
        assert heading in text


def test_hypervolume_history_ends_at_the_summary_hypervolume(runs: dict[str, Path]) -> None:
    data = _data((runs["tpe"] / "report.html").read_text())
    history = next(f for f in data["figures"] if f["id"] == "history")["spec"]["data"][0]
    summary = json.loads((runs["tpe"] / "summary.json").read_text())
    assert history["y"][-1] == pytest.approx(summary["hypervolume"], rel=1e-12)
    assert np.all(np.diff(history["y"]) >= 0)


def test_importances_are_optunas_fanova_per_objective(runs: dict[str, Path]) -> None:
    run = load_run(runs["tpe"])
    imp = importances(run)
    assert set(imp) == set(run.objectives)
    for by_param in imp.values():
        assert set(by_param) == set(run.params)
        assert sum(by_param.values()) == pytest.approx(1.0)
    # area depends only on the array and buffers, never on the clock or the DRAM part
    assert imp["area_mm2"]["rows"] + imp["area_mm2"]["cols"] > imp["area_mm2"]["clock_ghz"]


def test_the_breakdown_is_the_knee_and_adds_up_to_its_latency_and_energy(runs: dict[str, Path]) -> None:
    run = load_run(runs["tpe"])
    chosen = knee(run)
    values = run.box.scale(run.values(run.pareto, run.objectives))
    norm = (values - values.min(0)) / np.where(np.ptp(values, 0) > 0, np.ptp(values, 0), 1)
    assert chosen is run.pareto[int(np.argmin(np.linalg.norm(norm, axis=1)))]
    data = _data((runs["tpe"] / "report.html").read_text())
    fig = next(f for f in data["figures"] if f["id"] == "breakdown0")["spec"]
    assert f"trial {chosen['number']}" in fig["layout"]["title"]["text"]
    latency = sum(sum(t["y"]) for t in fig["data"] if t["xaxis"] == "x")
    energy = sum(sum(t["y"]) for t in fig["data"] if t["xaxis"] == "x2")
    assert latency == pytest.approx(chosen["objective.latency_s"], rel=1e-9)
    assert energy == pytest.approx(chosen["objective.energy_j"], rel=1e-9)
    rows = design_breakdown(load_design(design_file(run, chosen["number"])))
    assert {t["name"] for t in fig["data"]} == {re.sub(r"\[\d+\]$", "", r["op"].split(".", 1)[-1]) for r in rows}


def test_a_chosen_design_is_broken_down_instead_of_the_knee(runs: dict[str, Path], tmp_path: Path) -> None:
    run = load_run(runs["tpe"])
    other = next(r for r in run.pareto if r is not knee(run))
    data = _data(build_report([runs["tpe"]], design=other["number"]))
    fig = next(f for f in data["figures"] if f["id"] == "breakdown0")["spec"]
    assert f"trial {other['number']} (chosen)" in fig["layout"]["title"]["text"]
    out = tmp_path / "r.html"
    assert report_main([str(runs["tpe"]), "--design", "99999", "--out", str(out)]) == 2 and not out.exists()


def test_two_runs_are_overlaid_and_compared_in_one_box(runs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "two.html"
    assert report_main([str(runs["tpe"]), str(runs["random"]), "--out", str(out), "--label", "TPE",
                        "--label", "random"]) == 0
    text = out.read_text()
    data = _data(text)
    assert [r["label"] for r in data["pareto"]["runs"]] == ["TPE", "random"]
    assert len({r["colour"] for r in data["pareto"]["runs"]}) == 2
    assert "Runs against each other" in text
    table = text[text.index("<table class='ind'><thead><tr><th>run</th><th>Pareto"):]
    rows = [re.findall(r"<td>([^<]*)</td>", r) for r in table[:table.index("</tbody>")].split("<tr>")[2:]]
    assert [r[0] for r in rows] == ["TPE", "random"]
    hv_tpe, hv_random = float(rows[0][2]), float(rows[1][2])
    assert rows[0][3] == rows[1][4] == "&mdash;"  # a run against itself
    tpe, rnd = load_runs([runs["tpe"], runs["random"]])
    assert hv_tpe == pytest.approx(json.loads((runs["tpe"] / "summary.json").read_text())["hypervolume"], abs=5e-5)
    assert hv_random == pytest.approx(json.loads((runs["random"] / "summary.json").read_text())["hypervolume"],
                                      abs=5e-5)
    box = tpe.box  # the same problem: the same box
    igd, eps = (float(x) for x in rows[0][4].split(" / "))  # TPE's front against random's
    assert igd == pytest.approx(igd_plus(tpe.front(tpe.objectives), rnd.front(rnd.objectives), box), abs=5e-5)
    assert eps == pytest.approx(epsilon_additive(tpe.front(tpe.objectives), rnd.front(rnd.objectives), box),
                                abs=5e-5)
    both = np.vstack([tpe.front(tpe.objectives), rnd.front(rnd.objectives)])
    combined = both[non_dominated(both, list(box.directions))]
    for row, run in zip(rows, (tpe, rnd), strict=True):
        assert float(row[5].split(" / ")[0]) == pytest.approx(igd_plus(run.front(run.objectives), combined, box),
                                                              abs=5e-5)


def test_runs_with_different_objectives_compare_on_the_shared_ones(runs: dict[str, Path]) -> None:
    text = build_report([runs["tpe"], runs["power"]])
    data = _data(text)
    assert data["pareto"]["objectives"] == ["latency_s", "energy_j", "area_mm2"]
    assert "also optimises [&#x27;latency_s&#x27;, &#x27;energy_j&#x27;, &#x27;area_mm2&#x27;, &#x27;power_w&#x27;]" \
        not in text
    assert "also optimises" in text and "power_w" in text and "objectives all runs share" in text


def test_bad_run_directories_are_one_line_errors(runs: dict[str, Path], tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert report_main([str(empty), "--out", str(tmp_path / "x.html")]) == 2
    assert "no trials.csv" in capsys.readouterr().err
    old = tmp_path / "old"
    shutil.copytree(runs["tpe"], old)
    summary = json.loads((old / "summary.json").read_text())
    (old / "summary.json").write_text(json.dumps({k: v for k, v in summary.items() if k != "objectives"}))
    assert report_main([str(old), "--out", str(tmp_path / "x.html")]) == 2
    err = capsys.readouterr().err
    assert "older TIDE" in err and "Traceback" not in err
    (old / "summary.json").write_text(json.dumps({k: v for k, v in summary.items() if k != "box"}))
    assert any("no hypervolume box" in n for n in load_run(old).notes)  # a note, not an error
    assert "no hypervolume box (older format)" in build_report([old])
    csv_text = (old / "trials.csv").read_text().replace("objective.energy_j", "energy")
    (old / "trials.csv").write_text(csv_text)
    assert report_main([str(old), "--out", str(tmp_path / "x.html")]) == 2
    assert "objective.energy_j" in capsys.readouterr().err
    assert report_main([str(tmp_path / "missing"), "--out", str(tmp_path / "x.html")]) == 2
    assert "not a directory" in capsys.readouterr().err


def test_a_report_that_fails_does_not_fail_the_search(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    import dse.report.html as report_html

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("injected report bug")

    monkeypatch.setattr(report_html, "write_report", broken)
    summary = _search(tmp_path / "run", "search.n_trials=5")
    assert summary.is_dir() and (summary / "summary.json").is_file() and not (summary / "report.html").exists()
    assert "report.html not written: RuntimeError: injected report bug" in caplog.text


def _cut(text: str) -> str:
    """The file as a write stopped in the middle of its last row leaves it."""
    return text[: text.rindex("\n", 0, len(text) - 1) + 40]


@pytest.mark.parametrize(("damage", "message"), [
    (lambda d: (d / "trials.csv").write_text(_cut((d / "trials.csv").read_text())), r"trials\.csv: line \d+ is cut"),
    (lambda d: (d / "trials.csv").write_text((d / "trials.csv").read_text().replace("\n", ",x\n", 3)),
     r"trials\.csv: line \d+ has \d+ fields, the header \d+"),
    (lambda d: (d / "pareto.csv").write_text(re.sub(r"\n(\d+),", r"\nseven,", (d / "pareto.csv").read_text(), count=1)),
     r"pareto\.csv: line 2: number 'seven' is not an integer"),
    (lambda d: (d / "trials.csv").write_text("".join((d / "trials.csv").read_text().splitlines(True)[:-1])),
     r"trials\.csv: \d+ rows, but summary\.json counts \d+ \(n_trials\)"),
    (lambda d: (d / "summary.json").write_text((d / "summary.json").read_text()[:200]),
     r"summary\.json: line \d+: not valid JSON"),
])
def test_a_damaged_table_is_named_with_its_line_and_nothing_is_overwritten(
        runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], damage: Callable[[Path], Any],
        message: str) -> None:
    run = tmp_path / "run"
    shutil.copytree(runs["random"], run)
    damage(run)
    report = run / "report.html"
    before = report.read_bytes()
    code = report_main([str(run), "--out", str(report)])
    err = capsys.readouterr().err
    assert code == 2 and re.search(message, err), err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert report.read_bytes() == before, "a damaged input overwrites nothing"


def test_a_damaged_reference_front_is_refused_naming_the_line(runs: dict[str, Path], tmp_path: Path) -> None:
    from dse.config import ConfigError
    from dse.results import load_reference_front

    front = tmp_path / "pareto.csv"
    front.write_text(_cut((runs["random"] / "pareto.csv").read_text()))
    with pytest.raises(ConfigError, match=r"search\.reference_front: .*pareto\.csv: line \d+ is cut"):
        load_reference_front(front, ["latency_s", "energy_j", "area_mm2"])


def test_a_big_run_is_drawn_with_webgl_and_sampled_but_its_front_whole(runs: dict[str, Path]) -> None:
    """Beyond max_shown a class of dominated-feasible or infeasible points is a seeded uniform sample of that size
    (counts stated in the legend and the notes); every Pareto design is drawn; 2-D traces are WebGL."""
    run = load_run(runs["random"])
    shown = 5
    text = build_report([runs["random"]], max_shown=shown)
    view = _data(text)["pareto"]
    classes = {c["kind"]: c for c in view["runs"][0]["classes"]}
    assert classes["pareto"]["shown"] == classes["pareto"]["count"] == len(run.pareto) > 0
    for kind in ("feasible", "infeasible"):
        c = classes[kind]
        assert c["shown"] == min(c["count"], shown) == len(c["text"]) == len(c["values"]["latency_s"])
    sampled = [c for c in classes.values() if c["shown"] < c["count"]]
    assert sampled, "the fixture's run has more than 5 trials of a class"
    assert f"at most {shown:,} a class; every Pareto design is drawn" in text
    assert "'scattergl'" in text
    assert build_report([runs["random"]], max_shown=shown) == text  # the same sample every time
    whole = _data(build_report([runs["random"]], max_shown=None))["pareto"]["runs"][0]["classes"]
    assert all(c["shown"] == c["count"] for c in whole)
    numbers = {int(m.group(1)) for c in sampled for t in c["text"] if (m := re.search(r"trial (\d+)", t))}
    assert numbers <= {int(r["number"]) for r in run.rows}


def test_sample_and_step_points() -> None:
    from dse.report.html import sample, step_points

    rows = [{"number": i} for i in range(100)]
    picked = sample(rows, 10, seed=1)
    assert len(picked) == 10 and picked == sorted(picked, key=lambda r: r["number"]) == sample(rows, 10, seed=1)
    assert sample(rows, 200) == rows and sample(rows, None) == rows
    hv = np.array([0.0, 0.0, 0.1, 0.1, 0.1, 0.3, 0.3])
    keep = step_points(hv)
    assert keep.tolist() == [0, 2, 5, 6]
    # the staircase through the kept points is the whole one: each point's value is the last kept one's at or before
    assert all(hv[keep[keep <= i][-1]] == hv[i] for i in range(len(hv)))
