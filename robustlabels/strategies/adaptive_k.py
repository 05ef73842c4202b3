"""Adaptive-k and its small-loss baselines: trimmed loss (ITLM) and MKL-SGD.

All three train on a subset of low-loss samples of each mini-batch; they differ in how many they keep.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from robustlabels.distributed import global_mean
from robustlabels.errors import InputError, check_interval
from robustlabels.strategies.base import STRATEGIES, Strategy
from robustlabels.strategies.standard import masked_mean
from robustlabels.types import Batch, Forward, StepResult


def per_sample_ce(out: Forward, batch: Batch) -> Tensor:
    """``(B,)`` fp32 cross-entropy of the first network against the given labels."""
    return F.cross_entropy(out.logits[0].float(), batch.targets, reduction="none")


def adaptive_threshold(
    m: Tensor, v: Tensor, batch_mean: Tensor, *, beta1: float, beta2: float, eps: float
) -> tuple[Tensor, Tensor, Tensor]:
    """One Adam-style moment step on the batch-mean loss, without bias correction.

    Returns:
        ``(m, v, threshold)`` with ``threshold = m / (√v + ε)``, all scalars. For a constant loss the
        threshold is ``(1 − β1^t) / √(1 − β2^t)``: 3.16 at t = 1, 6.5 at t = 10, → 1.
    """
    m = beta1 * m + (1.0 - beta1) * batch_mean
    v = beta2 * v + (1.0 - beta2) * batch_mean * batch_mean
    return m, v, m / (v.sqrt() + eps)


def keep_at_least_one(keep: Tensor, losses: Tensor) -> Tensor:
    """Guard for an empty selection: if ``keep`` is all False, keep the single lowest-loss sample.

    Works without a host sync (no ``.item()``), so it costs nothing on a GPU.
    """
    lowest = torch.zeros_like(keep).scatter_(0, losses.argmin().view(1), True)
    return keep | (lowest & ~keep.any())


@STRATEGIES.register("adaptive_k")
class AdaptiveK(Strategy):
    """Train on the samples whose loss is below an adaptive threshold.

    Plain training on all samples for ``vanilla_epochs``; afterwards each step updates Adam-style
    moments ``m, v`` of the batch-mean loss (no bias correction; zero at the first adaptive step, kept
    across epochs and in checkpoints) and keeps ``{i : ℓ_i ≤ m / (√v + ε)}``. The threshold is scale-free
    and tends to ``E[μ] / √E[μ²] ≤ 1`` nat, as in the official notebook (whether the paper intends this is
    unverified; it is implemented exactly). The notebook re-runs the forward pass on the kept samples; we
    take the masked mean of the same per-sample losses, which is equal up to batch-norm statistics.

    Use the notebook's optimizer (plain SGD, lr 0.05, no momentum): with momentum 0.9 we saw it collapse to
    a single predicted class on Fashion-MNIST, after which only zero-loss samples pass the threshold.

    Departures from the official notebook:
        - the kept samples' loss is the masked mean of the batch's per-sample losses, not a second forward
          pass over the kept samples (equal up to BatchNorm statistics);
        - an empty selection keeps the single lowest-loss sample (:func:`keep_at_least_one`); the notebook has
          no branch for it and would back-propagate the previous batch's loss again, which fails.

    Reference: Dedeoglu, Kesgin & Amasyali, "A Robust Optimization Method for Label Noisy Datasets Based on
    Adaptive Threshold: Adaptive-k", arXiv 2203.14165; code ``enesdedeoglu-TR/Adaptive-k``.
    """

    def __init__(self, *, vanilla_epochs: int = 30, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8):
        super().__init__()
        if vanilla_epochs < 0:
            raise InputError(f"`vanilla_epochs` must be >= 0; got {vanilla_epochs}")
        self.vanilla_epochs = vanilla_epochs
        self.beta1 = check_interval("beta1", beta1, low=0.0, high=1.0, closed="left")
        self.beta2 = check_interval("beta2", beta2, low=0.0, high=1.0, closed="left")
        self.eps = eps
        self.adaptive = vanilla_epochs == 0
        self.m: Tensor
        self.v: Tensor
        self.register_buffer("m", torch.zeros((), dtype=torch.float64))
        self.register_buffer("v", torch.zeros((), dtype=torch.float64))

    def on_train_epoch_start(self, epoch: int) -> None:
        self.adaptive = epoch >= self.vanilla_epochs

    def compute_loss(self, batch: Batch, out: Forward) -> StepResult:
        losses = per_sample_ce(out, batch)
        if not self.adaptive:
            return StepResult(losses.mean(), {"keep_frac": 1.0})
        # under DDP every rank takes the moment step on the global batch's mean: one shared threshold
        batch_mean = global_mean(losses).to(self.m)
        m, v, threshold = adaptive_threshold(self.m, self.v, batch_mean, beta1=self.beta1, beta2=self.beta2,
                                             eps=self.eps)  # fmt: skip
        self.m.copy_(m)
        self.v.copy_(v)
        keep = keep_at_least_one(losses.detach() <= threshold.to(losses.dtype), losses.detach())
        return StepResult(masked_mean(losses, keep), {"threshold": threshold.float(), "keep_frac": keep.float().mean()})


@STRATEGIES.register("trimmed_loss")
class TrimmedLoss(Strategy):
    """Keep the ``⌈keep_fraction · B⌉`` lowest-loss samples of each batch (needs the noise rate).

    Reference: Shen & Sanghavi, "Learning with Bad Training Data via Iterative Trimmed Loss Minimization",
    ICML 2019.
    """

    def __init__(self, *, keep_fraction: float = 0.7) -> None:
        super().__init__()
        self.keep_fraction = check_interval("keep_fraction", keep_fraction, low=0.0, high=1.0, closed="right")

    def compute_loss(self, batch: Batch, out: Forward) -> StepResult:
        losses = per_sample_ce(out, batch)
        num_keep = max(1, math.ceil(self.keep_fraction * len(losses)))
        kept = losses.detach().topk(num_keep, largest=False).indices
        return StepResult(losses[kept].mean(), {"keep_frac": num_keep / len(losses)})


@STRATEGIES.register("mkl_sgd")
class MKLSGD(Strategy):
    """Split the batch at random into groups of ``k`` and train on the lowest-loss sample of each group.

    Reference: Shah, Wu & Sanghavi, "Choosing the Sample with Lowest Loss makes SGD Robust", AISTATS 2020.
    """

    def __init__(self, *, k: int = 2) -> None:
        super().__init__()
        if k < 1:
            raise InputError(f"`k` must be >= 1; got {k}")
        self.k = k

    def compute_loss(self, batch: Batch, out: Forward) -> StepResult:
        losses = per_sample_ce(out, batch)
        k = min(self.k, len(losses))
        groups = torch.randperm(len(losses), device=losses.device)[: len(losses) // k * k].view(-1, k)
        winners = groups.gather(1, losses.detach()[groups].argmin(1, keepdim=True)).squeeze(1)
        return StepResult(losses[winners].mean(), {"keep_frac": len(winners) / len(losses)})
