"""Learning-rate schedules of the papers that ``torch.optim.lr_scheduler`` has no single class for."""

from __future__ import annotations

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from robustlabels.errors import InputError


class DelayedLinearDecay(LRScheduler):
    """Co-teaching's plan: constant lr, then linear decay with Adam's ``β1`` switched, stepped per epoch.

    The official ``main.py`` builds ``alpha_plan[i] = lr·(E − i)/(E − decay_start)`` for ``i ≥ decay_start``
    (``lr`` before) and ``beta1_plan[i] = 0.1`` from ``decay_start`` on, then trains
    ``for epoch in range(1, E)`` with ``adjust_learning_rate(optimizer, epoch)``: epoch 0 only evaluates the
    random weights, so the official epoch used by our 0-based epoch ``e`` is ``i = e + 1``. Hence:

    * ``lr_e = lr`` for ``e < decay_start − 1`` and ``lr_e = lr·(E − 1 − e)/(E − decay_start)`` from
      ``e = decay_start − 1`` on (with ``decay_start`` 80: the switch is in the 80th epoch, 0-based 79, whose
      lr is still the full ``lr``; 0-based 80 gets ``lr·119/120``);
    * with ``decay_beta1``, ``β1`` takes that value from ``e = decay_start − 1`` on (``β2`` is kept);
    * the official loop trains ``E − 1`` epochs, the last with ``lr/(E − decay_start)``; a run with
      ``max_epochs = E`` keeps that last lr for its extra epoch (``i`` is capped at ``E − 1``), never 0.

    Co-teaching's settings: Adam lr 1e-3, ``decay_start`` 80, ``E = total_epochs`` 200, ``β1`` 0.9 → 0.1.

    Reference: Han et al., "Co-teaching", NeurIPS 2018; code ``bhanML/Co-teaching`` ``main.py``.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        *,
        decay_start: int = 80,
        total_epochs: int = 200,
        decay_beta1: float | None = None,
        last_epoch: int = -1,
    ) -> None:
        if not 0 <= decay_start < total_epochs:
            raise InputError(f"DelayedLinearDecay needs 0 <= decay_start < total_epochs; got {decay_start}, "
                             f"{total_epochs}")  # fmt: skip
        if decay_beta1 is not None and any("betas" not in group for group in optimizer.param_groups):
            raise InputError(f"DelayedLinearDecay(decay_beta1=...) needs an Adam-type optimizer; got "
                             f"{type(optimizer).__name__}")  # fmt: skip
        self.decay_start, self.total_epochs, self.decay_beta1 = decay_start, total_epochs, decay_beta1
        self.initial_beta1 = [group["betas"][0] for group in optimizer.param_groups] if decay_beta1 else []
        super().__init__(optimizer, last_epoch)

    def official_epoch(self, epoch: int) -> int:
        """Index into the official plans used by 0-based epoch ``epoch``: ``min(epoch + 1, E − 1)``."""
        return min(epoch + 1, self.total_epochs - 1)

    def get_lr(self) -> list[float]:  # type: ignore[override]
        index = self.official_epoch(self.last_epoch)
        decaying = index >= self.decay_start
        if self.decay_beta1 is not None:
            for group, beta1 in zip(self.optimizer.param_groups, self.initial_beta1, strict=True):
                group["betas"] = (self.decay_beta1 if decaying else beta1, group["betas"][1])
        factor = (self.total_epochs - index) / (self.total_epochs - self.decay_start) if decaying else 1.0
        return [float(base) * factor for base in self.base_lrs]
