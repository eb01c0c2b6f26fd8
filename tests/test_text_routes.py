"""The evaluation text by either route: the raw file, or ``hf:NAME/CONFIG/SPLIT`` (Hugging Face ``datasets``),
joined by the same protocol (shared/data/README.md). The Hub itself is not reachable here: the dataset is built
locally in the Hub's layout (parquet files per config, configs declared in README.md) and loaded offline."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from dse.config import AccuracyConfig
from dse.oracle import AccuracyOracle, AccuracySetupError
from workloads.accuracy.text import WIKITEXT2_TEST_JOINED_SHA256, HfText, join_rows, read_wikitext

SHARED_TEST = Path(__file__).resolve().parents[2] / "shared" / "data" / "wikitext-2" / "wiki.test.raw"


def hub_layout(root: Path, rows: list[str], config: str = "wikitext-2-raw-v1", split: str = "test") -> Path:
    """A local dataset repository laid out as the Hub's wikitext one."""
    import datasets

    repo = root / "wikitext"
    (repo / config).mkdir(parents=True)
    datasets.Dataset.from_dict({"text": rows}).to_parquet(str(repo / config / f"{split}-00000-of-00001.parquet"))
    (repo / "README.md").write_text(f"---\nconfigs:\n- config_name: {config}\n  data_files:\n  - split: {split}\n"
                                    f"    path: {config}/{split}-*\n---\n")
    return repo


@pytest.fixture
def offline_hf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    import datasets

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")
    return tmp_path


def test_join_protocol_matches_the_raw_file(tmp_path: Path) -> None:
    lines = [" \n", " = Title = \n", " \n", " body text , with @-@ marks \n", " \n"]
    path = tmp_path / "wiki.test.raw"
    path.write_text("".join(lines))
    joined = read_wikitext(path)
    assert joined == "\n\n = Title = \n\n\n\n\n body text , with @-@ marks \n\n\n"
    assert join_rows(["", " = Title = \n", "", " body text , with @-@ marks \n", ""]) == joined  # the Hub's rows


def test_hf_reference_parses_from_the_right() -> None:
    assert HfText.parse("hf:wikitext/wikitext-2-raw-v1/test") == HfText("wikitext", "wikitext-2-raw-v1", "test")
    assert HfText.parse("hf:/data/repos/wikitext/wikitext-2-raw-v1/test").name == "/data/repos/wikitext"
    for bad in ("hf:wikitext/test", "hf:", "hf:a//test"):
        with pytest.raises(ValueError, match="hf:NAME/CONFIG/SPLIT"):
            HfText.parse(bad)


@pytest.mark.skipif(not SHARED_TEST.is_file(), reason="needs ../shared/data/wikitext-2/wiki.test.raw")
def test_the_hub_rows_join_to_the_shared_file(offline_hf: Path) -> None:
    """The shared file's lines as the Hub stores them (blank rows as "") load through datasets and join to the
    very text of the raw-file route: the sha256 the README states."""
    rows = ["" if line.strip() == "" else line for line in SHARED_TEST.read_text(encoding="utf-8").splitlines(True)]
    repo = hub_layout(offline_hf, rows)
    text = HfText(str(repo), "wikitext-2-raw-v1", "test").read()
    assert hashlib.sha256(text.encode()).hexdigest() == WIKITEXT2_TEST_JOINED_SHA256
    assert text == read_wikitext(SHARED_TEST)


def test_the_oracle_reads_the_hf_route(offline_hf: Path) -> None:
    repo = hub_layout(offline_hf, ["", " = A = \n", "", " b c \n"])
    oracle = AccuracyOracle(AccuracyConfig(text_path=f"hf:{repo}/wikitext-2-raw-v1/test", cache_dir=str(offline_hf),
                                           progress=False))
    assert oracle.session.text() == "\n\n = A = \n\n\n\n\n b c \n"
    assert oracle.identity()["text_sha256"] == "hf:" + hashlib.sha256(oracle.session.text().encode()).hexdigest()
    wrong = AccuracyOracle(AccuracyConfig(text_path=f"hf:{repo}/wikitext-2-raw-v1/validation",
                                          cache_dir=str(offline_hf), progress=False))
    with pytest.raises(AccuracySetupError, match="cannot load hf:"):
        wrong.identity()


def test_a_missing_text_names_both_routes(tmp_path: Path) -> None:
    with pytest.raises(AccuracySetupError) as err:
        AccuracyOracle(AccuracyConfig(text_path=str(tmp_path / "nowhere.raw"), cache_dir=str(tmp_path)))
    assert "nowhere.raw does not exist" in str(err.value)
    assert "hf:wikitext/wikitext-2-raw-v1/test" in str(err.value) and "wiki.test.raw" in str(err.value)
