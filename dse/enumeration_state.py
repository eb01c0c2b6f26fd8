"""What an exhaustive enumeration has finished, persisted as it goes (``enumeration.npz`` in the run directory):
which chunks are done, the merged front of their feasible non-dominated points and the counts. An interrupted run
(Ctrl-C, SIGTERM, a killed job) is resumed from it with ``search.resume=true``: only the chunks not done are
enumerated again, and the front is the same as an uninterrupted run's (the non-dominated filter of a union does not
depend on the order the chunks finish in).

The file is replaced atomically (written beside, then renamed), at most every :data:`SAVE_EVERY_S` seconds and when
the run stops, so a kill loses at most that much work. It holds an identity (the problem, the grid, the accuracy
groups and the chunking): a file of another enumeration is not used (logged, and the enumeration starts over).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

SAVE_EVERY_S = 1.0
COUNT_NAMES = ("enumerated", "invalid", "infeasible", "feasible")


def identity(*parts: Any) -> str:
    """A digest of what makes an enumeration's chunks (JSON of the parts; numpy arrays as lists)."""
    text = json.dumps(parts, sort_keys=True, default=lambda o: o.tolist() if isinstance(o, np.ndarray) else str(o))
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class Progress:
    """The chunks done so far (a mask over the run's task list), their merged front and counts, and the seconds
    spent enumerating them."""

    key: str
    done: np.ndarray
    group: np.ndarray
    flat: np.ndarray
    values: np.ndarray
    counts: np.ndarray
    enumerate_s: float = 0.0

    @classmethod
    def empty(cls, key: str, n_tasks: int, n_objectives: int) -> Progress:
        return cls(key, np.zeros(n_tasks, dtype=bool), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64),
                   np.zeros((0, n_objectives)), np.zeros(len(COUNT_NAMES), dtype=np.int64))

    @property
    def complete(self) -> bool:
        return bool(self.done.all())


def load(path: Path, key: str, n_tasks: int) -> Progress | None:
    """The progress saved at ``path`` when it belongs to this enumeration (same ``key`` and task count); None
    when there is none (or it is unreadable or of another enumeration: said in the log)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            saved = Progress(str(data["key"]), data["done"].astype(bool), data["group"], data["flat"],
                             data["values"], data["counts"], float(data["enumerate_s"]))
    except (OSError, ValueError, KeyError) as exc:
        log.warning("%s: not readable (%s); enumerating every chunk again", path, exc)
        return None
    if saved.key != key or len(saved.done) != n_tasks:
        log.warning("%s: saved by another enumeration (other space, accuracy groups or chunk_points); enumerating "
                    "every chunk again", path)
        return None
    return saved


def save(path: Path, progress: Progress) -> None:
    """Replace ``path`` with ``progress`` atomically (an OSError, e.g. a full disk, is the caller's)."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as fh:
        np.savez(fh, key=np.asarray(progress.key), done=progress.done, group=progress.group, flat=progress.flat,
                 values=progress.values, counts=progress.counts, enumerate_s=np.asarray(progress.enumerate_s))
    os.replace(tmp, path)


class Saver:
    """Saves progress at the first chunk, then at most every ``every_s`` seconds (always when ``force``). A save
    that fails (a full disk) is logged once and saving stops: the enumeration goes on, only its resumability is
    lost."""

    def __init__(self, path: Path | None, every_s: float = SAVE_EVERY_S) -> None:
        self.path = path
        self.every_s = every_s
        self._last = -math.inf  # the first chunk is saved at once: the file exists as soon as there is work in it

    def __call__(self, progress: Progress, force: bool = False) -> None:
        if self.path is None or (not force and time.monotonic() - self._last < self.every_s):
            return
        try:
            save(self.path, progress)
        except OSError as exc:
            log.warning("%s: enumeration progress not saved (%s); an interruption from here on cannot be resumed",
                        self.path, exc.strerror or exc)
            self.path = None
        self._last = time.monotonic()
