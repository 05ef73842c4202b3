"""Keeping per-sample state correct under DDP: every rank applies every rank's updates."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor


def gather_rows(index: Tensor, rows: Tensor) -> tuple[Tensor, Tensor]:
    """All-gather ``index (B,)`` and ``rows (B, ...)`` from every rank (no gradients).

    Batches may differ in size across ranks (the last batch), so each rank pads to the largest size and
    the padding is dropped after the gather. Outside DDP this returns its inputs unchanged.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return index, rows
    world = dist.get_world_size()
    sizes = [torch.zeros(1, dtype=torch.long, device=index.device) for _ in range(world)]
    dist.all_gather(sizes, torch.tensor([len(index)], device=index.device))
    longest = int(max(s.item() for s in sizes))
    pad = longest - len(index)
    padded_index = torch.cat([index, index.new_zeros(pad)])
    padded_rows = torch.cat([rows, rows.new_zeros((pad, *rows.shape[1:]))])
    all_index = [torch.empty_like(padded_index) for _ in range(world)]
    all_rows = [torch.empty_like(padded_rows) for _ in range(world)]
    dist.all_gather(all_index, padded_index)
    dist.all_gather(all_rows, padded_rows)
    keep = [slice(0, int(s.item())) for s in sizes]
    return (torch.cat([t[k] for t, k in zip(all_index, keep, strict=True)]),
            torch.cat([t[k] for t, k in zip(all_rows, keep, strict=True)]))  # fmt: skip
