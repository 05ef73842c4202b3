"""Noise-robust loss functions: generalized cross-entropy (GCE) and symmetric cross-entropy (SCE)."""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor

from robustlabels.errors import check_interval
from robustlabels.strategies.base import STRATEGIES, Strategy
from robustlabels.types import Batch, Forward, StepResult


def gce_loss(logits: Tensor, targets: Tensor, q: float) -> Tensor:
    """``mean (1 − p_y^q) / q`` for ``logits (B, C)``; q → 0 gives CE, q = 1 gives MAE."""
    p_y = F.softmax(logits.float(), dim=1).gather(1, targets.view(-1, 1)).squeeze(1)
    return ((1.0 - p_y.clamp_min(1e-7).pow(q)) / q).mean()


def sce_loss(logits: Tensor, targets: Tensor, alpha: float, beta: float, log_zero: float = math.log(1e-4)) -> Tensor:
    """``α·CE + β·RCE``, with reverse CE ``−Σ_k p_k log q_k`` against the one-hot label clamped to 1e-4.

    With that clamp RCE reduces to ``−log(1e-4) · (1 − p_y)``.
    """
    logits = logits.float()
    p = F.softmax(logits, dim=1).clamp(1e-7, 1.0)
    rce = -log_zero * (1.0 - p.gather(1, targets.view(-1, 1)).squeeze(1))
    return alpha * F.cross_entropy(logits, targets) + beta * rce.mean()


@STRATEGIES.register("gce")
class GCE(Strategy):
    """Generalized cross-entropy, ``(1 − p_y^q) / q``.

    Reference: Zhang & Sabuncu, "Generalized Cross Entropy Loss for Training Deep Neural Networks with Noisy
    Labels", NeurIPS 2018 (q = 0.7).
    """

    def __init__(self, *, q: float = 0.7) -> None:
        super().__init__()
        self.q = check_interval("q", q, low=0.0, high=1.0, closed="right")

    def compute_loss(self, batch: Batch, out: Forward) -> StepResult:
        return StepResult(gce_loss(out.logits[0], batch.targets, self.q))


@STRATEGIES.register("sce")
class SCE(Strategy):
    """Symmetric cross-entropy, ``α·CE + β·RCE``.

    Reference: Wang et al., "Symmetric Cross Entropy for Robust Learning with Noisy Labels", ICCV 2019
    (CIFAR-10: α = 0.1, β = 1.0; CIFAR-100: α = 6.0, β = 0.1).
    """

    def __init__(self, *, alpha: float = 0.1, beta: float = 1.0) -> None:
        super().__init__()
        self.alpha, self.beta = alpha, beta

    def compute_loss(self, batch: Batch, out: Forward) -> StepResult:
        return StepResult(sce_loss(out.logits[0], batch.targets, self.alpha, self.beta))


