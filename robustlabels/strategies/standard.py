"""Baselines: plain cross-entropy on the noisy labels, and the clean-label Oracle."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from robustlabels.errors import InputError
from robustlabels.strategies.base import STRATEGIES, Strategy
from robustlabels.types import Batch, Forward, StepResult


@STRATEGIES.register("cross_entropy")
class CrossEntropy(Strategy):
    """Standard training: mean cross-entropy against the given (noisy) labels. The baseline."""

    def __init__(self, *, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.label_smoothing = label_smoothing

    def compute_loss(self, batch: Batch, out: Forward) -> StepResult:
        logits = out.logits[0].float()  # fp32 loss under bf16 autocast
        return StepResult(F.cross_entropy(logits, batch.targets, label_smoothing=self.label_smoothing))


def masked_mean(values: Tensor, keep: Tensor) -> Tensor:
    """Mean of ``values`` ``(B,)`` over the ``keep`` mask; an all-False mask gives a zero with a gradient."""
    keep = keep.to(values.dtype)
    return (values * keep).sum() / keep.sum().clamp_min(1.0)


@STRATEGIES.register("oracle")
class Oracle(Strategy):
    """Cross-entropy on only the samples whose given label equals the true label.

    A benchmark upper bound, not a method: it reads ``clean_targets``, which no real strategy may.
    Reference: the "Oracle" baseline of Adaptive-k (Dedeoglu et al., 2022).
    """

    uses_clean_labels = True

    def compute_loss(self, batch: Batch, out: Forward) -> StepResult:
        if bool((batch.clean_targets < 0).any()):
            raise InputError("strategy Oracle needs the true labels, but this dataset has none (clean_targets=-1)")
        keep = batch.targets == batch.clean_targets
        per_sample = F.cross_entropy(out.logits[0].float(), batch.targets, reduction="none")
        return StepResult(masked_mean(per_sample, keep), {"keep_frac": keep.float().mean()})
