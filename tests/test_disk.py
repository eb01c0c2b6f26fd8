"""A full disk mid-search (a real one: a small tmpfs mounted for the test): one line naming the path, exit 3, the
journal cut back to whole records, and the study resumed once there is room, with nothing lost."""

from __future__ import annotations

import csv
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from dse.storage import check_journal

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=192k", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip() or 'not root'})")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def search(run: Path, n_trials: int, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dse", "system=systolic", "model=smollm2_135m",
                           "accuracy.objective=none", "search/sampler=random", f"search.n_trials={n_trials}",
                           "search.progress=false", "output.report=false", "output.plot_formats=[]",
                           f"hydra.run.dir={run}", *extra], capture_output=True, text=True, cwd=ROOT, timeout=600)


@pytest.mark.slow
def test_a_full_disk_is_one_line_and_the_study_resumes(small_disk: Path) -> None:
    run = small_disk / "run"
    full = search(run, 400)
    assert full.returncode == 3, full.stderr[-2000:]
    err = full.stderr.strip().splitlines()
    assert err[-1].startswith(f"storage error: cannot write {run / 'study.journal'} (No space left on device)")
    assert "search.resume=true" in err[-1] and "Traceback" not in full.stderr
    check_journal(run / "study.journal")  # whole records only: a resume needs no repair
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    resumed = search(run, 400, "search.resume=true")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    rows = list(csv.DictReader((run / "trials.csv").open()))
    assert sum(r["state"] == "COMPLETE" for r in rows) == 400  # the trial the disk cut was failed and run again
    assert [r["state"] for r in rows if r["state"] != "COMPLETE"] in ([], ["FAIL"])


def test_a_read_only_run_directory_is_one_line_before_any_work(tmp_path: Path) -> None:
    mount = tmp_path / "ro"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,ro", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip() or 'not root'})")
    try:
        refused = search(mount / "run", 3)
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert refused.stderr.strip() == (f"configuration error: hydra.run.dir: {mount / 'run'} cannot be written "
                                      f"({mount} is not a writable directory)")
