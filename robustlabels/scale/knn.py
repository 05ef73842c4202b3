"""Sharded cosine k-NN with FAISS: IVF shards built independently and merged on disk, or exact flat shards.

The all-vs-all graph of N points is built without holding an ``(N, D)`` or ``(N, k)`` array in one process:

1. :func:`train_ivf` trains the coarse quantizer of ``IVF{nlist},Flat`` (inner product on unit rows = cosine) on
   a seeded sample and returns the empty index, serialised;
2. :func:`add_shard` adds one shard's rows under their global ids into a copy and writes it (one task per shard);
3. :func:`merge_shards` merges the shards' inverted lists into one memory-mapped index with
   ``faiss.contrib.ondisk.merge_ondisk`` (the lists live in an ``.ivfdata`` file, read through the page cache);
4. :func:`search_ivf_shard` searches one shard's rows against the merged index with
   ``faiss.contrib.big_batch_search`` (queries bucketed per inverted list, each bucket one BLAS product: the
   cluster-major search of :mod:`robustlabels.neighbors.torch_ivf`, here per shard);
5. :func:`search_flat_shard` is the exact alternative: one shard's queries against every shard in turn, the
   partial top-k lists merged in a ``faiss.ResultHeap`` (the ``IndexShards`` pattern); exact, ``O(N²D)``.

Every search returns cosine similarities descending and global ids, own row excluded, as
``robustlabels.neighbors`` does (``search(None, k, exclude_self=True)``). Tested in ``tests/scale/test_ray_audit.py``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from robustlabels.io import atomic_open, load_npy
from robustlabels.neighbors.base import drop_self, normalize_rows
from robustlabels.neighbors.faiss_index import TRAIN_POINTS_PER_CENTROID, import_faiss
from robustlabels.neighbors.policy import torch_ivf_size
from robustlabels.scale.shards import Shard

FLAT_BELOW = 100_000  # points: exact flat shards below, IVF above (the audit's own rule, neighbors.policy)


def choose_ivf(n: int, nlist: int | None = None, nprobe: int | None = None) -> tuple[int, int]:
    """``(nlist, nprobe)``: the local audit's cluster-major IVF rule (``√N`` lists, ``nprobe`` 6 from 100k points;
    :func:`robustlabels.neighbors.policy.torch_ivf_size`) unless given."""
    rule_nlist, rule_nprobe = torch_ivf_size(n)
    nlist = nlist or rule_nlist
    return nlist, min(nlist, nprobe or rule_nprobe)


def unit_rows(shard: Shard) -> np.ndarray:
    """The shard's rows as float32 unit vectors (cosine = inner product)."""
    x = shard.read(np.float32)
    return normalize_rows(x, out=x)


def training_sample(shards: list[Shard], nlist: int, seed: int) -> np.ndarray:
    """A seeded sample of ``64 nlist`` unit rows (at least 10,000, at most N), read shard by shard."""
    n = shards[-1].first + shards[-1].rows
    size = min(n, max(TRAIN_POINTS_PER_CENTROID * nlist, 10_000))
    rows = np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))
    parts = []
    for shard in shards:
        local = rows[(rows >= shard.first) & (rows < shard.first + shard.rows)] - shard.first + shard.start
        if local.size:
            block = np.asarray(load_npy(shard.path, what="shard", mmap=True)[local], dtype=np.float32)
            parts.append(normalize_rows(block, out=block))
    return np.ascontiguousarray(np.concatenate(parts))


def train_ivf(sample: np.ndarray, nlist: int, *, seed: int = 0) -> bytes:
    """The empty ``IVF{nlist},Flat`` inner-product index trained on ``(S, D)`` unit ``sample``, serialised."""
    faiss = import_faiss()
    index = faiss.index_factory(sample.shape[1], f"IVF{nlist},Flat", faiss.METRIC_INNER_PRODUCT)
    faiss.extract_index_ivf(index).cp.seed = seed
    index.train(sample)
    return bytes(faiss.serialize_index(index))


def _deserialize(blob: bytes) -> Any:
    faiss = import_faiss()
    return faiss.deserialize_index(np.frombuffer(blob, dtype=np.uint8))


def _write_index(index: Any, path: str | Path) -> Path:
    """Write a faiss index atomically (a retried task replaces the file, never leaves half of one)."""
    faiss = import_faiss()
    with atomic_open(path, "wb") as handle:
        handle.write(faiss.serialize_index(index).tobytes())
    return Path(path)


def add_shard(trained: bytes, shard: Shard, path: str | Path) -> Path:
    """Add the shard's unit rows under their global ids to a copy of the trained index; write it to ``path``."""
    index = _deserialize(trained)
    index.add_with_ids(unit_rows(shard), shard.ids)
    return _write_index(index, path)


def merge_shards(trained: bytes, shard_paths: list[str], index_path: str | Path) -> Path:
    """Merge the shard indexes into ``index_path`` (its inverted lists in ``index_path`` + ``.ivfdata``, mmap)."""
    from faiss.contrib.ondisk import merge_ondisk

    index = _deserialize(trained)
    merge_ondisk(index, [str(p) for p in shard_paths], f"{index_path}.ivfdata")
    faiss = import_faiss()
    faiss.write_index(index, str(index_path))  # names the .ivfdata file by its path
    return Path(index_path)


def search_ivf_shard(index_path: str | Path, shard: Shard, k: int, *, nprobe: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest other points of each of the shard's rows in the merged index: ``(R, k)`` similarities
    (descending) and global ids (``-1``-padded where fewer were found)."""
    from faiss.contrib.big_batch_search import big_batch_search

    faiss = import_faiss()
    index = faiss.read_index(str(index_path))
    index.nprobe = nprobe
    sims, idx = big_batch_search(index, unit_rows(shard), k + 1)
    return drop_self(sims.astype(np.float32), idx.astype(np.int64), shard.ids)


def search_flat_shard(shards: list[Shard], query: Shard, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact: the shard's rows against every shard, partial top-``k`` lists merged in a heap (own row dropped)."""
    faiss = import_faiss()
    queries = unit_rows(query)
    heap = faiss.ResultHeap(len(queries), k + 1, keep_max=True)
    for base in shards:
        points = unit_rows(base)
        sims, local = faiss.knn(queries, points, min(k + 1, base.rows), metric=faiss.METRIC_INNER_PRODUCT)
        ids = np.where(local >= 0, local + base.first, -1)
        if sims.shape[1] < k + 1:  # a shard smaller than k + 1 rows: pad its list
            pad = k + 1 - sims.shape[1]
            sims = np.pad(sims, ((0, 0), (0, pad)), constant_values=-math.inf)
            ids = np.pad(ids, ((0, 0), (0, pad)), constant_values=-1)
        heap.add_result(np.ascontiguousarray(sims, dtype=np.float32), np.ascontiguousarray(ids, dtype=np.int64))
    heap.finalize()
    return drop_self(heap.D.astype(np.float32), heap.I.astype(np.int64), query.ids)


def recall_at(found: np.ndarray, exact: np.ndarray) -> float:
    """Mean fraction of each row's exact ``k`` neighbours that ``found`` ``(Q, k)`` lists too."""
    hits = sum(len(np.intersect1d(f[f >= 0], e)) for f, e in zip(found, exact, strict=True))
    return hits / exact.size
