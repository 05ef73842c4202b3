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
    index: Tensor  # type: ignore[assignment]  # a field named like tuple.index
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
    """What a strategy returns for one training step.

    Attributes:
        loss: the scalar training loss (in manual optimisation: the loss of the real update, for logging).
        logs: extra scalars to log under ``train/``.
        out: the networks' outputs on the batch, which regularizers and the training metrics read (set by
            :meth:`Strategy.step`; ``None`` only for a bare :meth:`Strategy.compute_loss`).
    """

    loss: Tensor
    logs: Mapping[str, Tensor | float] = field(default_factory=dict)
    out: Forward | None = None


@dataclass(frozen=True)
class TrainData:
    """The training split as a strategy or regularizer sees it once before fitting.

    Attributes:
        num_samples: ``N``.
        num_classes: ``C``.
        inputs: ``(N, ...)`` raw training inputs on the CPU (uint8 images before normalisation, or features).
        targets: ``(N,)`` int64 given (possibly noisy) labels; positions match :attr:`Batch.index`.
    """

    num_samples: int
    num_classes: int
    inputs: Tensor
    targets: Tensor


@dataclass(frozen=True)
class MetaStream:
    """A second batch for every training step, prepared exactly like training batches (normalised, augmented).

    A strategy asks for one through ``Strategy.meta_stream``; the data module serves it. Batches are drawn
    without replacement from ``positions`` in a seeded order that depends only on ``(seed, epoch)``, so a
    resumed run draws the same meta batches.

    Attributes:
        batch_size: samples per meta batch (the whole pool when it holds fewer).
        positions: ``(M,)`` positions of the training split to draw from (``None``: the whole split, uniformly).
        trusted: serve the true labels of ``positions`` as ``targets`` (a designated clean subset, as
            Meta-Weight-Net's); the data must know them.
        per_class: instead of ``positions``, let the data module pick this many samples of every true class
            (seeded; a benchmark's stand-in for a verified subset).
    """

    batch_size: int
    positions: Tensor | None = None
    trusted: bool = False
    per_class: int | None = None
