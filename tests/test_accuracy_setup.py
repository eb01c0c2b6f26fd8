"""A coupled search whose accuracy set-up cannot work stops before any study exists, with one line naming
the key and exit 2 (missing text, missing model, a file that is no model)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(("override", "key"), [
    ("accuracy.text_path=/nonexistent/wiki.test.raw", "accuracy.text_path"),
    ("accuracy.model_path=/nonexistent/model.gguf", "accuracy.model_path"),
    ("accuracy.model_path={garbage}", "accuracy.model_path: cannot load"),
])
@pytest.mark.slow
def test_bad_accuracy_setup_is_one_line_and_no_study(tmp_path: Path, override: str, key: str) -> None:
    garbage = tmp_path / "garbage.gguf"
    garbage.write_bytes(b"GGUF" + bytes(range(256)) * 8)
    run = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "dse", "system=tender", "search.n_trials=2",
                           override.format(garbage=garbage), f"accuracy.cache_dir={tmp_path / 'cache'}",
                           f"hydra.run.dir={run}"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("configuration error")]
    assert len(errors) == 1 and key in errors[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert not (run / "study.journal").exists()
    assert not list((tmp_path / "cache").glob("models/*.tmp*"))
