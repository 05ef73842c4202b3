"""The contract battery for every registered regularizer, composed with cross-entropy."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from robustlabels.regularizers import REGULARIZERS, Regularizer
from robustlabels.types import Batch, Forward

NUM_SAMPLES, NUM_CLASSES, DIM = 16, 4, 8


def make(name: str) -> Regularizer:
    reg = REGULARIZERS.get(name)()
    reg.setup(num_samples=NUM_SAMPLES, num_classes=NUM_CLASSES)
    reg.on_train_epoch_start(50)
    return reg


def term(reg: Regularizer, batch: Batch, seed: int = 0, steps: int = 2) -> torch.Tensor:
    torch.manual_seed(seed)
    net = nn.Linear(DIM, NUM_CLASSES)
    for _ in range(steps):  # a second visit makes per-sample state matter
        value = reg(batch, Forward((batch.inputs,), (net(batch.inputs),)))
    return value


@pytest.fixture(params=REGULARIZERS.names())
def name(request: pytest.FixtureRequest) -> str:
    return request.param


def test_finite_scalar_with_gradient(name: str, noisy_batch: Batch) -> None:
    value = term(make(name), noisy_batch)
    assert value.ndim == 0 and torch.isfinite(value)


def test_deterministic(name: str, noisy_batch: Batch) -> None:
    assert torch.equal(term(make(name), noisy_batch), term(make(name), noisy_batch))


def test_batch_of_one(name: str, noisy_batch: Batch) -> None:
    assert torch.isfinite(term(make(name), Batch(*(t[:1] for t in noisy_batch))))


def test_state_dict_round_trip(name: str, noisy_batch: Batch) -> None:
    reg = make(name)
    term(reg, noisy_batch)
    restored = make(name)
    restored.load_state_dict(copy.deepcopy(reg.state_dict()))
    assert torch.equal(term(reg, noisy_batch, seed=1, steps=1), term(restored, noisy_batch, seed=1, steps=1))


def test_clean_labels_never_used(name: str, noisy_batch: Batch) -> None:
    scrambled = noisy_batch._replace(clean_targets=noisy_batch.clean_targets.roll(3))
    assert torch.equal(term(make(name), noisy_batch), term(make(name), scrambled))


def test_a_regularizer_without_its_term_cannot_be_built() -> None:
    class Incomplete(Regularizer):
        pass

    with pytest.raises(TypeError, match="abstract"):
        Incomplete()  # type: ignore[abstract]
