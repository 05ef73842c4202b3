"""Exact k-NN by blockwise matrix product and ``torch.topk``: the test oracle, and the GPU path for CUDA features.

Memory stays bounded: each block of queries forms one ``(block, N)`` similarity matrix, with ``block`` sized
from ``memory_budget`` bytes; no ``N x N`` matrix is ever formed.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

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


def _as_tensor(x: Any, device: torch.device | None = None) -> torch.Tensor:
    t = x if is_tensor(x) else torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    t = t.detach().to(dtype=torch.float32, device=device)
    return t.contiguous()


def _prepare(x: torch.Tensor, metric: str) -> torch.Tensor:
    if metric == "cosine":
        return torch.nn.functional.normalize(x, dim=1, eps=1e-12)
    return x


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
    ) -> None:
        points = _prepare(_as_tensor(features), metric)
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
        return _prepare(_as_tensor(queries, self.device), self.metric)

    def _search_block(self, queries: torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
        with torch_threads(self.threads), torch.no_grad():
            scores = queries @ self._points.T
            if self.metric == "l2":  # ||q||^2 - 2 q.x + ||x||^2, clamped at 0 against rounding
                scores = ((queries * queries).sum(dim=1, keepdim=True) - 2 * scores + self._sq_norms).clamp_min_(0)
            values, idx = torch.topk(scores, k, dim=1, largest=self.metric != "l2", sorted=True)
        return values.cpu().numpy().astype(np.float32, copy=False), idx.cpu().numpy().astype(np.int64, copy=False)


def build_torch(features: Any, *, metric: str, **options: Any) -> TorchIndex:
    """Validate ``features`` and return a :class:`TorchIndex`."""
    features = as_array_like(features, name="features")
    check_shape(features, name="features")
    check_finite(features, name="features")
    return TorchIndex(features, metric=metric, **options)
