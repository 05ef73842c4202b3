"""The torch cluster-major IVF index against the exact torch oracle (no faiss needed)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robustlabels.errors import InputError
from robustlabels.neighbors import build

from .synthetic import assert_same_neighbors, clustered_data, low_dim_data, recall

K = 10


@pytest.fixture(scope="module")
def data() -> np.ndarray:
    return low_dim_data(n=1500)


@pytest.mark.parametrize("metric", ["cosine", "ip", "l2"])
def test_all_lists_probed_equals_exact(data, metric) -> None:
    ref_d, ref_i = build(data, metric=metric, backend="torch").search(data[:300], K + 1)
    index = build(data, metric=metric, backend="torch", index="IVF16,Flat", nprobe=16)
    assert (index.nlist, index.nprobe, index.factory) == (16, 16, "IVF16,Flat")
    distances, indices = index.search(data[:300], K)
    assert distances.dtype == np.float32 and indices.dtype == np.int64
    assert_same_neighbors(distances, indices, ref_d, ref_i)
    self_d, self_i = build(data, metric=metric, backend="torch").search(None, K + 1)
    assert_same_neighbors(*index.search(None, K), self_d, self_i)  # stored points as queries
    index.nprobe = 16  # also exact after raising nprobe past the probes cached at build time
    small = build(data, metric=metric, backend="torch", index="IVF16", nprobe=2)
    small.nprobe = 16
    assert_same_neighbors(*small.search(None, K), self_d, self_i)


def test_recall_at_default_nprobe_on_clustered_data() -> None:
    x = clustered_data()
    _, ref = build(x, metric="cosine", backend="torch").search(None, K, exclude_self=True)
    index = build(x, metric="cosine", backend="torch", index="IVF64", seed=0)
    assert index.nprobe == 16  # max(16, nlist // 8), as for faiss
    _, indices = index.search(None, K, exclude_self=True)
    assert recall(indices, ref) >= 0.95
    few = build(x, metric="cosine", backend="torch", index="IVF64", nprobe=2, seed=0)
    assert recall(few.search(None, K, exclude_self=True)[1], ref) >= 0.8


def test_seeded_and_exclude_self(data) -> None:
    index = build(data, metric="l2", backend="torch", index="IVF16", nprobe=4, seed=3)
    again = build(data, metric="l2", backend="torch", index="IVF16", nprobe=4, seed=3)
    torch.testing.assert_close(index.centroids, again.centroids)
    distances, indices = index.search(None, K, exclude_self=True)
    assert not (indices == np.arange(len(data))[:, None]).any()
    full_d, full_i = index.search(None, K + 1)
    np.testing.assert_array_equal(indices, full_i[:, 1:])  # no duplicates: self is first
    np.testing.assert_allclose(distances, full_d[:, 1:])
    np.testing.assert_array_equal(index.search(data, K, exclude_self=True)[1], indices)


def test_blockwise_and_threaded_equal_one_shot(data) -> None:
    one_shot = build(data, metric="ip", backend="torch", index="IVF16", nprobe=3, threads=1)
    blocked = build(data, metric="ip", backend="torch", index="IVF16", nprobe=3, block_size=97, threads=3)
    assert blocked.block_size == 97 and one_shot.block_size >= len(data)
    for queries in (None, data[::3]):
        d0, i0 = one_shot.search(queries, K)
        d1, i1 = blocked.search(queries, K)  # 3 query slices per block on 3 Python threads
        np.testing.assert_array_equal(i0, i1)
        np.testing.assert_allclose(d0, d1, rtol=1e-6)


@pytest.mark.parametrize("metric", ["ip", "l2"])
def test_pads_with_minus_one_when_probed_lists_are_short(metric) -> None:
    rng = np.random.default_rng(0)
    far = rng.normal(0, 0.1, (55, 4)).astype(np.float32)
    far[:5, 0] += 10  # two lists, opposite each other: 5 points and 50 points
    far[5:, 0] -= 10
    index = build(far, metric=metric, backend="torch", index="IVF2", nprobe=1)
    distances, indices = index.search(far[:1], 8)  # the first query's list holds only the 5 near points
    assert set(indices[0, :5]) == set(range(5)) and (indices[0, 5:] == -1).all()
    assert np.isinf(distances[0, 5:]).all() and np.isfinite(distances[0, :5]).all()


def test_invalid_ivf_strings(data) -> None:
    with pytest.raises(InputError, match="1 <= nlist <= ntotal = 20"):
        build(data[:20], backend="torch", index="IVF32")
    with pytest.raises(InputError, match="1 <= nlist"):
        build(data, backend="torch", index="IVF0")
    with pytest.raises(InputError, match=r"backend='torch' .* got 'IVF16,PQ8'"):
        build(data, backend="torch", index="IVF16,PQ8")
