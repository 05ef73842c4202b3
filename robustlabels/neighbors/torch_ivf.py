"""Inverted-file (IVF) search in torch, done cluster-major so that every distance is a BLAS matrix product.

The index is FAISS's ``IVF{nlist},Flat``: k-means centroids trained on a seeded sample (spherical k-means for
cosine, Euclidean for l2 and ip), every point stored in the list of its best-scoring centroid, and each query
scanning its ``nprobe`` best-scoring lists exhaustively. Recall therefore matches an IVFFlat index with the
same centroids and ``nprobe``. The difference is the loop order: FAISS scans lists query by query, while here
a block of queries is grouped by list and each list is scored against all the block's queries that probe it
in one matrix product ``(m_c, D) @ (D, n_c)``, in two passes:

1. every query's best list (its own list, for the stored points): ``topk`` per list gives the exact top-k
   there, and with it the query's k-th best score, a threshold no final neighbour can fall below;
2. every other probed list: a comparison with that threshold and ``nonzero`` keep the few points that beat
   it (far cheaper than a ``topk`` over the list), then a segmented top-k merges them in.

On CPU the products run at the BLAS kernel's speed (FAISS's IVF scan does not), and on CUDA tensors the same
code is the GPU path. Conventions are those of :mod:`robustlabels.neighbors.base`; queries that see fewer
than ``k`` candidates in their probed lists are padded with index ``-1`` and distance ``-inf`` (ip, cosine)
or ``+inf`` (l2). Memory: the points are stored once, sorted by list (for cosine, normalised chunk by chunk
straight into that buffer), plus the stored points' probes (``N x nprobe`` int32) and per-block buffers
sized by ``memory_budget``.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

import numpy as np
import torch

from robustlabels.errors import InputError
from robustlabels.neighbors._torch import DEFAULT_MEMORY_BUDGET, as_tensor, prepare_tensor, torch_threads
from robustlabels.neighbors.base import NeighborIndex
from robustlabels.neighbors.policy import default_nprobe
from robustlabels.neighbors.policy import parse_ivf as parse_ivf  # re-exported: NCR validates its index with it

TRAIN_POINTS_PER_CENTROID = 64
KMEANS_ITERATIONS = 10
CHUNK_ROWS = 16_384  # rows per step when normalising, assigning and probing: bounded temporaries
K_HINT = 16  # neighbours per query assumed when sizing query blocks from the memory budget


# ---------------------------------------------------------------------------------------------- centroids
def centroid_scores(x: torch.Tensor, centroids: torch.Tensor, metric: str) -> torch.Tensor:
    """``(n, nlist)`` scores, larger is closer: ``x·c`` (ip, cosine) or ``x·c − ½‖c‖²`` (l2, same order as −‖x−c‖²)."""
    scores = x @ centroids.T
    if metric == "l2":
        scores -= 0.5 * (centroids * centroids).sum(dim=1)
    return scores


def kmeans(sample: torch.Tensor, nlist: int, *, spherical: bool, iterations: int, seed: int) -> torch.Tensor:
    """Lloyd's k-means on ``sample (n, D)``; returns ``(nlist, D)`` centroids (unit-norm when ``spherical``).

    Initialised with ``nlist`` distinct sample rows chosen by ``seed``; an emptied cluster keeps its centroid.
    """
    gen = torch.Generator().manual_seed(seed)
    centroids = sample[torch.randperm(len(sample), generator=gen)[:nlist].to(sample.device)].clone()
    for _ in range(iterations):
        assign = centroid_scores(sample, centroids, "ip" if spherical else "l2").argmax(dim=1)
        sums = torch.zeros_like(centroids).index_add_(0, assign, sample)
        counts = torch.bincount(assign, minlength=nlist).unsqueeze(1)
        centroids = torch.where(counts > 0, sums / counts.clamp_min(1), centroids)
        if spherical:
            centroids = torch.nn.functional.normalize(centroids, dim=1, eps=1e-12)
    return centroids


def train_sample(features: torch.Tensor, nlist: int, metric: str, seed: int) -> torch.Tensor:
    """Seeded training rows of ``features`` (``64 nlist`` of them, or all), metric-prepared: ``(n, D)``."""
    n = len(features)
    size = min(n, TRAIN_POINTS_PER_CENTROID * nlist)
    rows = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:size].sort().values
    return prepare_tensor(features[rows.to(features.device)].float(), metric)


def sorted_by_list(features: torch.Tensor, order: torch.Tensor, metric: str) -> torch.Tensor:
    """``features[order]``, metric-prepared, written chunk by chunk into one new ``(N, D)`` float32 buffer."""
    out = torch.empty(features.shape, dtype=torch.float32, device=features.device)
    for i in range(0, len(order), CHUNK_ROWS):
        out[i : i + CHUNK_ROWS] = prepare_tensor(features[order[i : i + CHUNK_ROWS]].float(), metric)
    return out


# ---------------------------------------------------------------------------------------------- search
def probe(queries: torch.Tensor, centroids: torch.Tensor, metric: str, nprobe: int) -> torch.Tensor:
    """``(Q, nprobe)`` int32 lists each query visits, best first, scored in chunks (no ``(Q, nlist)`` matrix).

    Cosine queries need not be normalised: scaling a row does not change the order of its centroid scores.
    """
    return torch.cat([
        centroid_scores(queries[i : i + CHUNK_ROWS].float(), centroids, metric).topk(nprobe, dim=1).indices.int()
        for i in range(0, len(queries), CHUNK_ROWS)
    ])  # fmt: skip


def list_scores(queries: torch.Tensor, members: torch.Tensor, half_sq_norms: torch.Tensor | None) -> torch.Tensor:
    """``(m, n)`` scores of queries ``(m, D)`` against one list's ``members (n, D)``, larger is closer.

    ``q·x`` for ip and cosine; ``q·x − ½‖x‖²`` for l2 (``half_sq_norms`` given), which orders like ``−‖q − x‖²``.
    """
    if half_sq_norms is None:
        return queries @ members.T
    return torch.addmm(half_sq_norms, queries, members.T, beta=-1.0)


def group_by_list(lists_of: torch.Tensor, nlist: int) -> tuple[torch.Tensor, list[int]]:
    """Positions of ``lists_of (n,)`` grouped by list (stable), and how many fall in each of the ``nlist`` lists."""
    order = torch.argsort(lists_of, stable=True)
    return order, torch.bincount(lists_of, minlength=nlist).tolist()


def scan_first_probe(
    queries: torch.Tensor, first: torch.Tensor, lists: torch.Tensor, offsets: list[int],
    half_sq_norms: torch.Tensor | None, k: int,
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """Exact top-``k`` of each query within its best list (pass 1); gives every query a score threshold.

    Args:
        queries: ``(Q, D)`` prepared queries, **sorted by** ``first`` so that each list's queries are a slice.
        first: ``(Q,)`` each query's best list, non-decreasing.
        lists: ``(N, D)`` stored points sorted by list; list ``c`` is ``lists[offsets[c] : offsets[c + 1]]``.
        half_sq_norms: ``(N,)`` ``½‖x‖²`` of the stored points for l2, else ``None``.

    Returns:
        ``scores (Q, k)`` descending (``-inf`` pads lists shorter than ``k``) and ``rows (Q, k)`` positions in
        ``lists`` (``-1`` pads).
    """
    scores = queries.new_full((len(queries), k), float("-inf"))
    rows = torch.full((len(queries), k), -1, dtype=torch.long, device=queries.device)
    start = 0
    for c, m in enumerate(torch.bincount(first, minlength=len(offsets) - 1).tolist()):
        lo, hi, stop = offsets[c], offsets[c + 1], start + m
        if m and hi > lo:
            norms = None if half_sq_norms is None else half_sq_norms[lo:hi]
            values, cols = list_scores(queries[start:stop], lists[lo:hi], norms).topk(min(k, hi - lo), dim=1)
            scores[start:stop, : values.shape[1]], rows[start:stop, : values.shape[1]] = values, cols + lo
        start = stop
    return scores, rows


def scan_other_probes(
    queries: torch.Tensor, probes: torch.Tensor, threshold: torch.Tensor, lists: torch.Tensor,
    offsets: list[int], half_sq_norms: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
    """Every point of the other probed lists that beats its query's ``threshold`` (pass 2), as a sparse list.

    ``probes (Q, P - 1)`` are the lists after the first; ``threshold (Q,)`` the k-th best score found so far.
    A point at or below it cannot enter the top k, so a comparison and ``nonzero`` replace a ``topk``.
    Returns ``query (E,)``, ``score (E,)`` and ``row (E,)`` of the ``E`` survivors.
    """
    pair_order, pairs_per_list = group_by_list(probes.flatten(), len(offsets) - 1)
    found: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    start = 0
    for c, m in enumerate(pairs_per_list):
        lo, hi, stop = offsets[c], offsets[c + 1], start + m
        if m and hi > lo:
            who = pair_order[start:stop] // probes.shape[1]
            norms = None if half_sq_norms is None else half_sq_norms[lo:hi]
            scores = list_scores(queries.index_select(0, who), lists[lo:hi], norms)
            pair, col = (scores > threshold.index_select(0, who).unsqueeze(1)).nonzero(as_tuple=True)
            found.append((who[pair], scores[pair, col], col + lo))
        start = stop
    if not found:
        empty = queries.new_empty(0)
        return empty.long(), empty, empty.long()
    query, score, row = (torch.cat(parts) for parts in zip(*found, strict=True))
    return query, score, row


def merge_topk(
    scores: torch.Tensor, rows: torch.Tensor, query: torch.Tensor, score: torch.Tensor, row: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top ``k`` of each query over its dense candidates ``scores, rows (Q, k)`` and sparse extras ``(E,)``.

    Only queries with extras are touched: their ``k + extras`` candidates go through a segmented top-k (two
    stable sorts, by score and then by query, keeping each query's first ``k``). Updates ``scores`` and
    ``rows`` in place and returns them.
    """
    if len(query) == 0:
        return scores, rows
    k = scores.shape[1]
    touched, query = torch.unique(query, return_inverse=True)  # sorted ids; query becomes a position in them
    query = torch.cat([torch.arange(len(touched), device=query.device).repeat_interleave(k), query])
    score = torch.cat([scores[touched].flatten(), score])
    row = torch.cat([rows[touched].flatten(), row])
    order = torch.argsort(score, descending=True, stable=True)
    order = order[torch.argsort(query[order], stable=True)]
    query, score, row = query[order], score[order], row[order]
    counts = torch.bincount(query, minlength=len(touched))
    rank = torch.arange(len(query), device=query.device) - (torch.cumsum(counts, 0) - counts)[query]
    keep = rank < k
    where = (touched[query[keep]], rank[keep])
    scores[where], rows[where] = score[keep], row[keep]
    return scores, rows


def is_grouped(lists_of: torch.Tensor) -> bool:
    """True when ``lists_of (Q,)`` is non-decreasing, i.e. the queries are already grouped by list."""
    return bool((lists_of[1:] >= lists_of[:-1]).all())


def ivf_search(
    queries: torch.Tensor, k: int, *, centroids: torch.Tensor, lists: torch.Tensor, offsets: list[int],
    list_ids: torch.Tensor, metric: str, nprobe: int, half_sq_norms: torch.Tensor | None = None,
    probes: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """``k`` nearest stored points of each prepared query ``(Q, D)`` among its ``nprobe`` lists.

    Two passes: the exact top-k within each query's best list (one matrix product and ``topk`` per list),
    then the other probed lists filtered by the k-th score from pass 1 (one product and a comparison per
    list), merged by a segmented top-k. ``probes (Q, nprobe)`` may be passed in when known (stored points).

    Returns:
        ``distances (Q, k)`` float32 (similarities descending, or squared L2 ascending) and ``indices (Q, k)``
        int64 original point ids (``list_ids`` maps stored rows to them), ``-1`` where fewer than ``k``
        candidates were seen (distance ``-inf``, or ``+inf`` for l2).
    """
    if probes is None:
        probes = probe(queries, centroids, metric, nprobe)
    order = None if is_grouped(probes[:, 0]) else torch.argsort(probes[:, 0], stable=True)
    if order is not None:  # group the queries by best list: pass 1 then reads contiguous slices
        queries, probes = queries.index_select(0, order), probes.index_select(0, order)
    scores, rows = scan_first_probe(queries, probes[:, 0], lists, offsets, half_sq_norms, k)
    if probes.shape[1] > 1:
        extra = scan_other_probes(queries, probes[:, 1:], scores[:, -1], lists, offsets, half_sq_norms)
        scores, rows = merge_topk(scores, rows, *extra)
    if metric == "l2":  # ‖q‖² − 2 (q·x − ½‖x‖²), clamped at 0 against rounding; padding becomes +inf
        scores = ((queries * queries).sum(dim=1, keepdim=True) - 2 * scores).clamp_min_(0)
    indices = torch.where(rows >= 0, list_ids[rows.clamp_min(0)], -1)
    if order is None:
        return scores, indices
    distances, unsorted = torch.empty_like(scores), torch.empty_like(indices)
    distances[order], unsorted[order] = scores, indices
    return distances, unsorted


class QueryBlock(NamedTuple):
    """A block of stored points searched as queries: ``vectors (B, D)`` and their cached ``probes (B, P)``."""

    vectors: torch.Tensor
    probes: torch.Tensor | None


class TorchIVFIndex(NeighborIndex):
    """``IVF{nlist},Flat`` in torch, on the features' device. See :mod:`robustlabels.neighbors.torch_ivf`.

    On CPU with ``threads`` > 1 (default: torch's thread count) each query block is cut into ``threads``
    slices searched by as many Python threads, every torch op single-threaded. The search is thousands of
    small ops (a few per list); parallelising inside each op makes every op wait for all threads, which on a
    busy machine (another job on the cores) made the search 15x slower than on one thread. Slices share
    nothing but the index, need no synchronisation until they are joined, and torch ops release the GIL.

    Attributes: ``factory`` (``"IVF{nlist},Flat"``), ``nlist``, ``nprobe``, ``centroids (nlist, D)``,
    ``list_sizes (nlist,)``.
    """

    backend = "torch"

    def __init__(
        self,
        features: Any,
        *,
        metric: str,
        nlist: int,
        nprobe: int | None = None,
        threads: int | None = None,
        block_size: int | None = None,
        memory_budget: int = DEFAULT_MEMORY_BUDGET,
        seed: int = 0,
    ) -> None:
        features = as_tensor(features)
        if not 1 <= nlist <= len(features):
            raise InputError(f"`index` 'IVF{nlist}' needs 1 <= nlist <= ntotal = {len(features)}")
        self.nlist, self.nprobe, self.threads = nlist, min(nlist, nprobe or default_nprobe(nlist)), threads
        self.factory = f"IVF{nlist},Flat"
        with torch_threads(threads), torch.no_grad():
            self.centroids = kmeans(train_sample(features, nlist, metric, seed), nlist, spherical=metric == "cosine",
                                    iterations=KMEANS_ITERATIONS, seed=seed)  # fmt: skip
            point_probes = probe(features, self.centroids, metric, self.nprobe)  # its list is its first probe
            self.list_ids = torch.argsort(point_probes[:, 0], stable=True)  # stored row -> original id
            lists = sorted_by_list(features, self.list_ids, metric)
        self.list_sizes = torch.bincount(point_probes[:, 0], minlength=nlist)
        self._offsets = [0, *torch.cumsum(self.list_sizes, 0).tolist()]
        self._stored_probes = point_probes.index_select(0, self.list_ids)  # (N, nprobe), for search(None)
        self._half_sq_norms = 0.5 * (lists * lists).sum(dim=1) if metric == "l2" else None
        if block_size is None:  # per query: its vector, its probes and the (nprobe, k) candidate buffers
            per_query = 4 * lists.shape[1] + self.nprobe * (12 * K_HINT + 24)
            block_size = max(1, int(memory_budget) // per_query)
        super().__init__(lists, metric=metric, block_size=block_size)

    @property
    def device(self) -> torch.device:
        """Device holding the stored points."""
        return self._points.device

    def _indexed_blocks(self) -> Iterator[tuple[np.ndarray, QueryBlock]]:
        """Stored points in stored (list) order, so each block is already grouped by list and needs no probing."""
        cached = self._stored_probes.shape[1] >= self.nprobe  # a larger nprobe set after building: re-probe
        for start in range(0, self.ntotal, self.block_size):
            stop = min(start + self.block_size, self.ntotal)
            probes = self._stored_probes[start:stop, : self.nprobe] if cached else None
            yield self.list_ids[start:stop].cpu().numpy(), QueryBlock(self._points[start:stop], probes)

    def _prepare_queries(self, queries: Any) -> torch.Tensor:
        return prepare_tensor(as_tensor(queries, self.device), self.metric)

    def _search_block(self, queries: torch.Tensor | QueryBlock, k: int) -> tuple[np.ndarray, np.ndarray]:
        vectors, probes = queries if isinstance(queries, QueryBlock) else (queries, None)
        workers = 1 if vectors.is_cuda else (self.threads or torch.get_num_threads())
        if workers == 1:
            with torch_threads(self.threads):
                distances, indices = self._search_part(vectors, probes, k)
        else:  # one query slice per Python thread, each op single-threaded: see the class docstring
            probe_parts = [None] * workers if probes is None else probes.tensor_split(workers)
            slices = [(v, p) for v, p in zip(vectors.tensor_split(workers), probe_parts, strict=True) if len(v)]
            with torch_threads(1), ThreadPoolExecutor(workers) as pool:
                parts = list(pool.map(lambda part: self._search_part(part[0], part[1], k), slices))
            distances, indices = (torch.cat(p) for p in zip(*parts, strict=True))
        return distances.cpu().numpy(), indices.cpu().numpy()

    def _search_part(
        self, vectors: torch.Tensor, probes: torch.Tensor | None, k: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():  # grad mode is per thread
            return ivf_search(
                vectors, k, centroids=self.centroids, lists=self._points, offsets=self._offsets,
                list_ids=self.list_ids, metric=self.metric, nprobe=self.nprobe, half_sq_norms=self._half_sq_norms,
                probes=probes,
            )  # fmt: skip
