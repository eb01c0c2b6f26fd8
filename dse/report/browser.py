"""Open an HTML report in headless Chromium, check it, and save a screenshot.

``python -m dse.report.browser REPORT.html [--screenshot PNG]`` (exit 1 if the check fails). The check fails
on any JavaScript error in the console (Chromium's SEVERE log entries and uncaught exceptions) and on any plot
area that is empty: no plotly graph in it, no trace, no data point drawn, or no height. It also selects a
third objective in the Pareto view (the 3-D view) and checks again. Chromium and chromedriver come from
``scripts/chromium.sh`` (Debian's packages); Selenium drives them.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: per plot div: whether plotly drew it, how many traces and data points it holds, its height in pixels
_PLOTS_JS = """
return Array.from(document.querySelectorAll('div.plot')).map(function (d) {
  var data = d._fullData || [];
  var points = 0;
  data.forEach(function (t) {
    if (t.dimensions) { t.dimensions.forEach(function (dim) { points += (dim.values || []).length; }); }
    else { points += (t.x || []).filter(function (v) { return v !== null && v !== undefined; }).length; }
  });
  return {id: d.id, drawn: !!d.querySelector('.main-svg, .gl-container, canvas'), traces: data.length,
          points: points, height: d.getBoundingClientRect().height};
});
"""


@dataclass
class BrowserCheck:
    """What the browser saw: JavaScript errors, plot areas that are empty, and every plot's statistics."""

    errors: list[str] = field(default_factory=list)
    empty: list[str] = field(default_factory=list)
    plots: list[dict] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors and not self.empty and bool(self.plots)


class BrowserUnavailable(RuntimeError):
    """Chromium or its driver cannot be found or installed here (the message says why)."""


def chromium_binaries() -> tuple[str, str]:
    """(chromium, chromedriver) from ``scripts/chromium.sh`` (which installs them when it can)."""
    run = subprocess.run(["bash", str(ROOT / "scripts" / "chromium.sh")], capture_output=True, text=True,
                         check=False)
    lines = run.stdout.split()
    if run.returncode != 0 or len(lines) != 2:
        raise BrowserUnavailable(run.stderr.strip() or f"scripts/chromium.sh exited {run.returncode}")
    return lines[0], lines[1]


def _driver(width: int, height: int):  # noqa: ANN202 - selenium's WebDriver
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver = chromium_binaries()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--enable-unsafe-swiftshader",
                "--use-angle=swiftshader", f"--window-size={width},{height}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(executable_path=driver), options=options)


def _collect(drv, out: BrowserCheck, stage: str) -> None:  # noqa: ANN001
    for entry in drv.get_log("browser"):
        if entry.get("level") == "SEVERE":
            out.errors.append(f"{stage}: {entry.get('message')}")
    plots = drv.execute_script(_PLOTS_JS)
    for p in plots:
        p["stage"] = stage
        if not (p["drawn"] and p["traces"] > 0 and p["points"] > 0 and p["height"] > 50):
            out.empty.append(f"{stage}: #{p['id']} {p}")
    out.plots.extend(plots)


def check_report(path: Path, screenshot: Path | None = None, *, width: int = 1400, height: int = 1150,
                 timeout_s: float = 60.0) -> BrowserCheck:
    """Open ``path`` (file URL) in headless Chromium and check it (see the module docstring); save a
    screenshot of the first screen (the overview and the Pareto view) when asked."""
    from selenium.webdriver.support.ui import Select, WebDriverWait

    out = BrowserCheck()
    drv = _driver(width, height)
    try:
        drv.set_page_load_timeout(timeout_s)
        drv.get(Path(path).resolve().as_uri())
        WebDriverWait(drv, timeout_s).until(lambda d: d.execute_script(
            "return document.readyState === 'complete' && !!document.querySelector('#pareto .main-svg');"))
        _collect(drv, out, "2-D")
        if screenshot is not None:
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            drv.save_screenshot(str(screenshot))
        options = Select(drv.find_element("id", "pz")).options
        if len(options) > 3:  # a third objective exists: the 3-D view must draw too
            Select(drv.find_element("id", "pz")).select_by_index(3)
            WebDriverWait(drv, timeout_s).until(lambda d: d.execute_script(
                "var d = document.getElementById('pareto'); return (d._fullData || []).length > 0 && "
                "d._fullData[0].type === 'scatter3d';"))
            _collect(drv, out, "3-D")
    finally:
        drv.quit()
    return out


def build_parser() -> argparse.ArgumentParser:
    """The command line (also what the docs' command test parses every documented command with)."""
    parser = argparse.ArgumentParser(prog="python -m dse.report.browser", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("report", type=Path)
    parser.add_argument("--screenshot", type=Path)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = check_report(args.report, args.screenshot)
    except BrowserUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for p in result.plots:
        print(f"{p['stage']:>4} #{p['id']:<14} traces {p['traces']:>3}  points {p['points']:>5}  "
              f"height {p['height']:.0f}px")
    for e in result.errors:
        print(f"JavaScript error: {e}", file=sys.stderr)
    for e in result.empty:
        print(f"empty plot: {e}", file=sys.stderr)
    print("OK" if result.ok else "FAILED")
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
