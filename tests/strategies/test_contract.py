"""One contract battery over every registered strategy (sklearn's ``parametrize_with_checks`` idea)."""

from __future__ import annotations

import copy
import sys

import pytest
import torch
from torch import nn

from robustlabels.strategies import STRATEGIES, Strategy
from robustlabels.types import Batch, Forward

NUM_SAMPLES, NUM_CLASSES, DIM = 16, 4, 8


EPOCH = 0  # set per test by the `phase` fixture: 0 (warm-up) or late in training (schedules done)


def make_strategy(name: str) -> Strategy:
    strategy = STRATEGIES.get(name)()
    strategy.setup(num_samples=NUM_SAMPLES, num_classes=NUM_CLASSES)
    strategy.on_train_epoch_start(EPOCH)
    return strategy


def make_nets(strategy: Strategy, seed: int = 0) -> list[nn.Module]:
    torch.manual_seed(seed)
    return [nn.Linear(DIM, NUM_CLASSES) for _ in range(strategy.num_networks)]


def forward(nets: list[nn.Module], batch: Batch) -> Forward:
    return Forward(tuple(batch.inputs for _ in nets), tuple(net(batch.inputs) for net in nets))


def step_loss(strategy: Strategy, batch: Batch, seed: int = 0) -> torch.Tensor:
    torch.manual_seed(seed)
    return strategy.compute_loss(batch, forward(make_nets(strategy, seed), batch)).loss


@pytest.fixture(params=[0, 1000], ids=["epoch0", "late"], autouse=True)
def phase(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.modules[__name__], "EPOCH", request.param)


@pytest.fixture(params=STRATEGIES.names())
def name(request: pytest.FixtureRequest) -> str:
    return request.param


def test_loss_is_finite_scalar_with_gradient(name: str, noisy_batch: Batch) -> None:
    strategy = make_strategy(name)
    nets = make_nets(strategy)
    loss = strategy.compute_loss(noisy_batch, forward(nets, noisy_batch)).loss
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for net in nets for p in net.parameters())


def test_deterministic_under_seed(name: str, noisy_batch: Batch) -> None:
    a = step_loss(make_strategy(name), noisy_batch)
    b = step_loss(make_strategy(name), noisy_batch)
    assert torch.equal(a, b)


def test_batch_of_one(name: str, noisy_batch: Batch) -> None:
    one = Batch(*(t[:1] for t in noisy_batch))
    assert torch.isfinite(step_loss(make_strategy(name), one))


def test_state_dict_round_trip(name: str, noisy_batch: Batch) -> None:
    strategy = make_strategy(name)
    step_loss(strategy, noisy_batch)  # mutate any per-sample state
    restored = make_strategy(name)
    restored.load_state_dict(copy.deepcopy(strategy.state_dict()))
    assert torch.equal(step_loss(strategy, noisy_batch, seed=1), step_loss(restored, noisy_batch, seed=1))


def test_clean_labels_never_reach_the_loss(name: str, noisy_batch: Batch) -> None:
    """Scrambling clean_targets leaves the loss bit-identical; only the Oracle baseline may differ."""
    scrambled = noisy_batch._replace(clean_targets=noisy_batch.clean_targets.roll(3))
    same = torch.equal(step_loss(make_strategy(name), noisy_batch), step_loss(make_strategy(name), scrambled))
    assert same != STRATEGIES.get(name).uses_clean_labels


def test_registry_rejects_duplicates() -> None:
    with pytest.raises(KeyError, match="already registered"):
        STRATEGIES.register("cross_entropy")(Strategy)
