"""Adaptive-k's threshold, the empty-selection guard, and the small-loss baselines."""

from __future__ import annotations

import pytest
import torch

from robustlabels.strategies import MKLSGD, AdaptiveK, TrimmedLoss
from robustlabels.strategies.adaptive_k import adaptive_threshold, keep_at_least_one
from robustlabels.types import Batch, Forward


def test_threshold_for_a_constant_loss_matches_methods_md() -> None:
    m = v = torch.zeros((), dtype=torch.float64)
    thresholds = []
    for _ in range(100):
        m, v, thr = adaptive_threshold(m, v, torch.tensor(2.5, dtype=torch.float64), beta1=0.9, beta2=0.999, eps=1e-8)
        thresholds.append(thr.item())
    assert thresholds[0] == pytest.approx(3.162, abs=1e-3)  # t = 1
    assert thresholds[9] == pytest.approx(6.52, abs=1e-2)  # t = 10
    assert thresholds[99] == pytest.approx(3.24, abs=1e-2)  # t = 100


def test_guard_keeps_the_lowest_loss_sample_when_nothing_passes() -> None:
    losses = torch.tensor([3.0, 1.0, 2.0])
    assert keep_at_least_one(torch.zeros(3, dtype=torch.bool), losses).tolist() == [False, True, False]
    some = torch.tensor([True, False, False])
    assert keep_at_least_one(some, losses).tolist() == [True, False, False]


def batch_with_losses() -> tuple[Batch, Forward]:
    # logits chosen so the CE of the 4 samples increases with the index
    logits = torch.tensor([[4.0, 0.0], [2.0, 0.0], [0.0, 0.0], [0.0, 3.0]], requires_grad=True)
    batch = Batch(torch.zeros(4, 1), torch.zeros(4, dtype=torch.long), torch.arange(4), torch.zeros(4).long())
    return batch, Forward((logits,), (logits,))


def test_adaptive_k_trains_on_all_samples_during_vanilla_epochs_then_selects() -> None:
    strategy = AdaptiveK(vanilla_epochs=2)
    batch, out = batch_with_losses()
    strategy.on_train_epoch_start(1)
    assert float(strategy.compute_loss(batch, out).logs["keep_frac"]) == 1.0 and strategy.m.item() == 0.0
    strategy.on_train_epoch_start(2)
    result = strategy.compute_loss(batch, out)
    # first adaptive step: threshold = 3.16 (scale-free), keeping all losses <= 3.16 nats
    assert float(result.logs["threshold"]) == pytest.approx(3.162, abs=1e-3)
    assert float(result.logs["keep_frac"]) == 1.0
    assert strategy.m.item() > 0 and strategy.v.item() > 0


def test_adaptive_k_moments_are_kept_across_epochs() -> None:
    strategy = AdaptiveK(vanilla_epochs=0)
    batch, out = batch_with_losses()
    strategy.on_train_epoch_start(0)
    for _ in range(300):
        result = strategy.compute_loss(batch, out)
    assert float(result.logs["keep_frac"]) == 0.75  # the threshold (~1.96) has dropped below the largest loss
    strategy.on_train_epoch_start(1)
    m_before = strategy.m.clone()
    strategy.compute_loss(batch, out)
    batch_mean = torch.nn.functional.cross_entropy(out.logits[0], batch.targets).double()
    assert strategy.m.item() == pytest.approx((0.9 * m_before + 0.1 * batch_mean).item())


def test_trimmed_loss_keeps_the_lowest_fraction() -> None:
    batch, out = batch_with_losses()
    losses = torch.nn.functional.cross_entropy(out.logits[0], batch.targets, reduction="none")
    result = TrimmedLoss(keep_fraction=0.5).compute_loss(batch, out)
    assert result.loss.item() == pytest.approx(losses[:2].mean().item())


def test_mkl_sgd_keeps_the_minimum_of_each_group() -> None:
    batch, out = batch_with_losses()
    losses = torch.nn.functional.cross_entropy(out.logits[0], batch.targets, reduction="none")
    torch.manual_seed(0)
    groups = torch.randperm(4).view(2, 2)
    expected = losses[groups].min(1).values.mean()
    torch.manual_seed(0)
    assert MKLSGD(k=2).compute_loss(batch, out).loss.item() == pytest.approx(expected.item())
    assert MKLSGD(k=4).compute_loss(batch, out).loss.item() == pytest.approx(losses.min().item())
