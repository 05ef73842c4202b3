"""The Regularizer interface: an additive loss term that composes with any strategy."""

from __future__ import annotations

from abc import abstractmethod

from torch import Tensor, nn

from robustlabels.registry import Registry
from robustlabels.types import Batch, Forward


class Regularizer(nn.Module):
    """An additive term ``weight · R(batch, out)``; per-sample state lives in registered buffers.

    ``base_loss_scale`` multiplies the strategy's loss (NCR uses ``1 − α``; most regularizers keep 1).
    """

    base_loss_scale: float = 1.0

    def setup(self, *, num_samples: int, num_classes: int) -> None:
        """Allocate state that depends on the training-set size ``N`` and class count ``C``."""

    def on_train_epoch_start(self, epoch: int) -> None:
        """Advance epoch-level schedules (``epoch`` counts from 0)."""

    @abstractmethod
    def forward(self, batch: Batch, out: Forward) -> Tensor:
        """Return the scalar term to add to the loss."""


REGULARIZERS: Registry[type[Regularizer]] = Registry("regularizer")
