"""User-facing input errors and small parameter checks.

Every problem with what the user gave us (a file, a config field, a value) raises :class:`InputError`
with one line that names the thing and the value. The CLIs print that line and exit with code 2.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

#: The widest seed range every seeded library here accepts (numpy, scikit-learn, Lightning).
SEED_MAX = 2**32 - 1


class InputError(ValueError):
    """Bad user input: a one-line message naming the file or field and the offending value."""


def check_interval(
    name: str, value: float, *, low: float, high: float, closed: str = "both"
) -> float:
    """Raise :class:`InputError` unless ``value`` lies in the interval; return it unchanged.

    ``closed`` is one of ``"both"``, ``"left"``, ``"right"``, ``"neither"``.
    """
    left = closed in ("both", "left")
    right = closed in ("both", "right")
    ok = isinstance(value, (int, float)) and not math.isnan(value)
    ok = ok and (value >= low if left else value > low) and (value <= high if right else value < high)
    if not ok:
        bracket = ("[" if left else "(") + f"{low}, {high}" + ("]" if right else ")")
        raise InputError(f"`{name}` must be in {bracket}; got {value!r}")
    return value


def check_at_least(name: str, value: int, low: int, *, otherwise: str = "") -> int:
    """Raise :class:`InputError` unless the integer ``value`` is at least ``low``; return it unchanged.

    ``otherwise``: what else the field takes, for the message (``"or null for the whole split"``).
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise InputError(f"`{name}` must be >= {low}{f' ({otherwise})' if otherwise else ''}; got {value!r}")
    return value


def check_choice(name: str, value: Any, choices: list[str] | tuple[str, ...]) -> Any:
    """Raise :class:`InputError` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise InputError(f"`{name}` must be one of {', '.join(map(str, choices))}; got {value!r}")
    return value


def check_file(path: str | Path, *, what: str = "file") -> Path:
    """Return ``path`` as a :class:`Path`, or raise :class:`InputError` if it does not exist."""
    p = Path(path).expanduser()
    if not p.exists():
        raise InputError(f"{what} not found: {str(p)!r}")
    return p
