"""Fallback backend: scikit-learn ``NearestNeighbors(algorithm="brute")``, exact.

scikit-learn has no inner-product neighbour search, so ip and cosine use the standard reduction of maximum
inner product to Euclidean search: each point gets one extra coordinate ``sqrt(M^2 - ||x||^2)`` (``M`` the
largest norm) and queries get ``0``, so Euclidean order equals descending inner-product order. Returned
distances are recomputed exactly from the original vectors (squared L2, or similarities) for consistency
with the other backends.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.neighbors import NearestNeighbors
from threadpoolctl import threadpool_limits

from robustlabels.neighbors.base import NeighborIndex, as_array_like, check_finite, check_shape, prepared_array

DEFAULT_BLOCK_SIZE = 4096


class SklearnIndex(NeighborIndex):
    """Exact search with scikit-learn. See :mod:`robustlabels.neighbors.base` for conventions."""

    backend = "sklearn"

    def __init__(
        self,
        features: Any,
        *,
        metric: str,
        threads: int | None = None,
        block_size: int | None = None,
        copy: bool = True,
    ) -> None:
        points = prepared_array(features, metric, name="features", copy=copy)
        super().__init__(points, metric=metric, block_size=block_size or DEFAULT_BLOCK_SIZE)
        self.threads = threads
        fitted = points
        if metric != "l2":
            sq = np.einsum("nd,nd->n", points, points)
            fitted = np.hstack([points, np.sqrt(np.maximum(sq.max() - sq, 0))[:, None]]).astype(np.float32)
        self.nn = NearestNeighbors(algorithm="brute", metric="euclidean", n_jobs=threads).fit(fitted)

    def _prepare_queries(self, queries: Any) -> np.ndarray:
        return prepared_array(queries, self.metric, name="queries")

    def _search_block(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        lifted = queries if self.metric == "l2" else np.hstack([queries, np.zeros((len(queries), 1), np.float32)])
        with threadpool_limits(self.threads):
            indices = self.nn.kneighbors(lifted, n_neighbors=k, return_distance=False).astype(np.int64)
        neighbors = self._points[indices]  # (block, k, D)
        if self.metric == "l2":
            diff = neighbors - queries[:, None, :]
            distances = np.einsum("qkd,qkd->qk", diff, diff)
            order = np.argsort(distances, axis=1, kind="stable")
        else:
            distances = np.einsum("qkd,qd->qk", neighbors, queries)
            order = np.argsort(-distances, axis=1, kind="stable")
        distances = np.take_along_axis(distances, order, axis=1).astype(np.float32, copy=False)
        return distances, np.take_along_axis(indices, order, axis=1)


def build_sklearn(features: Any, *, metric: str, **options: Any) -> SklearnIndex:
    """Validate ``features`` and return a :class:`SklearnIndex`."""
    features = as_array_like(features, name="features")
    check_shape(features, name="features")
    check_finite(features, name="features")
    return SklearnIndex(features, metric=metric, **options)
