"""Packaged proxy models: located by package without importing it; a file split over several wheels joined once
into the cache directory and checked against its sha256."""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from dse.config import compose_raw, to_config
from workloads.accuracy.proxy import ModelNotFound, Packaged


@pytest.fixture
def wheels(tmp_path: Path) -> Iterator[Path]:
    """Two chunk 'packages' on sys.path whose __init__ would fail if imported."""
    site = tmp_path / "site"
    for i, data in enumerate((b"GGUF-first-half|", b"second-half")):
        pkg = site / f"tide_fake_part{i + 1}"
        (pkg / "data").mkdir(parents=True)
        (pkg / "__init__.py").write_text("raise ImportError('never imported')\n")
        (pkg / "data" / f"m.gguf.part0{i}").write_bytes(data)
    sys.path.insert(0, str(site))
    yield site
    sys.path.remove(str(site))


def _proxy(sha: str | None) -> Packaged:
    return Packaged(name="fake", package="tide_fake_part1", file="m.gguf", install="pip install fake",
                    parts=("tide_fake_part1/data/m.gguf.part00", "tide_fake_part2/data/m.gguf.part01"), sha256=sha)


def test_chunks_are_joined_once_and_checked(wheels: Path, tmp_path: Path) -> None:
    whole = b"GGUF-first-half|second-half"
    proxy = _proxy(hashlib.sha256(whole).hexdigest())
    path = proxy.locate(tmp_path / "cache")
    assert path.read_bytes() == whole and path.parent.parent.parent == tmp_path / "cache" / "models"
    mtime = path.stat().st_mtime_ns
    assert proxy.locate(tmp_path / "cache") == path and path.stat().st_mtime_ns == mtime  # not joined again
    with pytest.raises(ModelNotFound, match="join to sha256"):
        _proxy("0" * 64).locate(tmp_path / "other")
    assert not list((tmp_path / "other").rglob("*.tmp*"))


def test_a_missing_wheel_names_the_install_command(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound, match="pip install fake"):
        _proxy(None).locate(tmp_path)


def test_the_config_choices_describe_both_proxies() -> None:
    default = to_config(compose_raw([])).accuracy.proxy
    gemma = to_config(compose_raw(["accuracy=gemma3_270m"])).accuracy
    assert default.to_packaged().file == "SmolLM2-135M-Instruct.Q4_1.gguf" and not default.parts
    assert len(gemma.proxy.parts) == 4 and len(gemma.proxy.sha256 or "") == 64
    assert gemma.windows == to_config(compose_raw([])).accuracy.windows  # everything else from default.yaml
