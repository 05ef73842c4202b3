"""Hand-computed cases for the baselines."""

from __future__ import annotations

import math

import pytest
import torch

from robustlabels.errors import InputError
from robustlabels.strategies import CrossEntropy, Oracle
from robustlabels.types import Batch, Forward


def batch_and_logits() -> tuple[Batch, Forward]:
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]], requires_grad=True)
    targets, clean = torch.tensor([0, 0, 1]), torch.tensor([0, 1, 1])
    batch = Batch(torch.zeros(3, 1), targets, torch.arange(3), clean)
    return batch, Forward((logits,), (logits,))


def ce(z: list[float], y: int) -> float:
    return -z[y] + math.log(sum(math.exp(v) for v in z))


def test_cross_entropy_matches_hand_computation() -> None:
    batch, out = batch_and_logits()
    expected = (ce([2, 0], 0) + ce([0, 1], 0) + ce([1, 1], 1)) / 3
    assert CrossEntropy().compute_loss(batch, out).loss.item() == pytest.approx(expected, rel=1e-6)


def test_oracle_uses_only_clean_samples() -> None:
    batch, out = batch_and_logits()  # sample 1 has a flipped label
    result = Oracle().compute_loss(batch, out)
    assert result.loss.item() == pytest.approx((ce([2, 0], 0) + ce([1, 1], 1)) / 2, rel=1e-6)
    assert float(result.logs["keep_frac"]) == pytest.approx(2 / 3)


def test_oracle_with_no_clean_sample_gives_zero_loss_with_gradient() -> None:
    batch, out = batch_and_logits()
    batch = batch._replace(clean_targets=(batch.targets + 1) % 2)
    loss = Oracle().compute_loss(batch, out).loss
    loss.backward()
    assert loss.item() == 0.0 and out.logits[0].grad is not None


def test_oracle_refuses_without_clean_labels() -> None:
    batch, out = batch_and_logits()
    with pytest.raises(InputError, match="needs the true labels"):
        Oracle().compute_loss(batch._replace(clean_targets=torch.full((3,), -1)), out)
