"""Exact k-NN by blockwise matrix product and ``torch.topk``: the test oracle, and the GPU path for CUDA features.

Memory stays bounded: each block of queries forms one ``(block, N)`` similarity matrix, with ``block`` sized
from ``memory_budget`` bytes; no ``N x N`` matrix is ever formed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from robustlabels.neighbors._torch import DEFAULT_MEMORY_BUDGET, as_tensor, prepare_tensor, torch_threads
from robustlabels.neighbors.base import NeighborIndex, as_array_like, check_finite, check_shape
from robustlabels.neighbors.policy import choose_index, parse_ivf


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
    """Validate ``features`` and return a :class:`TorchIndex` (``"Flat"``) or a ``TorchIVFIndex`` (``"IVF{n}"``);
    ``"auto"`` chooses by :func:`robustlabels.neighbors.policy.choose_index`."""
    from robustlabels.neighbors.torch_ivf import TorchIVFIndex

    features = as_array_like(features, name="features")
    check_shape(features, name="features")
    choice = choose_index(int(features.shape[0]), backend="torch", index=index, nprobe=nprobe)
    check_finite(features, name="features")
    nlist = parse_ivf(choice.factory)
    if nlist is None:
        return TorchIndex(features, metric=metric, **options)
    options.pop("copy", None)  # the IVF index stores its own list-sorted copy either way
    return TorchIVFIndex(features, metric=metric, nlist=nlist, nprobe=choice.nprobe, seed=seed, **options)
