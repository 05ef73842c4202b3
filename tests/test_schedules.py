"""DelayedLinearDecay: Co-teaching's learning-rate and beta1 plan."""

from __future__ import annotations

import pytest
import torch

from robustlabels.errors import InputError
from robustlabels.schedules import DelayedLinearDecay


def test_matches_the_official_alpha_and_beta1_plans() -> None:
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    schedule = DelayedLinearDecay(optimizer, decay_start=80, total_epochs=200, decay_beta1=0.1)
    lrs, beta1s = [], []
    for _ in range(200):
        lrs.append(optimizer.param_groups[0]["lr"])
        beta1s.append(optimizer.param_groups[0]["betas"][0])
        optimizer.step()
        schedule.step()
    alpha_plan = [1e-3 if e < 80 else (200 - e) / 120 * 1e-3 for e in range(200)]
    assert lrs == pytest.approx(alpha_plan)
    assert beta1s == [0.9] * 80 + [0.1] * 120
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
