"""FAISS backend: any ``faiss.index_factory`` string, trained on a seeded sample when it needs training.

``index="auto"`` is chosen by :func:`robustlabels.neighbors.policy.choose_index`: exact ``"Flat"`` below
100,000 points and ``"IVF{n},Flat"`` with ``n ~ 4 sqrt(N)`` above. Search defaults aim at recall@10 >= 0.95:
``nprobe = max(16, nlist // 8)`` for IVF indexes and ``efSearch = max(128, 2 k)`` for HNSW. float32
C-contiguous input reaches FAISS without a copy; cosine normalises into one copy (or in place with
``copy=False``, or when converting the input already copied).

Exact ``"Flat"`` search is ``faiss.knn`` over that one buffer, called on blocks of queries. FAISS scores each
call's queries in tiles of ``distance_compute_blas_query_bs`` (4,096) queries x ``database_bs`` (1,024) points,
one ``sgemm`` and one heap update per tile, so slices larger than 4,096 queries only enlarge the result
buffers. Each block is cut into one slice per thread, searched by single-threaded workers side by side
(:meth:`FaissIndex._search_flat`); :func:`flat_block_size` sizes the slices so that all workers' scratch (their
``(slice, 1024)`` score tiles and results) stays within half the points' bytes, so that with the normalised
copy the peak stays below 2x the features (``docs/benchmarks.md``, "Exact all-vs-all").

faiss is imported lazily, after :func:`robustlabels.neighbors._blas.configure_openblas` has had its chance to
pick OpenBLAS's kernel.
"""

from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import numpy as np

from robustlabels.errors import InputError
from robustlabels.neighbors._blas import configure_openblas
from robustlabels.neighbors.base import NeighborIndex, as_array_like, check_finite, check_shape, prepared_array
from robustlabels.neighbors.policy import choose_index, default_nprobe

DEFAULT_BLOCK_SIZE = 16_384
TRAIN_POINTS_PER_CENTROID = 64
FLAT_SLICES = (4096, 2048, 1024, 512)  # queries per faiss.knn call (one worker's slice) of exact search
SCRATCH_SHARE = 0.5  # of the points' bytes that the exact search's per-block scratch may take
K_HINT = 16  # neighbours per query assumed when sizing blocks (results: float32 + int64 each)


def import_faiss() -> Any:
    """Import faiss, first letting :func:`configure_openblas` choose OpenBLAS's kernel."""
    configure_openblas()
    import faiss

    return faiss


@contextmanager
def faiss_threads(threads: int | None):
    """Run the body with ``faiss.omp_set_num_threads(threads)``, restoring the previous value after."""
    if threads is None:
        yield
        return
    faiss = import_faiss()
    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(int(threads))
    try:
        yield
    finally:
        faiss.omp_set_num_threads(previous)


def worker_pool(workers: int) -> ThreadPoolExecutor:
    """A pool of ``workers`` threads for exact search, kept between searches: the same threads (and their malloc
    arenas, which keep FAISS's freed score tiles) serve every block, so the tiles are reused."""
    return _pool(workers, os.getpid())  # a forked child has none of its parent's threads: it gets its own pool


@functools.cache
def _pool(workers: int, pid: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(workers, thread_name_prefix="robustlabels-knn")


def _reason(err: Exception) -> str:
    """The last line of a (multi-line) faiss error, for a one-line message."""
    lines = str(err).strip().splitlines()
    line = lines[-1].rpartition("Error: ")[2].strip() if lines else ""
    return line[:200] or "rejected by faiss"


def flat_block_size(
    ntotal: int, dim: int, *, workers: int = 1, database_bs: int = 1024, blas_threshold: int = 128_000
) -> int:
    """Queries per block of an exact search over ``ntotal`` x ``dim`` float32 points: ``workers`` slices.

    Each worker's slice is the largest of :data:`FLAT_SLICES` for which the scratch of all workers,
    ``workers x slice x (database_bs`` scores ``+ K_HINT`` results``)``, fits in :data:`SCRATCH_SHARE` of the
    points' bytes, but never below FAISS's BLAS threshold (``slice x dim >= blas_threshold``, under which
    FAISS scores pair by pair without BLAS): when none fits, the smallest slice above the threshold; when none
    is above it (``dim`` < 32), the largest.
    """
    budget = SCRATCH_SHARE * 4 * ntotal * dim
    per_query = workers * (4 * database_bs + 12 * K_HINT)
    fits = [b for b in FLAT_SLICES if b * per_query <= budget and b * dim >= blas_threshold]
    blas = [b for b in FLAT_SLICES if b * dim >= blas_threshold]
    return workers * (fits or blas[-1:] or FLAT_SLICES[:1])[0]


def _make(faiss: Any, factory: str, dim: int, metric: str) -> Any:
    faiss_metric = faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT
    try:
        return faiss.index_factory(dim, factory, faiss_metric)
    except RuntimeError as err:
        raise InputError(
            f"`index` {factory!r} is not a valid faiss factory string for dim {dim}: {_reason(err)}"
        ) from None


def _train(faiss: Any, index: Any, points: np.ndarray, *, seed: int, train_size: int | None) -> None:
    if index.is_trained:
        return
    ivf = _ivf(faiss, index)
    if train_size is None:
        train_size = max(TRAIN_POINTS_PER_CENTROID * (ivf.nlist if ivf is not None else 256), 10_000)
    n = points.shape[0]
    if train_size < n:
        rows = np.sort(np.random.default_rng(seed).choice(n, size=train_size, replace=False))
        sample = points[rows]
    else:
        sample = points
    try:
        index.train(sample)
    except RuntimeError as err:
        raise InputError(f"`index` could not be trained on {sample.shape[0]} points: {_reason(err)}") from None


def _ivf(faiss: Any, index: Any) -> Any | None:
    try:
        return faiss.extract_index_ivf(index)
    except RuntimeError:
        return None


def _hnsw(faiss: Any, index: Any) -> Any | None:
    inner = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexPreTransform) else index
    return inner if hasattr(inner, "hnsw") else None


class FaissIndex(NeighborIndex):
    """A FAISS index built from a factory string. See :mod:`robustlabels.neighbors.base` for conventions.

    Attributes: ``factory`` (the string used), ``index`` (the faiss object; ``None`` for ``"Flat"``, which
    searches the prepared points with ``faiss.knn``, the same BLAS search without a second copy of the
    points inside an ``IndexFlat``), ``nprobe`` / ``ef_search`` (``None`` when the index has no such parameter).
    """

    backend = "faiss"

    def __init__(
        self,
        features: Any,
        *,
        metric: str,
        index: str = "auto",
        threads: int | None = None,
        block_size: int | None = None,
        nprobe: int | None = None,
        ef_search: int | None = None,
        seed: int = 0,
        train_size: int | None = None,
        copy: bool = True,
    ) -> None:
        points = prepared_array(features, metric, name="features", copy=copy)
        faiss = import_faiss()
        self.factory = choose_index(len(points), backend="faiss", index=index).factory
        if block_size is None and self.factory == "Flat":
            block_size = flat_block_size(*points.shape, workers=threads or faiss.omp_get_max_threads(),
                                         database_bs=faiss.cvar.distance_compute_blas_database_bs,
                                         blas_threshold=faiss.cvar.distance_compute_blas_threshold)  # fmt: skip
        super().__init__(points, metric=metric, block_size=block_size or DEFAULT_BLOCK_SIZE)
        self.threads = threads
        self.index: Any = None
        self._hnsw_index: Any = None
        self.nprobe: int | None = None
        self.ef_search: int | None = None
        if self.factory == "Flat":
            return
        self.index = _make(faiss, self.factory, self.dim, metric)
        with faiss_threads(threads):
            _train(faiss, self.index, points, seed=seed, train_size=train_size)
            self.index.add(points)
        ivf, self._hnsw_index = _ivf(faiss, self.index), _hnsw(faiss, self.index)
        if ivf is not None:
            self.nprobe = min(ivf.nlist, nprobe or default_nprobe(ivf.nlist))
            ivf.nprobe = self.nprobe
        self.ef_search = (ef_search or 128) if self._hnsw_index is not None else None

    def _prepare_queries(self, queries: Any) -> np.ndarray:
        return prepared_array(queries, self.metric, name="queries")

    def _search_block(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        faiss = import_faiss()
        if self.index is None:
            distances, indices = self._search_flat(faiss, queries, k)
        else:
            if self._hnsw_index is not None:
                self._hnsw_index.hnsw.efSearch = max(self.ef_search or 128, 2 * k)
            with faiss_threads(self.threads):
                distances, indices = self.index.search(queries, k)
        return distances.astype(np.float32, copy=False), indices.astype(np.int64, copy=False)

    def _search_flat(self, faiss: Any, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact search of a query block: ``faiss.knn`` on ``threads`` slices at once, each single-threaded.

        One ``faiss.knn`` call on 2 threads synchronises them twice per ``(4096, 1024)`` tile (OpenBLAS's
        ``sgemm`` and FAISS's heap update), over 600 times at 50k points; on a busy machine every barrier waits,
        spinning, for a descheduled thread. Slices in their own Python threads (FAISS releases the GIL), each
        with one OpenMP thread (a per-thread setting, which faiss-cpu's OpenMP build of OpenBLAS follows too),
        share nothing until they are joined. Slices stay above FAISS's BLAS threshold.
        """
        metric = faiss.METRIC_L2 if self.metric == "l2" else faiss.METRIC_INNER_PRODUCT
        workers = self.threads or faiss.omp_get_max_threads()
        workers = max(1, min(workers, queries.size // faiss.cvar.distance_compute_blas_threshold))
        if workers == 1:
            with faiss_threads(self.threads):
                return faiss.knn(queries, self._points, k, metric)

        def search_slice(part: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            faiss.omp_set_num_threads(1)  # this worker thread's OpenMP setting only
            return faiss.knn(part, self._points, k, metric)

        parts = list(worker_pool(workers).map(search_slice, np.array_split(queries, workers)))
        return np.concatenate([d for d, _ in parts]), np.concatenate([i for _, i in parts])


def build_faiss(features: Any, *, metric: str, **options: Any) -> FaissIndex:
    """Validate ``features`` and return a :class:`FaissIndex`."""
    features = as_array_like(features, name="features")
    check_shape(features, name="features")
    check_finite(features, name="features")
    return FaissIndex(features, metric=metric, **options)
