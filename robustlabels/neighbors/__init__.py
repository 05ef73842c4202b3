"""k-nearest-neighbour search behind one small interface, with FAISS, torch or scikit-learn underneath.

Example::

    from robustlabels.neighbors import build

    index = build(features, metric="cosine")               # "auto": exact "Flat" below 100k points, IVF above
    distances, indices = index.search(None, 10, exclude_self=True)
    index = build(features, backend="torch", index="IVF1000", nprobe=8)   # BLAS-batched IVF, CPU or CUDA

Conventions: ``metric="l2"`` returns squared Euclidean distances (ascending, as FAISS does); ``"ip"`` and
``"cosine"`` return similarities (descending); cosine L2-normalises features and queries first. Searches return
``distances`` float32 ``(Q, k)`` and ``indices`` int64 ``(Q, k)``. What ``index="auto"`` builds is decided in
one place for every backend and caller: :func:`robustlabels.neighbors.policy.choose_index`. Importing this
package does not import faiss; the FAISS backend imports it on first use, after choosing OpenBLAS's kernel
(:func:`robustlabels.neighbors._blas.configure_openblas`; set ``OPENBLAS_CORETYPE=SkylakeX`` yourself on
AVX-512 machines whose environment pins another kernel).

Tested in ``tests/neighbors/test_neighbors.py`` (FAISS and scikit-learn against the exact torch oracle) and
``tests/neighbors/test_torch_ivf.py`` (the torch IVF index against the same oracle).
"""

from __future__ import annotations

from typing import Any

from robustlabels.errors import check_choice
from robustlabels.neighbors.base import BACKENDS, METRICS, NeighborIndex, check_metric
from robustlabels.neighbors.policy import IndexChoice, check_index, choose_index

__all__ = ["BACKENDS", "METRICS", "IndexChoice", "NeighborIndex", "build", "choose_index"]


def build(
    features: Any,
    *,
    metric: str = "cosine",
    index: str = "auto",
    backend: str = "faiss",
    threads: int | None = None,
    block_size: int | None = None,
    nprobe: int | None = None,
    ef_search: int | None = None,
    seed: int = 0,
    memory_budget: int | None = None,
    copy: bool = True,
) -> NeighborIndex:
    """Build a k-NN index over ``features``.

    Args:
        features: array or tensor of shape ``(N, D)``, finite; float32 C-contiguous input is not copied
            (except for cosine, which normalises). A CUDA tensor with ``backend="torch"`` searches on the GPU.
        metric: ``"cosine"``, ``"ip"`` or ``"l2"`` (see the module docstring for what distances mean).
        index: a ``faiss.index_factory`` string (``"Flat"``, ``"IVF256,Flat"``, ``"HNSW32"``, ``"IVF256,PQ16"``)
            or ``"auto"`` (:func:`~robustlabels.neighbors.policy.choose_index`: exact below 100k points). The
            torch backend accepts ``"auto"``, ``"Flat"`` (exact) and ``"IVF{n}"`` / ``"IVF{n},Flat"``
            (approximate, :mod:`robustlabels.neighbors.torch_ivf`); scikit-learn is exact only (``"auto"``/``"Flat"``).
        backend: ``"faiss"``, ``"torch"`` or ``"sklearn"``.
        threads: CPU threads for building and searching (restored afterwards); ``None`` leaves them alone.
            Exact FAISS search runs that many single-threaded workers side by side (``None``: FAISS's count).
        block_size: queries per search block; ``None`` picks a backend default (torch: from ``memory_budget``).
        nprobe: IVF lists visited per query (faiss and torch IVF; default ``max(16, nlist // 8)``).
        ef_search: HNSW search breadth (faiss; default ``max(128, 2 k)``).
        seed: seed of the training sample for indexes that need training (faiss IVF/PQ, torch IVF k-means).
        memory_budget: bytes of working memory per query block (torch: the exact index's ``(block, N)``
            score matrix, or the IVF index's per-query buffers; default 256 MiB).
        copy: with ``metric="cosine"``, ``False`` lets the index normalise ``features`` in place (the caller's
            float32 array or tensor is overwritten) instead of keeping a normalised copy. Input that must be
            converted (another dtype or layout) is normalised in its private copy either way.

    Returns:
        A :class:`NeighborIndex` with ``search(queries, k, *, exclude_self=False) -> (distances, indices)``,
        ``ntotal``, ``dim`` and ``metric``.
    """
    check_metric(metric)
    check_choice("backend", backend, BACKENDS)
    if backend == "faiss":
        from robustlabels.neighbors.faiss_index import build_faiss

        return build_faiss(
            features, metric=metric, index=index, threads=threads, block_size=block_size,
            nprobe=nprobe, ef_search=ef_search, seed=seed, copy=copy,
        )  # fmt: skip
    if backend == "torch":
        from robustlabels.neighbors._torch import DEFAULT_MEMORY_BUDGET
        from robustlabels.neighbors.torch_index import build_torch

        budget = DEFAULT_MEMORY_BUDGET if memory_budget is None else memory_budget
        return build_torch(
            features, metric=metric, index=index, threads=threads, block_size=block_size, memory_budget=budget,
            nprobe=nprobe, seed=seed, copy=copy,
        )  # fmt: skip
    check_index(index, backend)
    from robustlabels.neighbors.sklearn_index import build_sklearn

    return build_sklearn(features, metric=metric, threads=threads, block_size=block_size, copy=copy)
