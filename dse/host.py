"""Who a worker is: ``machine:pid``, and whether such a worker of this machine is still alive.

``machine`` is the host name plus the kernel's boot id (Linux): two machines (or containers of two hosts) with
the same host name are told apart, and after a reboot no old pid is taken for a live one.
"""

from __future__ import annotations

import functools
import os
import socket


@functools.cache
def machine() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as fh:
            return f"{socket.gethostname()}@{fh.read().strip()[:8]}"
    except OSError:  # not Linux
        return socket.gethostname()


def worker_id() -> str:
    return f"{machine()}:{os.getpid()}"


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (killed, and not yet collected by its parent)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rpartition(b")")[2].split()[0] != b"Z"
    except (OSError, IndexError):  # no /proc (macOS): kill(0) said it exists
        return True


def dead_here(worker: str) -> bool:
    """Whether ``machine:pid`` (see :func:`worker_id`) names a process of this machine that no longer exists."""
    where, _, pid = worker.rpartition(":")
    return where == machine() and pid.isdigit() and not _alive(int(pid))
