"""Data read once per process: a suite worker (``--reuse-processes``) fits hundreds of cells on the same files.

Reading and decoding them for every cell cost 1.5-2 s per cell (IMDB-Pref's 25,000 reviews and their
embeddings; CIFAR-10's cached features and the digests that key them), a third of a short cell. A value is kept
until one of the files it came from changes (modification time or size), for the last few keys only.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
MAX_ENTRIES = 4  # a catalog dataset's train and test splits, and room for a second dataset

_MEMO: OrderedDict[Hashable, tuple[Any, tuple[tuple[str, int, int], ...], Callable[[Any], Iterable[Path]]]] = (
    OrderedDict()
)


def files_state(paths: Iterable[Path]) -> tuple[tuple[str, int, int], ...]:
    """``(path, mtime in ns, size)`` of every file among ``paths`` (a folder: every file under it)."""
    files: list[Path] = []
    for path in paths:
        files += sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return tuple((str(f), st.st_mtime_ns, st.st_size) for f in files for st in [f.stat()])


def read_once(key: Hashable, read: Callable[[], T], sources: Callable[[T], Iterable[Path]]) -> T:
    """``read()``, or the value it returned for ``key`` earlier in this process if none of its ``sources(value)``
    (the files it was read from) has changed since. Callers must not modify the value."""
    hit = _MEMO.get(key)
    if hit is not None and files_state(hit[2](hit[0])) == hit[1]:
        _MEMO.move_to_end(key)
        return hit[0]
    value = read()
    _MEMO[key] = (value, files_state(sources(value)), sources)
    _MEMO.move_to_end(key)
    while len(_MEMO) > MAX_ENTRIES:
        _MEMO.popitem(last=False)
    return value
