"""The Regularizer interface: an additive loss term that composes with any strategy."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence

from torch import Tensor, nn

from robustlabels.registry import Registry
from robustlabels.types import Batch, Forward


class Regularizer(nn.Module, ABC):
    """An additive term ``weight · R(batch, out)``; per-sample state lives in registered buffers.

    ``base_loss_scale`` multiplies the strategy's loss (NCR uses ``1 − α``; most regularizers keep 1). The
    module scales only the strategy's loss, by the product of every regularizer's scale, and then adds the
    terms, so the loss does not depend on the order of the regularizers (:func:`combine_losses`).
    """

    base_loss_scale: float = 1.0

    def setup(self, *, num_samples: int, num_classes: int) -> None:
        """Allocate state that depends on the training-set size ``N`` and class count ``C``."""

    def check_batch_size(self, batch_size: int) -> None:
        """Raise :class:`~robustlabels.errors.InputError` when the term cannot work on batches of ``batch_size``
        samples (the global batch under DDP)."""

    def on_train_epoch_start(self, epoch: int) -> None:
        """Advance epoch-level schedules (``epoch`` counts from 0)."""

    @abstractmethod
    def forward(self, batch: Batch, out: Forward) -> Tensor:
        """Return the scalar term to add to the loss."""


def combine_losses(strategy_loss: Tensor, regularizers: Sequence[Regularizer], batch: Batch, out: Forward) -> Tensor:
    """``Π_r scale_r · strategy_loss + Σ_r R_r(batch, out)``: the training loss, independent of the order."""
    scale, terms = 1.0, []
    for reg in regularizers:
        scale *= reg.base_loss_scale
        terms.append(reg(batch, out))
    return scale * strategy_loss + sum(terms) if terms else strategy_loss


class Regularizers(nn.ModuleList):
    """The regularizers of a run (checkpoint keys ``regularizers.0.*`` ...), typed, with their combined loss."""

    def __iter__(self) -> Iterator[Regularizer]:
        return super().__iter__()  # type: ignore[return-value]

    def setup(self, *, num_samples: int, num_classes: int, batch_size: int | None) -> None:
        """Check each regularizer against the (global) ``batch_size``, when known, then set it up."""
        for reg in self:
            if batch_size is not None:
                reg.check_batch_size(batch_size)
            reg.setup(num_samples=num_samples, num_classes=num_classes)

    def combine(self, strategy_loss: Tensor, batch: Batch, out: Forward) -> Tensor:
        """:func:`combine_losses` with these regularizers."""
        return combine_losses(strategy_loss, list(self), batch, out)


REGULARIZERS: Registry[type[Regularizer]] = Registry("regularizer")
