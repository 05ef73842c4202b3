"""Core data types shared by data modules, strategies and the module."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
from torch import Tensor


class Batch(NamedTuple):
    """One mini-batch. A NamedTuple so collation and device transfer rebuild it.

    Attributes:
        inputs: ``(B, ...)`` model inputs (uint8 images before normalisation, or float features).
        targets: ``(B,)`` int64 observed, possibly noisy labels. The only labels a loss may use.
        index: ``(B,)`` int64 positions in the training set; keys per-sample state (ELR targets, banks).
        clean_targets: ``(B,)`` int64 true labels, ``-1`` where unknown. Evaluation only, never a loss
            (the ``Oracle`` benchmark baseline is the one declared exception).
    """

    inputs: Tensor
    targets: Tensor
    index: Tensor
    clean_targets: Tensor


@dataclass(frozen=True)
class Forward:
    """Outputs of every network for one batch.

    Attributes:
        features: one ``(B, D)`` pre-logit feature tensor per network.
        logits: one ``(B, C)`` logit tensor per network.
    """

    features: tuple[Tensor, ...]
    logits: tuple[Tensor, ...]

    def mean_logits(self) -> Tensor:
        """``(B, C)`` fp32 mean of the networks' logits: the model's prediction."""
        if len(self.logits) == 1:
            return self.logits[0].float()
        return torch.stack(self.logits).float().mean(0)


@dataclass(frozen=True)
class StepResult:
    """What a strategy returns: the scalar loss and extra scalars to log under ``train/``."""

    loss: Tensor
    logs: Mapping[str, Tensor | float] = field(default_factory=dict)
