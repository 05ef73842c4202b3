"""Learning-rate schedules of the papers that ``torch.optim.lr_scheduler`` has no single class for."""

from __future__ import annotations

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from robustlabels.errors import InputError


class DelayedLinearDecay(LRScheduler):
    """Constant until epoch ``decay_start``, then linear decay: ``lr_e = lr·(E − e)/(E − decay_start)``.

    With ``decay_beta1``, Adam's ``β1`` is also set to that value from ``decay_start`` on. Co-teaching's
    official schedule (Adam lr 1e-3, ``decay_start`` 80, ``E = total_epochs`` 200, ``β1`` 0.9 → 0.1); the lr
    at the last epoch is ``lr/(E − decay_start)``, not 0, as in the official ``alpha_plan``. Stepped per epoch.

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

    def get_lr(self) -> list[float]:  # type: ignore[override]
        epoch = self.last_epoch
        decaying = epoch >= self.decay_start
        if self.decay_beta1 is not None:
            for group, beta1 in zip(self.optimizer.param_groups, self.initial_beta1, strict=True):
                group["betas"] = (self.decay_beta1 if decaying else beta1, group["betas"][1])
        factor = (self.total_epochs - epoch) / (self.total_epochs - self.decay_start) if decaying else 1.0
        return [float(base) * max(factor, 0.0) for base in self.base_lrs]
