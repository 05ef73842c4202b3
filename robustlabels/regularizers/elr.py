"""ELR: early-learning regularization (Liu et al., "Early-Learning Regularization Prevents Memorization
of Noisy Labels", NeurIPS 2020; official code shengliu66/ELR ``ELR/model/loss.py``)."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from robustlabels.distributed import first_occurrence, gather_unique_rows, owned_rows, world
from robustlabels.errors import InputError, check_interval
from robustlabels.regularizers.base import REGULARIZERS, Regularizer
from robustlabels.types import Batch, Forward

PROB_CLAMP = 1e-4  # keeps log(1 − <t, p>) >= log(1e-4)


def elr_probs(logits: Tensor) -> Tensor:
    """``(B, C)`` fp32 softmax clamped to ``[1e-4, 1 − 1e-4]`` (not renormalised), as in the official code."""
    return F.softmax(logits.float(), dim=1).clamp(PROB_CLAMP, 1.0 - PROB_CLAMP)


def elr_target_update(target_rows: Tensor, probs: Tensor, momentum: float) -> Tensor:
    """EMA step ``t ← β·t + (1 − β)·p̂`` with ``p̂`` the detached, renormalised ``probs``; ``(B, C)``."""
    p_hat = probs.detach()
    p_hat = p_hat / p_hat.sum(1, keepdim=True)
    return torch.lerp(p_hat, target_rows, momentum)  # = β·t + (1 − β)·p̂, one kernel


def elr_term(probs: Tensor, target_rows: Tensor) -> Tensor:
    """``mean_i log(1 − <t_i, p_i>)`` for ``probs, target_rows (B, C)``; gradient flows through ``probs``."""
    return torch.log(1.0 - (target_rows * probs).sum(1)).mean()


@REGULARIZERS.register("elr")
class ELR(Regularizer):
    """Adds ``λ · mean log(1 − <t_i, p_i>)``, pulling predictions towards their early-learning targets.

    The target ``t (N, C)`` starts at zero and is an EMA over each *visit* of a sample (indexed by
    ``batch.index``), updated *before* the term is computed. It is a registered buffer, so it moves with
    the model and is saved in checkpoints. With several networks the term uses their mean logits.
    Under DDP the updates of all ranks are gathered, so every rank holds the same targets; with ``shard_rows``
    each rank holds only the rows of the samples it owns (``index % W == rank``, row ``index // W``), which the
    data module's ``rank_affine`` sampler alone visits: ``⌈N/W⌉ × C`` floats a rank, no communication.

    Args:
        momentum: β, the EMA coefficient (default 0.7, or the preset's).
        weight: λ, the regularization weight (default 3.0, or the preset's).
        preset: the paper's per-dataset (β, λ): ``cifar10_sym`` (0.7, 3), ``cifar10_asym`` (0.9, 1),
            ``cifar100`` (0.9, 7), ``clothing1m`` (0.7, 3), ``webvision`` (0.7, 3).
        shard_rows: keep only this rank's rows under DDP (needs ``data.rank_affine: true``); a checkpoint then
            holds rank 0's rows only, so resuming restores the other ranks' rows from rank 0's (docs/distributed.md).

    Reference: Liu et al., NeurIPS 2020, Eq. (6) and the official configs.
    """

    targets: Tensor
    ddp_exempt = ("targets",)
    PRESETS: ClassVar[dict[str, tuple[float, float]]] = {
        "cifar10_sym": (0.7, 3.0),
        "cifar10_asym": (0.9, 1.0),
        "cifar100": (0.9, 7.0),
        "clothing1m": (0.7, 3.0),
        "webvision": (0.7, 3.0),
    }

    def __init__(self, *, momentum: float | None = None, weight: float | None = None, preset: str | None = None,
                 shard_rows: bool = False) -> None:  # fmt: skip
        super().__init__()
        if preset is not None and preset not in self.PRESETS:
            raise InputError(f"`preset` must be one of {', '.join(self.PRESETS)}; got {preset!r}")
        default_momentum, default_weight = self.PRESETS[preset or "cifar10_sym"]
        self.momentum = check_interval("momentum", default_momentum if momentum is None else momentum,
                                       low=0.0, high=1.0, closed="left")  # fmt: skip
        self.weight = default_weight if weight is None else weight
        self.preset, self.shard_rows = preset, shard_rows
        self.rank, self.world_size = 0, 1  # set by setup with shard_rows
        self.register_buffer("targets", torch.zeros(0, 0))

    def setup(self, *, num_samples: int, num_classes: int) -> None:
        if self.shard_rows:
            self.rank, self.world_size = world()
            num_samples = owned_rows(num_samples, self.world_size)
        if self.targets.shape != (num_samples, num_classes):
            self.targets = torch.zeros(num_samples, num_classes, device=self.targets.device)

    def forward(self, batch: Batch, out: Forward) -> Tensor:
        probs = elr_probs(out.mean_logits())
        with torch.no_grad():
            rows_index = self.own_rows(batch.index) if self.shard_rows else batch.index
            rows = elr_target_update(self.targets.index_select(0, rows_index), probs, self.momentum)
            if self.shard_rows:  # this rank's samples only: nothing to exchange
                first = first_occurrence(rows_index)
                self.targets.index_copy_(0, rows_index[first], rows[first])
            else:
                index_all, rows_all = gather_unique_rows(batch.index, rows)
                self.targets.index_copy_(0, index_all, rows_all)
        return self.weight * elr_term(probs, rows)

    def own_rows(self, index: Tensor) -> Tensor:
        """Rows ``index // W`` of this rank's shard; refuses a sample that another rank owns."""
        if bool((index % self.world_size != self.rank).any()):
            raise InputError(f"ELR(shard_rows=True) on rank {self.rank} of {self.world_size} got samples of another "
                             "rank: train with the data module's `rank_affine: true`")  # fmt: skip
        return index // self.world_size

    def mislabel_scores(self, labels: Tensor) -> Tensor:
        """``(N,)`` in [0, 1]: one minus the target's (normalised) mass on the given label; higher = more suspect.

        Samples never visited (all-zero target) score 0.
        """
        total = self.targets.sum(1).clamp_min(1e-12)
        mass = self.targets.gather(1, labels.view(-1, 1).to(self.targets.device)).squeeze(1) / total
        return torch.where(self.targets.sum(1) > 0, 1.0 - mass, torch.zeros_like(mass))

    def mislabel_flags(self, labels: Tensor) -> Tensor:
        """``(N,)`` bool: ``argmax t_i ≠ ỹ_i``, the ELR README's detection rule (visited samples only)."""
        visited = self.targets.sum(1) > 0
        return visited & (self.targets.argmax(1) != labels.to(self.targets.device))
