"""The HTML report in a real browser: headless Chromium (Debian's package, installed by scripts/chromium.sh when
missing and root) driven by Selenium. Fails on any JavaScript console error and on any empty plot area; the
checker itself is shown to catch both."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dse.app import run_search
from dse.config import to_config
from dse.report.browser import BrowserUnavailable, check_report, chromium_binaries
from dse.report.html import write_report
from tests.conftest import compose_raw

pytestmark = pytest.mark.slow  # a browser / a served dashboard: make test, not make test-fast


@pytest.fixture(scope="module")
def browser() -> None:
    try:
        chromium_binaries()
    except BrowserUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the browser test: {exc}")
        pytest.skip(f"no headless Chromium here: {exc}")


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-run report (every section: overlay, indicator table, parallel coordinates, history, importances,
    breakdowns, and for the first run its robustness over joint draws)."""
    from dse.robust.__main__ import main as robust

    base = tmp_path_factory.mktemp("browser")
    for name, sampler in (("a", "tpe"), ("b", "random")):
        run_search(to_config(compose_raw(["search.n_trials=30", "search.progress=false", f"search/sampler={sampler}"])),
                   base / name)
    assert robust([str(base / "a"), "--draws", "30", "--workers", "1", "--no-progress"]) == 0
    return write_report([base / "a", base / "b"], base / "report.html")


def test_report_renders_without_errors_in_chromium(browser: None, report: Path, tmp_path: Path) -> None:
    shot = tmp_path / "report.png"
    result = check_report(report, shot)
    assert result.errors == [] and result.empty == [], (result.errors, result.empty)
    ids = {p["id"] for p in result.plots}
    assert {"pareto", "parcoords0", "parcoords1", "history", "importance0", "importance1", "breakdown0",
            "breakdown1", "robust0"} <= ids
    robust = next(p for p in result.plots if p["id"] == "robust0")
    assert robust["traces"] >= 2 and robust["points"] > 0  # the designs with error bars and the attainment surfaces
    assert "How robust the front is" in report.read_text()
    assert '"robust": {"p": [' in report.read_text()  # the Pareto view's bars and P(Pareto) colour for run a
    assert {p["stage"] for p in result.plots} == {"2-D", "3-D"}  # the third objective's 3-D view drew too
    assert shot.stat().st_size > 20_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_check_catches_a_javascript_error_and_an_empty_plot(browser: None, report: Path,
                                                                 tmp_path: Path) -> None:
    text = report.read_text()
    broken = tmp_path / "broken.html"
    broken.write_text(text.replace("</body>", "<script>notAFunction();</script></body>"))
    result = check_report(broken)
    assert any("notAFunction" in e for e in result.errors) and not result.ok
    empty = tmp_path / "empty.html"
    empty.write_text(text.replace("<div id='history' class='plot'></div>",
                                  "<div id='history' class='plot'></div><div id='blank' class='plot'></div>"))
    result = check_report(empty)
    assert [e.split()[1] for e in result.empty] == ["#blank", "#blank"] and not result.ok


def test_a_sampled_report_renders_in_chromium(browser: None, report: Path, tmp_path: Path) -> None:
    """The big-run form of the Pareto view (WebGL, classes drawn as a sample beyond max_shown) draws too."""
    sampled = write_report([report.parent / "a"], tmp_path / "sampled.html", max_shown=5)
    result = check_report(sampled)
    assert result.errors == [] and result.empty == [], (result.errors, result.empty)
    pareto = [p for p in result.plots if p["id"] == "pareto"]
    assert {p["stage"] for p in pareto} == {"2-D", "3-D"} and all(p["points"] > 0 for p in pareto)
    assert "(a uniform sample, at most 5 a class" in sampled.read_text()
