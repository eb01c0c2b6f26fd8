"""optuna-dashboard on a running study (journal file and PostgreSQL), over HTTP on a loopback port."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import optuna
import pytest

from dse.dashboard import storage_of

pytestmark = pytest.mark.slow  # a browser / a served dashboard: make test, not make test-fast


ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get_json(url: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return json.loads(response.read())
        except (urllib.error.URLError, ConnectionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.mark.parametrize("kind", ["journal", "postgresql"])
def test_dashboard_serves_a_running_study(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    run_dir = tmp_path / "run"
    storage = request.getfixturevalue("pg_url") if kind == "postgresql" else None
    search = subprocess.Popen(
        [sys.executable, "-m", "dse", "system=systolic", "model=smollm2_135m", "accuracy.objective=none",
         "search.progress=false", "search.workers=2", "search.n_trials=100000", f"hydra.run.dir={run_dir}",
         *([f"search.storage={storage}"] if storage else [])], cwd=ROOT, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True)
    target = storage or str(run_dir)
    dashboard = None
    try:
        deadline = time.monotonic() + 120
        while True:  # the study exists and has finished trials
            try:
                n = len(optuna.load_study(study_name="tide", storage=storage_of(target)).get_trials(
                    deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))
            except Exception:
                n = 0
            if n >= 5:
                break
            assert search.poll() is None and time.monotonic() < deadline, "the search did not start"
            time.sleep(0.2)
        port = free_port()
        dashboard = subprocess.Popen([sys.executable, "-m", "dse.dashboard", target, "--port", str(port)], cwd=ROOT,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        studies = get_json(f"http://127.0.0.1:{port}/api/studies")["study_summaries"]
        assert [s["study_name"] for s in studies] == ["tide"]
        detail = get_json(f"http://127.0.0.1:{port}/api/studies/{studies[0]['study_id']}")
        assert len(detail["trials"]) >= 5 and detail["directions"] == ["minimize"] * 3
        assert search.poll() is None  # it was served while the search ran
    finally:
        if dashboard is not None:
            dashboard.terminate()
            dashboard.wait(timeout=30)
        search.send_signal(signal.SIGTERM)
        assert search.wait(timeout=120) == 128 + signal.SIGTERM, search.stderr.read()[-2000:] if search.stderr else ""


def test_dashboard_names_a_target_without_a_study(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "dse.dashboard", str(tmp_path)], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2 and "no study here" in proc.stderr
