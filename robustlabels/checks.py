"""Checks of user-given arrays, each one line naming the array and the offending value.

One check per class of fault, shared by the library and the command lines: probability rows
(:func:`check_probability_rows`: transition matrices and predicted probabilities), non-finite rows
(:func:`check_finite_rows`), enough classes among the labels (:func:`check_label_classes`) and memory for an
allocation whose size the user controls (:func:`check_allocation`, called before allocating).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from robustlabels.errors import InputError

FINITE_CHECK_ROWS = 1 << 14  # rows per block: the finiteness mask stays small for memory-mapped inputs
#: A (C, C) float64 matrix costs 8 bytes a cell; what inject builds from it (empirical counts, Python lists,
#: the manifest's JSON) costs about 16 times that at its peak.
BYTES_PER_MATRIX_CELL = 128


def check_probability_rows(matrix: Any, *, name: str, atol: float = 1e-6) -> np.ndarray:
    """``matrix`` as a 2-D float64 array whose rows are probability vectors (finite, >= 0, summing to 1 within
    ``atol``), or :class:`InputError` naming the first bad entry or row."""
    try:
        array = np.asarray(matrix, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a matrix of numbers") from None
    if array.ndim != 2:
        raise InputError(f"{name} must be a 2-D matrix; got shape {array.shape}")
    bad = np.argwhere(~np.isfinite(array))
    if bad.size:
        row, col = bad[0]
        raise InputError(f"{name} has a non-finite entry {array[row, col]} at row {row}, column {col}")
    bad = np.argwhere(array < 0)
    if bad.size:
        row, col = bad[0]
        raise InputError(f"{name} has a negative entry {array[row, col]:g} at row {row}, column {col}")
    sums = array.sum(axis=1)
    bad_rows = np.flatnonzero(np.abs(sums - 1.0) > atol)
    if bad_rows.size:
        row = bad_rows[0]
        raise InputError(f"{name} row {row} sums to {sums[row]:.10g}, not 1")
    return array


def check_finite_rows(array: np.ndarray, *, name: str) -> None:
    """Raise :class:`InputError` naming the first row (index along axis 0) of ``array`` that holds NaN or inf.

    Integer arrays pass at once; others are read in blocks of :data:`FINITE_CHECK_ROWS` rows, so a
    memory-mapped file is never copied whole.
    """
    if not np.issubdtype(array.dtype, np.inexact):
        return
    for start in range(0, array.shape[0], FINITE_CHECK_ROWS):
        block = np.asarray(array[start : start + FINITE_CHECK_ROWS])
        bad = np.flatnonzero(~np.isfinite(block.reshape(len(block), -1)).all(axis=1))
        if bad.size:
            raise InputError(f"{name} row {start + int(bad[0])} holds NaN or inf")


def check_label_classes(labels: np.ndarray, *, name: str, minimum: int = 2) -> None:
    """Raise :class:`InputError` unless ``labels`` hold at least ``minimum`` distinct classes."""
    classes = np.unique(labels)
    if classes.size < minimum:
        found = "no labels" if classes.size == 0 else f"only class {', '.join(map(str, classes.tolist()))}"
        raise InputError(f"{name} holds {found}; at least {minimum} distinct classes are needed")


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux ``MemAvailable``, else free pages), or ``None``."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_allocation(what: str, nbytes: int) -> None:
    """Raise :class:`InputError` when ``nbytes`` (what ``what`` needs) exceed the memory available now.

    Call it before allocating anything whose size a user's number controls (a class count, a row count).
    """
    available = available_memory()
    if available is not None and nbytes > available:
        raise InputError(f"{what} needs {human_bytes(nbytes)} of memory; {human_bytes(available)} is available")


def human_bytes(nbytes: float) -> str:
    """``1536`` -> ``"1.5 KiB"``."""
    units = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")
    value, unit = float(nbytes), 0
    while value >= 1024 and unit < len(units) - 1:
        value, unit = value / 1024, unit + 1
    return f"{int(value)} B" if unit == 0 else f"{value:.1f} {units[unit]}"


def built(field: str, factory: Any, *args: Any) -> Any:
    """``factory(*args)``, an optimizer or scheduler of the config, with its refusal of a value (torch's
    ``Invalid learning rate: -0.1``) as an :class:`InputError` naming the config field and the class."""
    try:
        return factory(*args)
    except ValueError as err:
        raise InputError(f"`{field}` ({class_name(factory)}): {err}") from None


def class_name(factory: Any) -> str:
    """The class a config's callable builds: LightningCLI hands ``partial(instantiate, SGD, lr=...)``."""
    classes = [arg for arg in getattr(factory, "args", ()) if isinstance(arg, type)]
    return classes[0].__name__ if classes else getattr(factory, "__name__", type(factory).__name__)
