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


class TextNotFound(FileNotFoundError):
    pass


def read_wikitext(path: Path, key: str = "accuracy.text_path") -> str:
    if not path.is_file():
        raise TextNotFound(f"{key}: {path} does not exist (point it at a WikiText-2 file)")
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    rows = ["" if line.strip() == "" else line for line in lines]
    return "\n\n".join(rows)


def text_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


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


def token_windows(tokenizer: object, text: str, seq_len: int, n_windows: int, *, bos_id: int | None = None,
                  offset: int = 0) -> Windows:
    """The first ``n_windows`` full windows (after skipping ``offset`` windows); tail dropped."""
    ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"][0]  # type: ignore[operator]
    body = seq_len - (1 if bos_id is not None else 0)
    available = ids.numel() // body
    if available < offset + n_windows:
        raise ValueError(f"accuracy.windows: the text has {available} windows of {seq_len} tokens, "
                         f"{offset + n_windows} requested")
    chunks = ids[offset * body:(offset + n_windows) * body].view(n_windows, body)
    if bos_id is not None:
        chunks = torch.cat([torch.full((n_windows, 1), bos_id, dtype=chunks.dtype), chunks], dim=1)
    return Windows(chunks)
