"""The metrics every system reports, and the ones derived from them (computed here, once, for all).

Each cost model returns at least :data:`WORKLOAD` (latency split into prefill and decode, energy) and
passes them through :func:`with_derived` with the number of generated tokens; a metric every system
should have and that follows from these is added here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

WORKLOAD: dict[str, str] = {
    "latency_s": "end-to-end latency of the workload (prefill + all decode steps) [s]",
    "prefill_latency_s": "prefill latency [s]",
    "decode_latency_s": "latency of all decode steps [s]",
    "energy_j": "total energy of the workload [J]",
}

DERIVED: dict[str, str] = {
    "tokens_per_s": "generated tokens per second over the whole workload (batch x gen / latency) [tokens/s]",
    "energy_per_token_j": "energy per generated token [J/token]",
    "power_w": "average power (energy / latency) [W]",
    "edp_js": "energy-delay product [J s]",
}

#: what every system reports
COMMON: dict[str, str] = {**WORKLOAD, **DERIVED}


def with_derived(metrics: Mapping[str, Any], generated_tokens: Any) -> dict[str, Any]:
    """``metrics`` plus :data:`DERIVED` from its latency, energy and the generated token count."""
    latency, energy = metrics["latency_s"], metrics["energy_j"]
    return {
        **metrics,
        "tokens_per_s": generated_tokens / latency,
        "energy_per_token_j": energy / generated_tokens,
        "power_w": energy / latency,
        "edp_js": energy * latency,
    }


def described(specific: Mapping[str, str]) -> dict[str, str]:
    """A model's metric table: the common metrics first, then its own."""
    return {**COMMON, **specific}

