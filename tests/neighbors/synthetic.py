"""Seeded test data and comparisons shared by the neighbour-search tests."""

from __future__ import annotations

import numpy as np


def low_dim_data(n: int = 2000, d: int = 32, intrinsic: int = 6, seed: int = 1338) -> np.ndarray:
    """Seeded points near an ``intrinsic``-dimensional subspace (faiss SyntheticDataset style)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, intrinsic)) @ rng.standard_normal((intrinsic, d))
    x += 0.1 * rng.standard_normal((n, d))
    return np.ascontiguousarray(x, dtype=np.float32)


def clustered_data(n: int = 3000, d: int = 32, centres: int = 20, seed: int = 0) -> np.ndarray:
    """Seeded Gaussian mixture: ``centres`` means, each spread over a random 4-D subspace plus small noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, centres, n)
    means = 3 * rng.standard_normal((centres, d))
    bases = rng.standard_normal((centres, 4, d))
    spread = np.einsum("ni,nid->nd", rng.standard_normal((n, 4)), bases[labels])
    return np.ascontiguousarray(means[labels] + spread + 0.1 * rng.standard_normal((n, d)), dtype=np.float32)


def assert_same_neighbors(distances, indices, ref_distances, ref_indices, *, rtol=1e-4) -> None:
    """Distances close; indices equal wherever the reference distance is not tied with a neighbour in rank.

    ``ref_*`` hold one extra column so a tie at rank k with rank k + 1 is seen too.
    """
    k = distances.shape[1]
    tol = rtol * max(1.0, float(np.abs(ref_distances).max()))
    np.testing.assert_allclose(distances, ref_distances[:, :k], rtol=0, atol=tol)
    gaps = np.abs(np.diff(ref_distances, axis=1)) > 2 * tol  # (Q, k): gap between rank j and j + 1
    untied = gaps[:, :k].copy()
    untied[:, 1:] &= gaps[:, : k - 1]
    assert untied.mean() > 0.5  # the comparison is not vacuous
    np.testing.assert_array_equal(indices[untied], ref_indices[:, :k][untied])


def recall(indices: np.ndarray, ref_indices: np.ndarray) -> float:
    """Mean fraction of each reference row's indices found in the same row of ``indices``."""
    hits = sum(len(set(a) & set(b)) for a, b in zip(indices, ref_indices, strict=True))
    return hits / ref_indices.size
