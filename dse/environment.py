"""What a run was made with: Python, platform, CPU, the versions of TIDE's dependencies, torch's threads and the
kernels the accuracy measurements ran on. Recorded in ``run.json`` and in every exported design file;
``tide evaluate`` names the packages whose versions differ from the design's."""

from __future__ import annotations

import os
import platform
import re
import sys
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

DIST = "tide-dse"


def requirement_names(dist: str = DIST) -> list[str]:
    """The names of ``dist``'s direct requirements (its extras included), from its installed metadata."""
    try:
        requires = metadata.requires(dist) or []
    except metadata.PackageNotFoundError:
        return []
    return sorted({re.split(r"[\s;<>=!~\[(]", r, maxsplit=1)[0].lower() for r in requires})


@cache
def packages() -> dict[str, str | None]:
    """TIDE's version and each direct dependency's installed version (None: not installed; read once)."""
    out: dict[str, str | None] = {}
    for name in [DIST, *requirement_names()]:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor()
    return next((ln.partition(":")[2].strip() for ln in text.splitlines() if ln.startswith("model name")), "")


def describe() -> dict[str, Any]:
    """This process's environment; torch's threads and kernels only where torch is already loaded (a cost-only run
    never imports it)."""
    torch = sys.modules.get("torch")
    out: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform(), "cpu": cpu_model(),
                           "cores": os.cpu_count(), "packages": dict(packages())}
    if torch is not None:
        from workloads.accuracy.kernels import in_effect

        out["torch_threads"] = torch.get_num_threads()
        out["kernels"] = in_effect()
    return out


def version_differences(recorded: dict[str, Any] | None, now: dict[str, str | None] | None = None) -> list[str]:
    """'name: recorded -> now' for each package whose version differs from a recorded ``packages`` mapping."""
    now = dict(packages()) if now is None else now
    return [f"{name}: {version} -> {now.get(name)}" for name, version in sorted((recorded or {}).items())
            if now.get(name) != version]
