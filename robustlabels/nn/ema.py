"""Weight-averaged (EMA) copies of networks, as ELR+ and mean-teacher methods keep them."""

from __future__ import annotations

import copy
import math

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


def weight_average(net: nn.Module) -> nn.Module:
    """A frozen copy of ``net`` (``requires_grad=False``, so optimizers and DDP leave it alone) to average into.

    Only parameters are averaged (:func:`update_average`); buffers (BatchNorm statistics) are the copy's own,
    updated by its own forward passes in training mode, as in the official ELR+ code.
    """
    average = copy.deepcopy(net)
    average.requires_grad_(False)
    return average


@torch.no_grad()
def update_average(average: nn.Module, net: nn.Module, decay: float) -> None:
    """Move every parameter of ``average`` towards ``net``'s: ``θ̄ ← decay·θ̄ + (1 − decay)·θ``."""
    averaged: list[Tensor] = list(average.parameters())
    torch._foreach_lerp_(averaged, [p.detach() for p in net.parameters()], 1.0 - decay)
