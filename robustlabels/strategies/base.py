"""The Strategy interface: how the per-sample losses of one or more networks become the training loss."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

from torch import Tensor, nn

from robustlabels.registry import Registry
from robustlabels.types import Batch, Forward, StepResult


class Strategy(nn.Module, ABC):
    """Base class of every training strategy.

    A strategy is an ``nn.Module`` so that its per-sample state (registered buffers) moves with the model
    and is saved in checkpoints. ``RobustModule`` calls, in order: :meth:`setup` once the data size is
    known, :meth:`on_train_epoch_start` each epoch, and :meth:`compute_loss` each step.

    Class attributes:
        num_networks: how many independently initialised backbones the strategy trains.
        uses_clean_labels: True only for benchmark baselines (``Oracle``) that read ``clean_targets``.
    """

    num_networks: ClassVar[int] = 1
    uses_clean_labels: ClassVar[bool] = False

    def setup(self, *, num_samples: int, num_classes: int) -> None:
        """Allocate state that depends on the training-set size ``N`` and class count ``C``."""

    def setup_data(self, *, inputs: Tensor, targets: Tensor, num_classes: int) -> None:
        """Look at the training data once before fitting (e.g. ``CoTeaching(forget_rate="estimate")``)."""

    def on_train_epoch_start(self, epoch: int) -> None:
        """Advance epoch-level schedules (``epoch`` counts from 0)."""

    @abstractmethod
    def compute_loss(self, batch: Batch, out: Forward) -> StepResult:
        """Return the scalar training loss for ``batch`` from the networks' outputs ``out``."""


STRATEGIES: Registry[type[Strategy]] = Registry("strategy")
