"""The Strategy interface: how the per-sample losses of one or more networks become the training loss."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar

from torch import Tensor, nn

from robustlabels.registry import Registry
from robustlabels.types import Batch, Forward, StepResult

if TYPE_CHECKING:
    from robustlabels.module import RobustModule


class Strategy(nn.Module, ABC):
    """Base class of every training strategy.

    A strategy is an ``nn.Module`` so that its per-sample state (registered buffers) moves with the model
    and is saved in checkpoints. ``RobustModule`` calls, in order: :meth:`bind` once its networks exist,
    :meth:`setup` and :meth:`setup_data` once the data is known, :meth:`on_train_epoch_start` each epoch,
    and each step :meth:`network_inputs`, :meth:`compute_loss` and, after the optimiser step,
    :meth:`after_optimizer_step`.

    Class attributes:
        num_networks: how many independently initialised backbones the strategy trains.
        uses_clean_labels: True only for benchmark baselines (``Oracle``) that read ``clean_targets``.
    """

    num_networks: ClassVar[int] = 1
    uses_clean_labels: ClassVar[bool] = False

    def bind(self, module: RobustModule) -> None:
        """See the module once its networks are built (e.g. to copy them); do not keep ``module`` itself as an
        attribute, which would register it as a submodule of its own child."""

    def setup(self, *, num_samples: int, num_classes: int) -> None:
        """Allocate state that depends on the training-set size ``N`` and class count ``C``."""

    def setup_data(self, *, inputs: Tensor, targets: Tensor, num_classes: int) -> None:
        """Look at the training data once before fitting (e.g. ``CoTeaching(forget_rate="estimate")``)."""

    def on_train_epoch_start(self, epoch: int) -> None:
        """Advance epoch-level schedules (``epoch`` counts from 0)."""

    def network_inputs(self, batch: Batch) -> Tensor | tuple[Tensor, ...]:
        """The training inputs: one ``(B, ...)`` tensor for all networks (default: ``batch.inputs``) or one per
        network (e.g. ELR+'s mixup)."""
        return batch.inputs

    def after_optimizer_step(self) -> None:
        """Update state that follows the weights (e.g. weight averages) after each optimiser step."""

    @abstractmethod
    def compute_loss(self, batch: Batch, out: Forward) -> StepResult:
        """Return the scalar training loss for ``batch`` from the networks' outputs ``out``."""


STRATEGIES: Registry[type[Strategy]] = Registry("strategy")
