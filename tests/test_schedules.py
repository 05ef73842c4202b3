"""DelayedLinearDecay: Co-teaching's learning-rate and beta1 plan."""

from __future__ import annotations

import pytest
import torch

from robustlabels.errors import InputError
from robustlabels.schedules import DelayedLinearDecay


def _official_plans(lr: float, decay_start: int, n_epoch: int) -> tuple[list[float], list[float]]:
    """``alpha_plan`` and ``beta1_plan`` as built in bhanML/Co-teaching ``main.py``."""
    alpha_plan, beta1_plan = [lr] * n_epoch, [0.9] * n_epoch
    for i in range(decay_start, n_epoch):
        alpha_plan[i] = float(n_epoch - i) / (n_epoch - decay_start) * lr
        beta1_plan[i] = 0.1
    return alpha_plan, beta1_plan


def _run(schedule: DelayedLinearDecay, optimizer: torch.optim.Optimizer, epochs: int) -> tuple[list, list]:
    """The lr and β1 in force during each 0-based (Lightning) epoch, stepping once per epoch."""
    lrs, beta1s = [], []
    for _ in range(epochs):
        lrs.append(optimizer.param_groups[0]["lr"])
        beta1s.append(optimizer.param_groups[0]["betas"][0])
        optimizer.step()
        schedule.step()
    return lrs, beta1s


def test_matches_the_official_loop_epoch_by_epoch() -> None:
    # The official loop is `for epoch in range(1, n_epoch): adjust_learning_rate(optimizer, epoch); train(...)`
    # (epoch 0 only evaluates the random weights), so our 0-based epoch e trains with alpha_plan[e + 1].
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    schedule = DelayedLinearDecay(optimizer, decay_start=80, total_epochs=200, decay_beta1=0.1)
    lrs, beta1s = _run(schedule, optimizer, 200)
    alpha_plan, beta1_plan = _official_plans(1e-3, 80, 200)
    assert lrs[:199] == pytest.approx(alpha_plan[1:])
    assert beta1s[:199] == beta1_plan[1:]
    # Pinned: the switch happens in the 80th epoch (0-based 79), where the lr is still the full 1e-3.
    assert beta1s[78:80] == [0.9, 0.1] and beta1s.index(0.1) == 79
    assert lrs[78] == lrs[79] == pytest.approx(1e-3) and lrs[80] == pytest.approx(1e-3 * 119 / 120)
    # The official code trains n_epoch - 1 = 199 epochs; a 200th epoch keeps the last official lr, not 0.
    assert lrs[198] == lrs[199] == pytest.approx(1e-3 / 120) and beta1s[199] == 0.1
    restored = DelayedLinearDecay(optimizer, decay_start=80, total_epochs=200, decay_beta1=0.1)
    restored.load_state_dict(schedule.state_dict())
    assert restored.last_epoch == 200


def test_bad_arguments_are_one_line_errors() -> None:
    sgd = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(InputError, match="decay_start < total_epochs"):
        DelayedLinearDecay(sgd, decay_start=10, total_epochs=10)
    with pytest.raises(InputError, match="Adam-type optimizer; got SGD"):
        DelayedLinearDecay(sgd, decay_beta1=0.1)
    DelayedLinearDecay(sgd, decay_start=1, total_epochs=3)  # lr only: any optimizer
