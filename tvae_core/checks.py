"""Argument validation shared by the package (one place for clear error messages), and the
dict form of configs that keys caches.

Every public function validates its inputs with these helpers so that a bad value
raises a ``ValueError`` naming the parameter, the value received and what is allowed.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def check_choice(name: str, value: Any, allowed: Iterable[Any]) -> Any:
    """Return ``value`` if it is one of ``allowed``; otherwise raise naming the options."""
    allowed = tuple(allowed)
    if value not in allowed:
        opts = ", ".join(repr(a) for a in allowed)
        raise ValueError(f"{name}={value!r} is not allowed; choose one of: {opts}")
    return value


def check_int(name: str, value: Any, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """Return ``value`` as ``int`` if it is an integer in ``[minimum, maximum]``."""
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            import numpy as np

            if isinstance(value, np.integer):
                value = int(value)
            else:
                raise TypeError
        except TypeError:
            raise TypeError(f"{name} must be an int, got {type(value).__name__} ({value!r})") from None
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}")
    return value


def check_capsules(name: str, size: int, capsule_dim: int) -> int:
    """Return the number of capsules ``size // capsule_dim``; raise if it does not divide."""
    check_int("capsule_dim", capsule_dim, minimum=1)
    if size % capsule_dim != 0:
        raise ValueError(
            f"capsule_dim={capsule_dim} does not divide the size {size} of the last axis of {name}; "
            f"the last axis must hold C capsules of capsule_dim units (C*capsule_dim)"
        )
    return size // capsule_dim
