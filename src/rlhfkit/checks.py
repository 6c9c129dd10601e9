"""Small validation helpers shared by the config dataclasses."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def require(obj: Any, rules: dict[str, tuple[Callable[[Any], bool], str]]) -> None:
    """Raise ``ValueError("field must be WHAT, got VALUE")`` for the first field that breaks its rule."""
    for name, (ok, what) in rules.items():
        value = getattr(obj, name)
        if not ok(value):
            raise ValueError(f"{name} must be {what}, got {value!r}")


def positive(v: Any) -> bool:
    return bool(v > 0)


def non_negative(v: Any) -> bool:
    return bool(v >= 0)


def fraction(v: Any) -> bool:
    return bool(0 <= v < 1)


def unit_interval(v: Any) -> bool:
    return bool(0 <= v <= 1)
