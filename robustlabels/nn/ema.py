"""Weight-averaged (EMA) copies of networks, as ELR+ and mean-teacher methods keep them."""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable

import torch
from torch import Tensor, nn


def sigmoid_rampup(step: float, length: float) -> float:
    """``exp(−5 (1 − min(step, T)/T)²)`` rising from ``e^{-5}`` to 1 over ``T = length`` steps; 1 if ``T = 0``.

    Reference: Laine & Aila, "Temporal Ensembling for Semi-Supervised Learning", ICLR 2017; as in ELR+.
    """
    if length <= 0:
        return 1.0
    phase = 1.0 - min(max(step, 0.0), length) / length
    return math.exp(-5.0 * phase * phase)


def ema_decay(step: int, *, max_decay: float, rampup_steps: int) -> float:
    """Decay of the weight average after optimisation step ``step`` (counted from 1), as ELR+ sets it.

    ``rampup_steps > 0`` (ELR+'s ``ema_update``): ``sigmoid_rampup(step + 1, rampup_steps) · max_decay``.
    ``rampup_steps == 0``: ``min(1 − 1/(step + 1), max_decay)``, the true average of the weights seen so far
    until the exponential average takes over (Tarvainen & Valpola, NeurIPS 2017).
    """
    if rampup_steps > 0:
        return sigmoid_rampup(step + 1, rampup_steps) * max_decay
    return min(1.0 - 1.0 / (step + 1), max_decay)


class WeightAverage(nn.Module):
    """Frozen copies of ``nets`` whose parameters follow ``θ̄ ← d·θ̄ + (1 − d)·θ`` after each step.

    Only the parameters are averaged. Buffers (BatchNorm statistics) are each copy's own: they are updated
    by the copy's own forward passes in training mode, as in the official ELR+ code. The copies take no
    gradients (``requires_grad=False``), so optimizers and DDP leave them alone, and they are saved in
    checkpoints with the module that owns them.

    Args:
        nets: the networks to follow; each copy starts from its network's current weights.
        channels_last: feed 4-D inputs in NHWC layout (as ``RobustModule(channels_last=True)`` does).
    """

    def __init__(self, nets: Iterable[nn.Module], *, channels_last: bool = False) -> None:
        super().__init__()
        self.copies = nn.ModuleList(copy.deepcopy(net) for net in nets)
        self.copies.requires_grad_(False)
        self.channels_last = channels_last

    @torch.no_grad()
    def update(self, nets: Iterable[nn.Module], decay: float) -> None:
        """Move every copy towards its network: ``θ̄ ← decay·θ̄ + (1 − decay)·θ``."""
        for average, net in zip(self.copies, nets, strict=True):
            averaged: list[Tensor] = list(average.parameters())
            current = [p.detach() for p in net.parameters()]
            torch._foreach_lerp_(averaged, current, 1.0 - decay)

    @torch.no_grad()
    def logits(self, i: int, inputs: Tensor) -> Tensor:
        """``(B, C)`` logits of copy ``i`` on ``inputs (B, ...)``, without gradients, in the current mode."""
        if self.channels_last and inputs.dim() == 4:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        return self.copies[i](inputs)
