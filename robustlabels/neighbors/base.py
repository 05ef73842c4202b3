"""The :class:`NeighborIndex` interface shared by every backend, plus input validation and metric preparation.

Conventions (the same for every backend):

- ``metric="l2"``: distances are **squared** Euclidean distances, ascending (as FAISS returns them).
- ``metric="ip"``: distances are inner-product **similarities**, descending (larger is closer).
- ``metric="cosine"``: features and queries are L2-normalised, then searched by inner product; distances are
  cosine **similarities** in [-1, 1], descending.

Searches return ``distances`` of shape ``(Q, k)`` float32 and ``indices`` of shape ``(Q, k)`` int64.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from itertools import pairwise
from typing import Any

import numpy as np

from robustlabels.errors import InputError, check_choice

METRICS = ("cosine", "ip", "l2")
BACKENDS = ("faiss", "torch", "sklearn")
_FINITE_CHECK_ROWS = 65536


def is_tensor(x: Any) -> bool:
    """True for a ``torch.Tensor`` (without importing torch when it is not loaded)."""
    return type(x).__module__.startswith("torch") and hasattr(x, "detach")


def check_metric(metric: str) -> str:
    """Return ``metric`` or raise :class:`InputError` naming it."""
    return check_choice("metric", metric, METRICS)


def to_numpy(x: Any, *, name: str) -> np.ndarray:
    """Return ``x`` as a 2-D float32 C-contiguous array, copying only when dtype, layout or device require it."""
    if is_tensor(x):
        x = x.detach().cpu().numpy()
    try:
        arr = np.ascontiguousarray(x, dtype=np.float32)
    except (TypeError, ValueError) as err:
        raise InputError(f"`{name}` must be a numeric array; got {type(x).__name__} ({err})") from None
    if arr.ndim != 2:
        raise InputError(f"`{name}` must have shape (N, D); got shape {tuple(arr.shape)}")
    return arr


def check_finite(x: Any, *, name: str) -> None:
    """Raise :class:`InputError` naming the first row of ``x`` (array or tensor) that holds NaN or inf."""
    for start in range(0, x.shape[0], _FINITE_CHECK_ROWS):  # bounded temporary, never a full N x D mask
        block = x[start : start + _FINITE_CHECK_ROWS]
        if is_tensor(block):
            import torch

            bad = (~torch.isfinite(block).all(dim=1)).nonzero().flatten().cpu().numpy()
        else:
            bad = np.flatnonzero(~np.isfinite(block).all(axis=1))
        if bad.size:
            raise InputError(f"`{name}` row {start + int(bad[0])} holds NaN or inf")


def as_array_like(x: Any, *, name: str) -> Any:
    """Return arrays and tensors unchanged; convert anything else (nested lists) to a float32 array."""
    return x if hasattr(x, "shape") and hasattr(x, "dtype") else to_numpy(x, name=name)


def check_shape(x: Any, *, name: str, dim: int | None = None) -> None:
    """Raise :class:`InputError` unless ``x`` is 2-D with (when given) ``dim`` columns and at least one row."""
    if len(x.shape) != 2:
        raise InputError(f"`{name}` must have shape (N, D); got shape {tuple(x.shape)}")
    if dim is not None and x.shape[1] != dim:
        raise InputError(f"`{name}` has dimension {x.shape[1]}, but the index has dimension {dim}")
    if x.shape[0] == 0 and dim is None:
        raise InputError(f"`{name}` is empty (shape {tuple(x.shape)}); cannot build an index")


def normalize_rows(x: np.ndarray, *, out: np.ndarray | None = None) -> np.ndarray:
    """``x`` (float32) with unit-L2 rows, zero rows staying zero, in ``out`` (which may be ``x``) or a new array.

    The norms come from ``einsum``, so no ``(N, D)`` temporary is formed besides the result.
    """
    norms = np.sqrt(np.einsum("nd,nd->n", x, x))
    return np.divide(x, np.maximum(norms, np.float32(1e-12))[:, None], out=out)


def prepare(x: np.ndarray, metric: str, *, inplace: bool = False) -> np.ndarray:
    """Apply the metric's preprocessing: cosine normalises (a copy, or ``x`` in place); ip and l2 return ``x``."""
    if metric != "cosine":
        return x
    return normalize_rows(x, out=x if inplace else None)


def prepared_array(x: Any, metric: str, *, name: str, copy: bool = True) -> np.ndarray:
    """``x`` as float32 C-contiguous rows after the metric's preprocessing, with at most one copy of ``x``.

    Cosine normalises in place when the conversion to float32 already made a private copy, or when
    ``copy=False`` (the caller's float32 array is then overwritten); otherwise into one new array.
    """
    arr = to_numpy(x, name=name)
    return prepare(arr, metric, inplace=not copy or not _shares_memory(arr, x))


def _shares_memory(arr: np.ndarray, x: Any) -> bool:
    """Whether ``arr`` may share memory with the caller's ``x`` (array or CPU tensor)."""
    if is_tensor(x):
        return x.device.type == "cpu" and np.may_share_memory(arr, x.detach().numpy())
    return isinstance(x, np.ndarray) and np.may_share_memory(arr, x)


def check_k(k: Any, ntotal: int, *, exclude_self: bool) -> int:
    """Return ``k`` or raise :class:`InputError` when it is not a positive int the index can answer."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise InputError(f"`k` must be a positive integer; got {k!r}")
    limit = ntotal - 1 if exclude_self else ntotal
    if k > limit:
        what = "ntotal - 1 with exclude_self=True" if exclude_self else "ntotal"
        raise InputError(f"`k` must be <= {what} = {limit}; got {k}")
    return int(k)


def drop_self(distances: np.ndarray, indices: np.ndarray, query_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Remove each row's own index from a ``(Q, k + 1)`` result, giving ``(Q, k)``.

    The own index is found by value, not assumed to sit in column 0: with duplicate points (ties at distance 0)
    another point may come first. A row that does not contain its own index drops its last column.
    """
    q, k1 = indices.shape
    is_self = indices == query_ids[:, None]
    col = np.where(is_self.any(axis=1), is_self.argmax(axis=1), k1 - 1)
    keep = np.ones((q, k1), dtype=bool)
    keep[np.arange(q), col] = False
    return distances[keep].reshape(q, k1 - 1), indices[keep].reshape(q, k1 - 1)


class NeighborIndex(ABC):
    """A built k-nearest-neighbour index over ``ntotal`` points of dimension ``dim``.

    Subclasses implement :meth:`_search_block` on prepared (metric-preprocessed) queries; this class handles
    validation, blocking over queries and ``exclude_self``. Attributes: ``ntotal``, ``dim``, ``metric``,
    ``block_size`` (queries per block).
    """

    backend: str = ""

    def __init__(self, points: Any, *, metric: str, block_size: int) -> None:
        self.metric = metric
        self.ntotal = int(points.shape[0])
        self.dim = int(points.shape[1])
        self.block_size = int(block_size)
        self._points = points  # prepared points; the default queries for ``search(None, k)``

    def __repr__(self) -> str:
        return f"{type(self).__name__}(ntotal={self.ntotal}, dim={self.dim}, metric={self.metric!r})"

    def _indexed_blocks(self) -> Iterator[tuple[np.ndarray, Any]]:
        """``(point ids, prepared block)`` pairs covering every indexed point once: ``search(None, k)``'s queries.

        Blocks of ``block_size`` points in index order; an index that stores its points in another order may
        yield them in that order instead (results are written back by id).
        """
        return self._blocks(self._points)

    def _blocks(self, prepared: Any) -> Iterator[tuple[np.ndarray, Any]]:
        """``(row ids, rows)`` of ``prepared`` in consecutive blocks of at most ``block_size`` rows.

        The blocks are balanced (sizes differ by at most one), not ``block_size`` rows and a remainder: a small
        last block would fall under FAISS's BLAS threshold and be scored pair by pair, several times slower.
        """
        n = int(prepared.shape[0])
        count = max(1, -(-n // self.block_size))
        bounds = [i * n // count for i in range(count + 1)]
        for start, stop in pairwise(bounds):
            yield np.arange(start, stop), prepared[start:stop]

    @abstractmethod
    def _prepare_queries(self, queries: Any) -> Any:
        """Validate and metric-prepare user queries into the backend's array type."""

    @abstractmethod
    def _search_block(self, queries: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Search one block of prepared queries; return ``(distances, indices)`` as float32 / int64 arrays."""

    def search(
        self, queries: Any = None, k: int = 10, *, exclude_self: bool = False, progress: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return the ``k`` nearest indexed points of each query.

        Args:
            queries: array or tensor of shape ``(Q, dim)``; ``None`` searches the indexed points themselves.
            k: neighbours per query.
            exclude_self: treat query row ``i`` as indexed point ``i`` and leave it out of its own neighbours
                (searches ``k + 1`` and drops the own index wherever it lands). Explicit queries must then
                have ``ntotal`` rows.
            progress: show a progress bar (stderr) over the query blocks.

        Returns:
            ``distances`` float32 ``(Q, k)`` (squared L2 ascending, or similarities descending for ip/cosine)
            and ``indices`` int64 ``(Q, k)``. Approximate indexes may pad with index ``-1``.
        """
        k = check_k(k, self.ntotal, exclude_self=exclude_self)
        if queries is None:
            nq, blocks = self.ntotal, self._indexed_blocks()
        else:
            queries = as_array_like(queries, name="queries")
            check_shape(queries, name="queries", dim=self.dim)
            if exclude_self and queries.shape[0] != self.ntotal:
                raise InputError(
                    f"`queries` must have ntotal = {self.ntotal} rows with exclude_self=True; got {queries.shape[0]}"
                )
            check_finite(queries, name="queries")
            prepared = self._prepare_queries(queries)
            nq, blocks = int(prepared.shape[0]), self._blocks(prepared)
        distances = np.empty((nq, k), dtype=np.float32)
        indices = np.empty((nq, k), dtype=np.int64)
        kk = k + 1 if exclude_self else k
        from tqdm.auto import tqdm

        with tqdm(total=nq, desc="neighbour search", unit="query", disable=not progress, leave=False) as bar:
            for ids, block in blocks:
                d, i = self._search_block(block, kk)
                if exclude_self:
                    d, i = drop_self(d, i, ids)
                distances[ids], indices[ids] = d, i
                bar.update(len(ids))
        return distances, indices
