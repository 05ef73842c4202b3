"""Co-teaching: the peer selection by hand, the official R(t) schedule, the exact summed-loss gradient."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustlabels.data.synthetic import make_blobs
from robustlabels.errors import InputError
from robustlabels.noise import SymmetricNoise
from robustlabels.strategies import STRATEGIES, CoTeaching
from robustlabels.strategies.co_teaching import (
    co_teaching_select,
    estimate_forget_rate,
    forget_rate_schedule,
    num_remember,
)
from robustlabels.types import Batch, Forward, TrainData


def hand_batch() -> tuple[Batch, Forward]:
    """4 samples of class 0; net A is most sure of samples 0, 1; net B of samples 3, 2 (no ties)."""
    z_a = torch.tensor([[3.0, 0.0], [2.0, 0.0], [0.0, 0.0], [-1.0, 0.0]], requires_grad=True)
    z_b = torch.tensor([[-2.0, 0.0], [0.5, 0.0], [1.0, 0.0], [4.0, 0.0]], requires_grad=True)
    targets = torch.zeros(4, dtype=torch.long)
    clean = torch.tensor([0, 0, 1, 0])  # sample 2 is flipped
    return Batch(torch.zeros(4, 1), targets, torch.arange(4), clean), Forward((z_a, z_b), (z_a, z_b))


def softplus(x: float) -> float:
    """CE of class 0 with logits (x, 0) is log(1 + e^{-x})."""
    return math.log1p(math.exp(-x))


def test_selection_and_loss_by_hand() -> None:
    batch, out = hand_batch()
    strategy = CoTeaching(forget_rate=0.5, num_gradual=0)  # R = 0.5 from the first epoch: keep 2 of 4
    strategy.on_train_epoch_start(0)
    result = strategy.compute_loss(batch, out)
    # A keeps {0, 1}: B is updated on them; B keeps {3, 2}: A is updated on them.
    expected_a = (softplus(0.0) + softplus(-1.0)) / 2
    expected_b = (softplus(-2.0) + softplus(0.5)) / 2
    assert float(result.loss.detach()) == pytest.approx(expected_a + expected_b, rel=1e-6)
    assert result.logs["keep_frac"] == 0.5 and result.logs["forget_rate"] == 0.5
    # kept: A {0, 1} all clean, B {2, 3} one flipped -> 3 of 4 kept samples are clean
    assert float(result.logs["kept_clean_frac"]) == pytest.approx(0.75)
    by_a, by_b = co_teaching_select(*(F.cross_entropy(z, batch.targets, reduction="none") for z in out.logits), 2)
    assert sorted(by_a.tolist()) == [0, 1] and sorted(by_b.tolist()) == [2, 3]


def test_unknown_clean_labels_log_no_kept_clean_frac() -> None:
    batch, out = hand_batch()
    strategy = CoTeaching(forget_rate=0.5)
    strategy.on_train_epoch_start(0)
    result = strategy.compute_loss(batch._replace(clean_targets=torch.full((4,), -1)), out)
    assert "kept_clean_frac" not in result.logs


def test_schedule_is_the_official_linspace_indexed_from_the_first_training_epoch() -> None:
    tau, t_k, epochs = 0.4, 10, 30
    official = np.ones(epochs) * tau
    official[:t_k] = np.linspace(0, tau, t_k)
    ours = [forget_rate_schedule(e, forget_rate=tau, num_gradual=t_k) for e in range(epochs)]
    assert ours == pytest.approx(official.tolist(), abs=1e-12)
    strategy = CoTeaching(forget_rate=tau, num_gradual=t_k)
    rates = []
    for epoch in range(epochs - 1):  # the official loop trains epochs 1.. after evaluating epoch 0
        strategy.on_train_epoch_start(epoch)
        rates.append(strategy.rate)
    assert rates == pytest.approx(official[1:].tolist(), abs=1e-12)
    assert rates[0] == pytest.approx(tau / 9) and rates[8] == pytest.approx(tau) and max(rates) == tau


def test_schedule_exponent_and_constant_rate() -> None:
    assert forget_rate_schedule(9, forget_rate=0.5, num_gradual=10, exponent=2.0) == pytest.approx(0.25)
    assert forget_rate_schedule(10, forget_rate=0.5, num_gradual=10, exponent=2.0) == 0.5  # official jump
    assert [forget_rate_schedule(e, forget_rate=0.3, num_gradual=0) for e in range(3)] == [0.3, 0.3, 0.3]
    assert [forget_rate_schedule(e, forget_rate=0.3, num_gradual=1) for e in range(2)] == [0.0, 0.3]


def test_num_remember_rounds_down_but_keeps_one() -> None:
    assert num_remember(128, 0.4) == 76 and num_remember(10, 0.25) == 7 and num_remember(1, 0.5) == 1


def test_summed_loss_gives_each_network_exactly_its_own_gradient(noisy_batch: Batch) -> None:
    torch.manual_seed(0)
    net_a, net_b = nn.Linear(8, 4), nn.Linear(8, 4)
    strategy = CoTeaching(forget_rate=0.3, num_gradual=0)
    strategy.on_train_epoch_start(0)
    z_a, z_b = net_a(noisy_batch.inputs), net_b(noisy_batch.inputs)
    total = strategy.compute_loss(noisy_batch, Forward((z_a, z_b), (z_a, z_b))).loss
    grads_total = torch.autograd.grad(total, [*net_a.parameters(), *net_b.parameters()], retain_graph=True)

    loss_a, loss_b = (F.cross_entropy(z, noisy_batch.targets, reduction="none") for z in (z_a, z_b))
    by_a, by_b = co_teaching_select(loss_a.detach(), loss_b.detach(), num_remember(16, 0.3))
    own_a = torch.autograd.grad(loss_a[by_b].mean(), list(net_a.parameters()), retain_graph=True)
    own_b = torch.autograd.grad(loss_b[by_a].mean(), list(net_b.parameters()))
    for got, want in zip(grads_total, (*own_a, *own_b), strict=True):
        assert torch.equal(got, want)


def test_forget_rate_is_validated() -> None:
    with pytest.raises(InputError, match=r"`forget_rate` must be in \[0.0, 1.0\); got 1.2"):
        CoTeaching(forget_rate=1.2)
    with pytest.raises(InputError, match="num_gradual"):
        CoTeaching(num_gradual=-1)


def test_estimate_needs_the_training_data() -> None:
    strategy = CoTeaching(forget_rate="estimate")
    with pytest.raises(InputError, match="needs the training set"):
        strategy.on_train_epoch_start(0)


def test_estimate_from_confident_learning_on_noisy_blobs() -> None:
    x, y = make_blobs(1000, num_classes=4, dim=16, separation=3.0, seed=0)  # 300 points overestimate (0.45)
    noisy = SymmetricNoise(rate=0.3, exact=True).apply(y, num_classes=4, seed=0)
    realized = float(noisy.realized_rate)
    assert abs(estimate_forget_rate(x, noisy.noisy, num_classes=4) - realized) < 0.06  # 0.33 for 0.30
    assert estimate_forget_rate(x, y, num_classes=4) < 0.02  # clean labels
    strategy = CoTeaching(forget_rate="estimate", num_gradual=0)
    strategy.setup(TrainData(len(x), 4, torch.from_numpy(x), torch.from_numpy(noisy.noisy)))
    estimate = float(strategy.estimated_forget_rate)
    strategy.on_train_epoch_start(0)
    assert strategy.rate == pytest.approx(estimate) and abs(estimate - realized) < 0.06
    restored = CoTeaching(forget_rate="estimate")
    restored.load_state_dict(strategy.state_dict())  # the estimate is saved with the run
    restored.on_train_epoch_start(20)
    assert restored.rate == pytest.approx(estimate)


def test_registered_with_two_networks() -> None:
    assert STRATEGIES.get("co_teaching") is CoTeaching and CoTeaching.num_networks == 2
