"""Keeping per-sample state correct under DDP (docs/distributed.md; design: scale.md §3.2).

Every rank applies every rank's updates to a *replicated* buffer (:func:`gather_unique_rows`), batch statistics
that feed a shared threshold are averaged over the global batch (:func:`global_mean`), and what one rank decides
for all (a curriculum order, an estimate) comes from rank 0 (:func:`broadcast_from_rank0`). The sampling side,
how an epoch's order is cut into per-rank batches whose union is one global batch, is :func:`rank_positions`
(replicated state) and :func:`owned_positions` (rank-affine: each rank keeps only its own rows).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist
from torch import Tensor, nn


def world_size() -> int:
    """Processes in the default process group; 1 outside DDP."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def world() -> tuple[int, int]:
    """``(rank, world_size)`` of the default process group; ``(0, 1)`` outside DDP."""
    size = world_size()
    return (dist.get_rank() if size > 1 else 0), size


def gather_rows(index: Tensor, rows: Tensor) -> tuple[Tensor, Tensor]:
    """All-gather ``index (B,)`` and ``rows (B, ...)`` from every rank (no gradients), in rank order.

    Batches may differ in size across ranks (the last batch), so each rank pads to the largest size and
    the padding is dropped after the gather. Outside DDP this returns its inputs unchanged.
    """
    if world_size() == 1:
        return index, rows
    size = world_size()
    sizes = [torch.zeros(1, dtype=torch.long, device=index.device) for _ in range(size)]
    dist.all_gather(sizes, torch.tensor([len(index)], device=index.device))
    longest = int(max(s.item() for s in sizes))
    pad = longest - len(index)
    padded_index = torch.cat([index, index.new_zeros(pad)])
    padded_rows = torch.cat([rows, rows.new_zeros((pad, *rows.shape[1:]))])
    all_index = [torch.empty_like(padded_index) for _ in range(size)]
    all_rows = [torch.empty_like(padded_rows) for _ in range(size)]
    dist.all_gather(all_index, padded_index)
    dist.all_gather(all_rows, padded_rows)
    keep = [slice(0, int(s.item())) for s in sizes]
    return (torch.cat([t[k] for t, k in zip(all_index, keep, strict=True)]),
            torch.cat([t[k] for t, k in zip(all_rows, keep, strict=True)]))  # fmt: skip


def first_occurrence(index: Tensor) -> Tensor:
    """``(B,)`` bool: True at the first occurrence of each value of ``index (B,)``, False at its repeats."""
    order = torch.argsort(index, stable=True)
    ordered = index[order]
    first = torch.ones_like(ordered, dtype=torch.bool)
    first[1:] = ordered[1:] != ordered[:-1]
    return torch.empty_like(first).scatter_(0, order, first)


def gather_unique_rows(index: Tensor, rows: Tensor) -> tuple[Tensor, Tensor]:
    """:func:`gather_rows`, then only the first occurrence of each index (in rank order).

    A global batch repeats a sample when the sampler pads it (``DistributedSampler`` repeats up to ``W − 1``
    samples) and ``index_copy_`` with a repeated index leaves either row, undefined: one update per index per
    step, the same on every rank. Called outside DDP it de-duplicates the local batch alike.
    """
    index, rows = gather_rows(index, rows)
    keep = first_occurrence(index)
    return index[keep], rows[keep]


def global_mean(values: Tensor) -> Tensor:
    """The mean of ``values (B,)`` over the global batch (every rank's values), as a float64 scalar.

    Ranks may hold different batch sizes, so sums and counts are all-reduced, not the local means.
    """
    total = torch.stack([values.detach().double().sum(), values.new_tensor(len(values), dtype=torch.float64)])
    if world_size() > 1:
        dist.all_reduce(total)
    return total[0] / total[1]


def broadcast_from_rank0(value: Tensor) -> Tensor:
    """Rank 0's ``value`` on every rank (same shape and dtype everywhere); the input itself outside DDP."""
    if world_size() > 1:
        value = value.clone()
        dist.broadcast(value, src=0)
    return value


def replicas_agree(value: Tensor) -> bool:
    """Whether every rank holds the same ``value`` (compared through a float64 checksum of its bytes' values)."""
    if world_size() == 1:
        return True
    flat = value.detach().double().flatten()
    weights = torch.arange(1, len(flat) + 1, dtype=torch.float64, device=flat.device)
    check = torch.stack([(flat * weights).sum(), flat.sum()]).nan_to_num(nan=-1.0)
    low, high = check.clone(), check.clone()
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    return bool(torch.equal(low, high))


# ---- which buffers DDP must leave alone --------------------------------------------------------------------
def ddp_exempt_names(module: nn.Module) -> list[str]:
    """Qualified names of what submodules declare in ``ddp_exempt`` (a class attribute): buffers, or submodules
    whose parameters and buffers all count (STORM's Ω, whose gradient is averaged by hand).

    DDP broadcasts every buffer from rank 0 before each forward (``broadcast_buffers``): for an ``N × C`` buffer
    that is ``N·C`` values a step (9.6 GB for WebVision's ELR targets), it hides a rank that skipped the other
    ranks' updates, and it overwrites the rows a rank owns under rank-affine sharding. These buffers are kept
    correct by the gathers above instead; the module lists them in ``_ddp_params_and_buffers_to_ignore``.
    """
    names = []
    for prefix, sub in module.named_modules():
        for name in getattr(sub, "ddp_exempt", ()):
            qualified = f"{prefix}.{name}" if prefix else name
            part = getattr(sub, name)
            if isinstance(part, nn.Module):
                names += [f"{qualified}.{n}" for n, _ in (*part.named_parameters(), *part.named_buffers())]
            else:
                names.append(qualified)
    return names


def average_gradients(params: Sequence[Tensor]) -> None:
    """Average the ``.grad`` of ``params`` over the ranks in place (one all-reduce), for parameters that DDP
    does not see; nothing outside DDP."""
    grads = [p.grad for p in params if p.grad is not None]
    if world_size() == 1 or not grads:
        return
    flat = torch.cat([g.flatten() for g in grads])
    dist.all_reduce(flat)
    flat /= world_size()
    for grad, part in zip(grads, flat.split([g.numel() for g in grads]), strict=True):
        grad.copy_(part.view_as(grad))


# ---- sampling: an epoch's order -> this rank's positions ---------------------------------------------------
def rank_positions(order: Sequence[int], *, batch_size: int, rank: int, world_size: int,
                   drop_last: bool) -> list[int]:  # fmt: skip
    """This rank's positions of an epoch that visits ``order`` (N positions) in global batches of ``B·W``.

    Rank ``r`` takes every ``W``-th position from ``r`` (as ``DistributedSampler``), so the union of the ranks'
    ``j``-th batches of ``B`` is ``order[j·B·W : (j + 1)·B·W]``: the batch a single process with batch ``B·W``
    sees. ``drop_last`` drops the incomplete last global batch. Otherwise the order is padded to a multiple of
    ``W`` (every rank runs the same number of steps) by repeating the first positions of the *last* global batch
    (``DistributedSampler`` repeats the epoch's first, which a step of their own then updates twice): the repeats
    fall into the step of their originals, where :func:`gather_unique_rows` drops them, so every position is
    updated once per epoch. The repeated samples still count twice in that step's loss (at most ``W − 1``).
    """
    order = list(order)
    step = batch_size * world_size
    if drop_last:
        order = order[: len(order) // step * step]
    elif len(order) % world_size:
        last = (len(order) - 1) // step * step
        tail = order[last:]
        order += [tail[j % len(tail)] for j in range(world_size - len(order) % world_size)]
    return order[rank::world_size]


def owned_positions(order: Sequence[int], *, rank: int, world_size: int, size: int) -> list[int]:
    """Rank-affine sampling: the positions ``p`` with ``p % W == rank``, in the order they have in ``order``.

    Each rank visits only the samples it owns, every epoch, so a per-sample buffer can keep only those rows
    (row ``p // W``; :func:`owned_rows`). Ranks own ``⌈N/W⌉`` or ``⌊N/W⌋`` samples; the shorter ones repeat their
    own last position so that every rank runs the same number of steps (the repeat is in its last batch,
    de-duplicated locally). With ``W = 1`` this is ``order`` itself.
    """
    mine = [p for p in order if p % world_size == rank]
    longest = -(-size // world_size)
    return mine + mine[-1:] * (longest - len(mine))


def owned_rows(size: int, world_size: int) -> int:
    """Rows a rank stores under rank-affine sharding: ``⌈N / W⌉``."""
    return -(-size // world_size)
