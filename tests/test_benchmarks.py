"""The benchmark scripts run (tiny sizes) and print their ratios, so they cannot silently rot."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(("script", "args", "expect"), [
    ("bench_vectorised.py", ["--points", "2000", "--one-by-one", "20"], "speed-up x"),
    ("bench_exhaustive.py", ["system.space.scratchpad_kib.choices=[64]", "system.space.out_buf_kib.choices=[32]",
                             "system.space.clock_ghz.high=0.7", "--workers", "1,2"], "same front in every run: True"),
    pytest.param("bench_results.py", ["--sizes", "30,60"], "SIGTERM->exit s", marks=pytest.mark.slow),
    ("bench_gp.py", ["accuracy.objective=none", "accuracy.max_ppl_increase=null", "--trials", "15", "--asks", "2",
                     "--samplers", "parego", "--quality", "15", "--seeds", "1"], "s per trial after 15 trials"),
    pytest.param("bench_fakequant.py", ["--seq-len", "128", "--repeats", "1"], "ratio to plain",
                 marks=pytest.mark.real_model),
    pytest.param("bench_accuracy_keys.py", ["accuracy.windows=1", "accuracy.seq_len=128", "--keys", "1",
                                            "--screen-seq-len", "64"], "of a full key", marks=pytest.mark.real_model),
    pytest.param("bench_kvselect.py", ["--seq-len", "128", "--repeats", "1"], "ratio to dense",
                 marks=pytest.mark.real_model),
])
def test_benchmark_script_runs(script: str, args: list[str], expect: str) -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert expect in proc.stdout
