"""Exact k-NN by blockwise matrix product and ``torch.topk``: the test oracle, and the GPU path for CUDA features.

Memory stays bounded: each block of queries forms one ``(block, N)`` similarity matrix, with ``block`` sized
from ``memory_budget`` bytes; no ``N x N`` matrix is ever formed.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from robustlabels.errors import InputError
from robustlabels.neighbors.base import NeighborIndex, as_array_like, check_finite, check_shape, is_tensor

DEFAULT_MEMORY_BUDGET = 256 * 2**20


@contextmanager
def torch_threads(threads: int | None):
    """Run the body with ``torch.set_num_threads(threads)``, restoring the previous value after."""
    if threads is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def as_tensor(x: Any, device: torch.device | None = None) -> torch.Tensor:
    """``x`` as a float32 contiguous tensor on ``device`` (no copy when it already is one)."""
    t = x if is_tensor(x) else torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    t = t.detach().to(dtype=torch.float32, device=device)
    return t.contiguous()


def prepare_tensor(x: torch.Tensor, metric: str, *, inplace: bool = False) -> torch.Tensor:
    """The metric's preprocessing: cosine L2-normalises rows (a copy, or ``x`` in place); ip and l2 return ``x``."""
    if metric != "cosine":
        return x
    if inplace:
        return x.div_(torch.linalg.vector_norm(x, dim=1, keepdim=True).clamp_min_(1e-12))
    return torch.nn.functional.normalize(x, dim=1, eps=1e-12)


class TorchIndex(NeighborIndex):
    """Exact search in torch on the features' device (CPU or CUDA). See :mod:`robustlabels.neighbors.base`."""

    backend = "torch"

    def __init__(
        self,
        features: Any,
        *,
        metric: str,
        threads: int | None = None,
        block_size: int | None = None,
        memory_budget: int = DEFAULT_MEMORY_BUDGET,
        copy: bool = True,
    ) -> None:
        points = prepare_tensor(as_tensor(features), metric, inplace=not copy)
        if block_size is None:  # one (block, N) float32 matrix (plus topk's copy) fits the budget
            block_size = max(1, int(memory_budget) // (8 * max(1, points.shape[0])))
        super().__init__(points, metric=metric, block_size=block_size)
        self.threads = threads
        self._sq_norms = (points * points).sum(dim=1) if metric == "l2" else None

    @property
    def device(self) -> torch.device:
        """Device holding the indexed points."""
        return self._points.device

    def _prepare_queries(self, queries: Any) -> torch.Tensor:
        return prepare_tensor(as_tensor(queries, self.device), self.metric)

    def _search_block(self, queries: torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
        with torch_threads(self.threads), torch.no_grad():
            scores = queries @ self._points.T
            if self.metric == "l2":  # ||q||^2 - 2 q.x + ||x||^2, clamped at 0 against rounding
                scores = ((queries * queries).sum(dim=1, keepdim=True) - 2 * scores + self._sq_norms).clamp_min_(0)
            values, idx = torch.topk(scores, k, dim=1, largest=self.metric != "l2", sorted=True)
        return values.cpu().numpy().astype(np.float32, copy=False), idx.cpu().numpy().astype(np.int64, copy=False)


def build_torch(
    features: Any, *, metric: str, index: str = "auto", nprobe: int | None = None, seed: int = 0, **options: Any
) -> NeighborIndex:
    """Validate ``features`` and return a :class:`TorchIndex` (``"auto"``, ``"Flat"``) or a ``TorchIVFIndex``."""
    from robustlabels.neighbors.torch_ivf import TorchIVFIndex, parse_ivf

    nlist = None if index in ("auto", "Flat") else parse_ivf(index)
    if index not in ("auto", "Flat") and nlist is None:
        raise InputError(f"`index` must be 'auto', 'Flat', 'IVF{{n}}' or 'IVF{{n}},Flat' with backend='torch' "
                         f"(other FAISS factory strings need backend='faiss'); got {index!r}")  # fmt: skip
    features = as_array_like(features, name="features")
    check_shape(features, name="features")
    check_finite(features, name="features")
    if nlist is None:
        return TorchIndex(features, metric=metric, **options)
    options.pop("copy", None)  # the IVF index stores its own list-sorted copy either way
    return TorchIVFIndex(features, metric=metric, nlist=nlist, nprobe=nprobe, seed=seed, **options)
