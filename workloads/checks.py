"""The one check of a configuration value against its allowed choices, shared by the workload specs
and the application's config validation (which passes its own error type)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def require_choice(key: str, value: Any, allowed: Iterable[Any], error: type[Exception] = ValueError) -> None:
    """Raise ``error`` naming ``key``, the bad value and the allowed values unless ``value`` is allowed."""
    choices = list(allowed)
    if value not in choices:
        raise error(f"{key}: {value!r} is not allowed; allowed values: {choices}")
