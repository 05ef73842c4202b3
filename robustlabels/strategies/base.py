"""The Strategy interface: how one or more networks learn from a batch whose labels may be wrong.

``RobustModule`` drives a strategy only through the hooks below, in this order:

1. :meth:`Strategy.setup_networks` once, when the networks exist (state built from them: weight averages);
2. :meth:`Strategy.setup` once the training data is known (state sized ``N × C``, estimates from the data);
3. :meth:`Strategy.on_train_epoch_start` each epoch, which may return an :class:`EpochPlan`;
4. each step either :meth:`Strategy.step` (automatic optimisation: the module adds the regularizers,
   back-propagates and steps the networks' optimizer) or, with ``manual_optimization``,
   :meth:`Strategy.manual_step` (the strategy updates through a :class:`ManualStep`);
5. :meth:`Strategy.after_optimizer_step` after every update of the networks, in both modes;
6. :meth:`Strategy.on_train_epoch_end` each epoch, :meth:`Strategy.diagnostics` and :meth:`Strategy.sample_table`
   at the end of fit (all for evaluation: what they return is logged and saved, never trained on).

A strategy never holds the module: what it may touch arrives as arguments.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from robustlabels.networks import Networks
from robustlabels.registry import Registry
from robustlabels.types import Batch, Forward, MetaStream, StepResult, TrainData


@dataclass(frozen=True)
class EpochPlan:
    """What a strategy asks of the training loop for the epoch that starts.

    Attributes:
        reset_optimizer_state: clear the networks' optimizer state (momentum, Adam moments).
        lr: set every parameter group of the networks' optimizer to this learning rate.
        sample_order: ``(N,)`` positions of the training split in the order to visit them this epoch (a
            curriculum); ``None`` keeps the seeded shuffle. It must be a function of the strategy's state, so
            that a resumed run computes the same order again.
    """

    reset_optimizer_state: bool = False
    lr: float | None = None
    sample_order: Tensor | None = None


class ManualStep:
    """What a strategy with ``manual_optimization`` may do in one training step.

    Update the networks exactly once per step, with :meth:`step_networks` (a real optimizer step on a loss) or
    :meth:`adopt_networks` (parameters computed by the strategy, e.g. STORM's virtual step). Either one counts
    as the step's update (``trainer.global_step``), clips each network's gradient on its own where there is
    one, and calls :meth:`Strategy.after_optimizer_step`.

    Attributes:
        backward: precision-aware ``loss.backward(**kwargs)`` for the strategy's own losses (e.g. a meta loss;
            pass ``inputs=`` its own parameters so that no gradient is computed for the networks).
        own_optimizers: the optimizers of :meth:`Strategy.optimizers`, stepped by the strategy itself.
        add_regularizers: ``(loss, batch, out) -> loss`` with the run's regularizers added, as in automatic mode.
    """

    def __init__(
        self,
        nets: Networks,
        optimizer: Any,
        own_optimizers: Sequence[Optimizer],
        *,
        backward: Callable[..., None],
        after_step: Callable[[Networks], None],
        add_regularizers: Callable[[Tensor, Batch, Forward], Tensor],
        clip_norm: float | None = None,
    ) -> None:
        self.nets, self.optimizer, self.own_optimizers = nets, optimizer, own_optimizers
        self.backward, self.after_step, self.add_regularizers = backward, after_step, add_regularizers
        self.clip_norm = clip_norm

    def step_networks(self, loss: Tensor) -> None:
        """Zero the networks' gradients, back-propagate ``loss``, clip per network, step their optimizer."""
        self.optimizer.zero_grad()
        self.backward(loss)
        self.nets.clip_grad_norms_(self.clip_norm)
        self.optimizer.step()
        self.after_step(self.nets)

    def adopt_networks(self, params: Mapping[str, Tensor]) -> None:
        """Replace the networks' parameters by ``params`` (names as in ``nets.named_parameters()``). The
        optimizer still takes its (gradient-free, so empty) step, which counts the update."""
        self.optimizer.zero_grad()
        with torch.no_grad():
            for name, param in self.nets.named_parameters():
                param.copy_(params[name])
        self.optimizer.step()
        self.after_step(self.nets)


class Strategy(nn.Module, ABC):
    """Base class of every training strategy.

    A strategy is an ``nn.Module``, so its per-sample state (registered buffers) and its own parameters move
    with the model and are saved in checkpoints.

    Class attributes:
        num_networks: how many independently initialised backbones the strategy trains.
        manual_optimization: the strategy updates the networks itself in :meth:`manual_step` (meta-learning);
            it may then own parameters with their own optimizers (:meth:`optimizers`).
        uses_clean_labels: True only for benchmark baselines (``Oracle``) that read ``clean_targets``.

    Attributes:
        shared_nested_k: with nested dropout, all networks share one ``k`` per training forward.
        meta_stream: ask for a second batch each step (:class:`MetaStream`); it reaches :meth:`step` and
            :meth:`manual_step` as ``meta``.
    """

    num_networks: ClassVar[int] = 1
    manual_optimization: ClassVar[bool] = False
    uses_clean_labels: ClassVar[bool] = False
    shared_nested_k: bool = True
    meta_stream: MetaStream | None = None

    def setup_networks(self, nets: Networks) -> None:
        """Build state from the networks (e.g. weight averages) or refuse an incompatible set-up; called once
        when the module is built, so the state exists before a checkpoint is loaded."""

    def setup(self, data: TrainData) -> None:
        """Allocate state sized by the training data and look at the data once (e.g. estimate the noise rate)."""

    def on_train_epoch_start(self, epoch: int) -> EpochPlan | None:
        """Advance epoch-level schedules (``epoch`` counts from 0); return a plan to change the loop."""
        return None

    def step(self, nets: Networks, batch: Batch, meta: Batch | None = None) -> StepResult:
        """One training step in automatic optimisation: run the networks, return the loss and their outputs.

        Override it to own the forward (e.g. mixup inputs, eval-mode selection passes); most strategies only
        override :meth:`compute_loss`.
        """
        out = nets(batch.inputs, shared_k=self.shared_nested_k)
        return replace(self.compute_loss(batch, out), out=out)

    @abstractmethod
    def compute_loss(self, batch: Batch, out: Forward) -> StepResult:
        """The scalar training loss for ``batch`` from the networks' outputs ``out``."""

    def optimizers(self) -> list[Optimizer]:
        """Optimizers of the strategy's own parameters (manual optimisation only)."""
        return []

    def manual_step(self, nets: Networks, batch: Batch, meta: Batch | None, ctx: ManualStep) -> StepResult:
        """One training step with ``manual_optimization``: update through ``ctx`` and return the result."""
        raise NotImplementedError(f"{type(self).__name__} uses automatic optimization")

    def after_optimizer_step(self, nets: Networks) -> None:
        """Update state that follows the weights (e.g. weight averages) after each update of the networks."""

    def on_train_epoch_end(self) -> Mapping[str, float]:
        """Scalars about the epoch to log under ``train/`` and keep in the history (evaluation only)."""
        return {}

    def diagnostics(self) -> dict[str, Any]:
        """JSON-able detail written to the run folder as ``diagnostics.json`` at the end of fit."""
        return {}

    def sample_table(self) -> Mapping[str, Tensor]:
        """Per training sample ``{column: (N,)}``, written as the run's ``issues.csv`` at the end of fit (an audit
        by-product, evaluation only): a ``suspicion`` column (higher = more likely mislabelled) ranks the rows,
        an optional bool ``flagged`` marks the strategy's verdict. Empty: no table."""
        return {}


STRATEGIES: Registry[type[Strategy]] = Registry("strategy")

__all__ = ["STRATEGIES", "EpochPlan", "ManualStep", "MetaStream", "Strategy", "TrainData"]
