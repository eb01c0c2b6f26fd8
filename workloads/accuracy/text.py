"""Evaluation and calibration text, read through configurable paths (never copied into the project).

WikiText-2 protocol (shared/data/README.md; Tender's and InfiniGen's published perplexities): read the
raw test file line by line keeping each line's newline, turn blank lines (a single space) into "", join
with "\\n\\n", tokenise the whole text once (no BOS for SmolLM2), cut non-overlapping windows.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch

from workloads.accuracy.specs import HF_PREFIX


class TextNotFound(FileNotFoundError):
    pass


#: sha256 of the joined text of shared/data's wiki.test.raw under the protocol below: what the Hugging Face
#: route must give for hf:wikitext/wikitext-2-raw-v1/test (the same rows, the same joining)
WIKITEXT2_TEST_JOINED_SHA256 = "696cca6b65a171b0a358a4be6732cdfdf2dd6164a32e20fd70e3c13fc4dfae83"
WHERE = ("a WikiText-2 raw test file (e.g. ../shared/data/wikitext-2/wiki.test.raw), or the Hugging Face route "
         "hf:wikitext/wikitext-2-raw-v1/test (pip install datasets; downloaded once into its cache)")


def join_rows(rows: list[str]) -> str:
    """The perplexity protocol's text (shared/data/README.md): blank rows become "", rows joined with
    "\n\n" (each row keeps its own trailing newline, as the raw file's lines and the dataset's rows do)."""
    return "\n\n".join("" if row.strip() == "" else row for row in rows)


def read_wikitext(path: Path, key: str = "accuracy.text_path") -> str:
    if not path.is_file():
        raise TextNotFound(f"{key}: {path} does not exist; give {WHERE}")
    return join_rows(path.read_text(encoding="utf-8").splitlines(keepends=True))


def text_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass(frozen=True)
class HfText:
    """``hf:NAME/CONFIG/SPLIT``: the ``text`` column of a Hugging Face dataset split, loaded with
    ``datasets.load_dataset(NAME, CONFIG, split=SPLIT)`` (NAME: a Hub id, or a local directory in the Hub's
    layout) and joined exactly as the raw file is."""

    name: str
    config: str
    split: str

    @classmethod
    def parse(cls, ref: str, key: str = "accuracy.text_path") -> HfText:
        parts = ref[len(HF_PREFIX):].rsplit("/", 2)
        if len(parts) != 3 or not all(parts):
            raise ValueError(f"{key}: {ref!r}: expected hf:NAME/CONFIG/SPLIT, e.g. hf:wikitext/wikitext-2-raw-v1/test")
        return cls(*parts)

    def rows(self, key: str = "accuracy.text_path") -> list[str]:
        try:
            import datasets
        except ImportError as exc:
            raise TextNotFound(f"{key}: the hf: route needs the datasets package (pip install datasets)") from exc
        try:
            split = datasets.load_dataset(self.name, self.config, split=self.split)
        except Exception as exc:  # offline, unknown name/config/split: datasets raises many kinds
            raise TextNotFound(f"{key}: cannot load hf:{self.name}/{self.config}/{self.split}: "
                               f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from exc
        if "text" not in split.column_names:
            raise TextNotFound(f"{key}: hf:{self.name}/{self.config}/{self.split} has no 'text' column "
                               f"(columns: {split.column_names})")
        return list(split["text"])

    def read(self, key: str = "accuracy.text_path") -> str:
        return join_rows(self.rows(key))


@dataclass(frozen=True)
class Windows:
    """Non-overlapping token windows, shape [n, seq_len]."""

    ids: torch.Tensor

    @property
    def count(self) -> int:
        return int(self.ids.shape[0])

    @property
    def seq_len(self) -> int:
        return int(self.ids.shape[1])


def tokenize(tokenizer: object, text: str) -> torch.Tensor:
    """The whole text's token ids (no special tokens), once: windows of any length are cut from them."""
    return tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"][0]  # type: ignore[operator]


def cut_windows(ids: torch.Tensor, seq_len: int, n_windows: int, *, bos_id: int | None = None,
                offset: int = 0) -> Windows:
    """The first ``n_windows`` full windows of ``ids`` (after skipping ``offset`` windows); tail dropped."""
    body = seq_len - (1 if bos_id is not None else 0)
    available = ids.numel() // body
    if available < offset + n_windows:
        raise ValueError(f"accuracy.windows: the text has {available} windows of {seq_len} tokens, "
                         f"{offset + n_windows} requested")
    chunks = ids[offset * body:(offset + n_windows) * body].view(n_windows, body)
    if bos_id is not None:
        chunks = torch.cat([torch.full((n_windows, 1), bos_id, dtype=chunks.dtype), chunks], dim=1)
    return Windows(chunks)


def token_windows(tokenizer: object, text: str, seq_len: int, n_windows: int, *, bos_id: int | None = None,
                  offset: int = 0) -> Windows:
    """The first ``n_windows`` full windows (after skipping ``offset`` windows); tail dropped."""
    return cut_windows(tokenize(tokenizer, text), seq_len, n_windows, bos_id=bos_id, offset=offset)
