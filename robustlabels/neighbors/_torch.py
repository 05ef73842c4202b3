"""Torch helpers shared by the exact index (:mod:`.torch_index`) and the IVF index (:mod:`.torch_ivf`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from robustlabels.neighbors.base import is_tensor

DEFAULT_MEMORY_BUDGET = 256 * 2**20  # bytes of working memory per query block


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
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
