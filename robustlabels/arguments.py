"""argparse pieces of the light command lines (``inject``, ``audit``): one-line errors and checked numbers.

:class:`OneLineParser` turns every argparse error (a missing or unknown flag, a bad choice, a value that a
``type=`` refuses) into an :class:`InputError`, which the command line prints as its one ``error:`` line with
exit code 2. The ``type=`` callables here refuse a number outside its range while parsing, before any file is
read or anything allocated, and name the flag and the value (argparse adds the flag).
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable
from typing import NoReturn

from robustlabels.errors import SEED_MAX, InputError

THREADS_PER_CPU = 4  # the most threads per CPU a --threads may ask for: more only oversubscribes the machine


class OneLineParser(argparse.ArgumentParser):
    """An :class:`argparse.ArgumentParser` whose errors raise :class:`InputError` instead of printing usage."""

    def error(self, message: str) -> NoReturn:
        raise InputError(message)


def integer(low: int, high: int | None = None) -> Callable[[str], int]:
    """A ``type=`` for integers in ``[low, high]`` (``high=None``: no upper bound)."""
    wanted = f"an integer >= {low}" if high is None else f"an integer in [{low}, {high}]"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {wanted}; got {text!r}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be {wanted}; got {text!r}")
        return value

    parse.__name__ = wanted
    return parse


def positive_number(text: str) -> float:
    """A ``type=`` for finite numbers above 0."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0; got {text!r}")
    return value


def threads(text: str) -> int:
    """A ``type=`` for a thread count: 1 to :data:`THREADS_PER_CPU` per CPU this process may run on (a huge count
    would exhaust the memory on thread stacks before any work)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        return integer(1, THREADS_PER_CPU * cpus)(text)
    except argparse.ArgumentTypeError as err:
        raise argparse.ArgumentTypeError(f"{err} ({THREADS_PER_CPU} per CPU; this machine has {cpus})") from None


seed = integer(0, SEED_MAX)
positive_integer = integer(1)
