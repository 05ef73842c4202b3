"""Row shards of large ``.npy`` arrays: listing them, reading them memory-mapped, and streaming results out.

A sharded input is a folder of ``.npy`` files whose rows, taken in file-name order, are the rows of one array
(``part-00000.npy``, ``part-00001.npy``, ...), or a single ``.npy`` file that is cut into row ranges. Either way
a :class:`Shard` names one file and a row range in it, plus the global index of its first row, so that every
task can work on its rows alone and every result carries global row ids. Nothing here loads a whole array: files
are opened with ``mmap_mode="r"`` and results are written block by block (:func:`write_npy_blocks`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from robustlabels.errors import InputError
from robustlabels.io import atomic_open, load_npy

DEFAULT_SHARD_ROWS = 262_144  # rows per shard when one file is cut into ranges (128 MiB at d = 128, float32)


@dataclass(frozen=True)
class Shard:
    """Rows ``[start, stop)`` of the ``.npy`` file ``path``; ``first`` is the global index of row ``start``."""

    path: str
    start: int
    stop: int
    first: int

    @property
    def rows(self) -> int:
        """Number of rows in the shard."""
        return self.stop - self.start

    @property
    def ids(self) -> np.ndarray:
        """``(rows,)`` int64 global ids of the shard's rows."""
        return np.arange(self.first, self.first + self.rows, dtype=np.int64)

    def read(self, dtype: type = np.float32) -> np.ndarray:
        """The shard's rows as a C-contiguous array of ``dtype`` (a copy; the file stays memory-mapped)."""
        array = load_npy(self.path, what="shard", mmap=True)
        return np.array(array[self.start : self.stop], dtype=dtype, order="C")


def list_shards(source: str | Path, *, shard_rows: int | None = None, what: str = "--data") -> list[Shard]:
    """The shards of ``source``: every ``*.npy`` of a folder in name order, or one file cut into row ranges.

    Args:
        source: a folder of ``.npy`` files (one shard each, or more with ``shard_rows``) or one ``.npy`` file.
        shard_rows: cut files into ranges of at most this many rows (default: a folder's files as they are, one
            file into :data:`DEFAULT_SHARD_ROWS`-row ranges).
        what: how to name ``source`` in errors.

    Raises:
        InputError: no ``.npy`` file, a file that is not a 2-D array, or files whose columns differ.
    """
    path = Path(source)
    files = sorted(path.glob("*.npy")) if path.is_dir() else [path]
    if not files:
        raise InputError(f"{what} {str(path)!r} holds no .npy files")
    if not path.is_dir() and shard_rows is None:
        shard_rows = DEFAULT_SHARD_ROWS
    shards, first, width = [], 0, None
    for file in files:
        array = load_npy(file, what=what, mmap=True)
        if array.ndim != 2 or array.shape[0] == 0:
            raise InputError(f"{what} {str(file)!r} must hold a non-empty 2-D array; got shape {array.shape}")
        if width is not None and array.shape[1] != width:
            raise InputError(f"{what} {str(file)!r} has {array.shape[1]} columns, the shards before it {width}")
        width, n = array.shape[1], array.shape[0]
        step = n if shard_rows is None else int(shard_rows)
        for start in range(0, n, step):
            stop = min(start + step, n)
            shards.append(Shard(str(file), start, stop, first + start))
        first += n
    return shards


def total_rows(shards: list[Shard]) -> int:
    """N, the rows of all shards together."""
    return shards[-1].first + shards[-1].rows if shards else 0


def columns(shards: list[Shard]) -> int:
    """D (or C), the columns every shard has (:func:`list_shards` checked that they agree)."""
    return int(load_npy(shards[0].path, what="shard", mmap=True).shape[1])


def write_npy_blocks(path: str | Path, blocks: Iterable[np.ndarray], *, shape: tuple[int, ...], dtype: str) -> Path:
    """Write ``.npy`` ``path`` atomically from row blocks (in order) without holding the whole array.

    Raises ``ValueError`` when the blocks do not add up to ``shape`` (the temporary file is then removed).
    """
    dtype_ = np.dtype(dtype)
    header = {"descr": np.lib.format.dtype_to_descr(dtype_), "fortran_order": False, "shape": tuple(shape)}
    rows = 0
    with atomic_open(path, "wb") as handle:
        np.lib.format.write_array_header_2_0(handle, header)
        for block in blocks:
            block = np.ascontiguousarray(block, dtype=dtype_)
            if block.shape[1:] != tuple(shape[1:]):
                raise ValueError(f"block of shape {block.shape} does not fit an array of shape {shape}")
            handle.write(block.tobytes())
            rows += block.shape[0]
        if rows != shape[0]:
            raise ValueError(f"blocks hold {rows} rows, expected {shape[0]}")
    return Path(path)


def save_npy(path: str | Path, array: np.ndarray) -> Path:
    """Save one (shard-sized) array atomically: a retried task rewrites the same file, never a second copy."""
    return write_npy_blocks(path, [array], shape=array.shape, dtype=array.dtype.str)


def row_blocks(n: int, block_rows: int) -> Iterator[tuple[int, int]]:
    """``[start, stop)`` ranges of ``block_rows`` rows covering ``range(n)``."""
    for start in range(0, n, block_rows):
        yield start, min(start + block_rows, n)


class RunningTop:
    """The ``size`` largest values seen so far and their ids: a bounded running selection over streamed blocks.

    Equivalent to a heap of ``size`` entries, done with ``argpartition`` on ``size + block`` values per block.
    Ties keep the smaller id, so the result does not depend on the order of the blocks.
    """

    def __init__(self, size: int) -> None:
        self.size = int(size)
        self.values = np.empty(0, dtype=np.float64)
        self.ids = np.empty(0, dtype=np.int64)

    def add(self, ids: np.ndarray, values: np.ndarray) -> None:
        """Offer ``(B,)`` ids and their values."""
        values = np.concatenate([self.values, np.asarray(values, dtype=np.float64)])
        ids = np.concatenate([self.ids, np.asarray(ids, dtype=np.int64)])
        keep = _order(values, ids)[: self.size]
        self.values, self.ids = values[keep], ids[keep]

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, values)`` of the largest values, largest first (ties: smaller id first)."""
        order = _order(self.values, self.ids)
        return self.ids[order], self.values[order]


def _order(values: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Positions sorted by value descending, then id ascending (NaN last)."""
    return np.lexsort((ids, np.nan_to_num(-values, nan=math.inf)))
