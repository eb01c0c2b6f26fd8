"""Which CPU kernels the accuracy measurements run on, pinned, so that two machines measure the same bits.

torch picks its vectorised kernels by the CPU it finds (ATen: ``default``, ``avx2``, ``avx512``), and MKL its GEMM
code path the same way; the paths round differently in the last bits. Perplexity is a smooth function of those bits
at INT8, but not under INT4 fake quantisation, where a value on a rounding boundary flips to the next code: on this
project's 2-core AMD EPYC machine, SmolLM2 under Tender INT4 (G 8, chunk 64, 1 x 256 tokens) measures 202.1 with the
AVX2 paths, 181.4 with ATen's ``default`` kernels and 221.3 with MKL's ``COMPATIBLE`` path, and a search then takes
other trials. So on x86 CPUs with AVX2 the measurement pins both to their AVX2 paths (``ATEN_CPU_CAPABILITY=avx2``,
``MKL_CBWR=AVX2,STRICT``: the same code on any AVX2 CPU, whatever its newer extensions, and STRICT makes MKL's results
independent of the thread count; oneDNN likewise, ``ONEDNN_MAX_CPU_ISA=AVX2``). A variable the user set is kept.
The pins take effect when set before torch runs its first kernel (:func:`pin` runs when the real-model side is
imported); what is in effect is part of every measurement's identity (:func:`in_effect`), so a measurement on other
kernels is another cache key, never a silent mix.
"""

from __future__ import annotations

import os
import platform
from functools import cache
from pathlib import Path

#: the variables pinned on x86 CPUs with AVX2 (and FMA), and their values
X86_AVX2 = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2,STRICT", "ONEDNN_MAX_CPU_ISA": "AVX2"}


@cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (Linux's /proc/cpuinfo; empty elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    return frozenset(line.partition(":")[2].split())


def pins() -> dict[str, str]:
    """The pins this machine gets (none off x86 or without AVX2: its kernels are then recorded, not pinned)."""
    x86 = platform.machine().lower() in ("x86_64", "amd64")
    return dict(X86_AVX2) if x86 and {"avx2", "fma"} <= cpu_flags() else {}


def pin() -> dict[str, str]:
    """Set the pins in this process's environment, keeping any the user set; returns the variables in effect."""
    for key, value in pins().items():
        os.environ.setdefault(key, value)
    return {key: os.environ[key] for key in X86_AVX2 if key in os.environ}


def in_effect() -> dict[str, str]:
    """What the measurements of this process run on: the kernel variables, torch's CPU capability and the versions
    of the packages that compute (torch, transformers, gguf, tokenizers, numpy)."""
    from importlib import metadata

    import torch

    versions = {}
    for name in ("torch", "transformers", "gguf", "tokenizers", "numpy"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {**{k.lower(): v for k, v in pin().items()}, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            **versions}
