"""Stopping on SIGINT / SIGTERM without cutting anything in the middle: the ask/tell loop (dse/study.py), the worker
parent (dse/workers.py) and the exhaustive enumeration (dse/exhaustive.py) all stop at a boundary of their own and
write what they finished."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived while a trial was being evaluated: the trial is abandoned (told FAIL). A
    BaseException (as KeyboardInterrupt is), so a trial's own error handling does not swallow it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class StopRequest:
    """SIGINT / SIGTERM during a search. A signal that arrives while a trial is evaluated (cost model,
    accuracy measurement: code that unwinds cleanly) abandons that trial at once; one that arrives while
    Optuna writes to the storage only sets ``signum``, and the loop stops at the next trial boundary, so
    no storage operation (or its file lock) is ever cut in the middle."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.first: int | None = None  # the first signal
        self.at: float | None = None  # time.monotonic() of the first signal
        self._evaluating = False

    def _handle(self, signum: int, frame: object) -> None:
        self.signum = signum
        if self.at is None:
            self.first, self.at = signum, time.monotonic()
        if self._evaluating:
            self._evaluating = False
            raise Interrupted(signum)

    @contextlib.contextmanager
    def evaluating(self) -> Iterator[None]:
        if self.signum is not None:
            raise Interrupted(self.signum)
        self._evaluating = True
        try:
            yield
        finally:
            self._evaluating = False

    @contextlib.contextmanager
    def installed(self) -> Iterator[StopRequest]:
        """Handle SIGINT and SIGTERM within the block (main thread only; elsewhere nothing is installed)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for s, h in previous.items():
                signal.signal(s, h)
