"""One contract battery over every registered strategy (sklearn's ``parametrize_with_checks`` idea).

Every check drives the strategy the way training does: a ``RobustModule`` builds its ``Networks`` and calls
``setup_networks``; ``setup`` sees the training data; ``on_train_epoch_start`` starts an epoch; ``step`` (or
``manual_step``) runs the networks. The capability checks at the end run a real ``Trainer``.
"""

from __future__ import annotations

import copy
import itertools
import sys
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
import yaml
from jsonargparse import ArgumentParser

from robustlabels.data import BlobsDataModule
from robustlabels.module import RobustModule
from robustlabels.noise import SymmetricNoise
from robustlabels.regularizers import ELR, NeighborConsistency
from robustlabels.strategies import STRATEGIES, Strategy
from robustlabels.strategies.base import ManualStep
from robustlabels.types import Batch, StepResult, TrainData

NUM_SAMPLES, NUM_CLASSES, DIM = 16, 4, 8
EPOCH = 0  # set per test by the `phase` fixture: 0 (warm-up) or late in training (schedules done)


def make_module(name: str, seed: int = 0, **kwargs: Any) -> RobustModule:
    """A module around the strategy's defaults, set up on 16 samples and at the start of epoch ``EPOCH``."""
    torch.manual_seed(seed)
    module = RobustModule(STRATEGIES.get(name)(), backbone="mlp", backbone_kwargs={"hidden": 16},
                          num_classes=NUM_CLASSES, input_shape=(DIM,), **kwargs)  # fmt: skip
    data = TrainData(NUM_SAMPLES, NUM_CLASSES, torch.randn(NUM_SAMPLES, DIM), torch.arange(NUM_SAMPLES) % 4)
    module.strategy.setup(data)
    for reg in module.regularizers:
        reg.setup(num_samples=NUM_SAMPLES, num_classes=NUM_CLASSES)
        reg.on_train_epoch_start(EPOCH)
    module.strategy.on_train_epoch_start(EPOCH)
    return module.train()


def run_step(module: RobustModule, batch: Batch, seed: int = 0) -> StepResult:
    """One step the way ``RobustModule.training_step`` takes it (a manual strategy gets plain optimizers)."""
    torch.manual_seed(seed)
    strategy = module.strategy
    if not strategy.manual_optimization:
        return strategy.step(module.nets, batch)
    optimizer = torch.optim.SGD(module.nets.parameters(), lr=0.01)
    ctx = ManualStep(module.nets, optimizer, strategy.optimizers(), backward=torch.Tensor.backward,
                     after_step=strategy.after_optimizer_step, add_regularizers=lambda loss, b, o: loss)  # fmt: skip
    return strategy.manual_step(module.nets, batch, batch, ctx)


@pytest.fixture(params=[0, 1000], ids=["epoch0", "late"], autouse=True)
def phase(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.modules[__name__], "EPOCH", request.param)


@pytest.fixture(params=STRATEGIES.names())
def name(request: pytest.FixtureRequest) -> str:
    return request.param


def test_loss_is_finite_scalar_and_every_network_learns(name: str, noisy_batch: Batch) -> None:
    """A finite scalar loss; every network gets a finite, non-zero gradient (a manual strategy: an update)."""
    module = make_module(name)
    before = [[p.clone() for p in net.parameters()] for net in module.nets]
    result = run_step(module, noisy_batch)
    assert result.loss.ndim == 0 and torch.isfinite(result.loss)
    assert result.out is not None and len(result.out.logits) == module.strategy.num_networks
    if module.strategy.manual_optimization:
        for i, (net, old) in enumerate(zip(module.nets, before, strict=True)):
            new = list(net.parameters())
            assert all(torch.isfinite(p).all() for p in new), f"network {i}"
            assert any(not torch.equal(a, b) for a, b in zip(old, new, strict=True)), f"network {i} not updated"
        return
    result.loss.backward()
    for i, net in enumerate(module.nets):
        grads = [p.grad for p in net.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads), f"network {i}"
        assert any(bool(g.abs().sum() > 0) for g in grads if g is not None), f"network {i} gets no gradient"


def test_networks_are_independent_and_nothing_else_gets_gradients(name: str, noisy_batch: Batch) -> None:
    """Two-network routing: distinct initialisations, and the loss reaches only the networks (and the
    strategy's own optimised parameters, for manual strategies)."""
    module = make_module(name)
    nets = list(module.nets)
    for a, b in itertools.pairwise(nets):
        assert not any(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    result = run_step(module, noisy_batch)
    if not module.strategy.manual_optimization:
        result.loss.backward()
    owned = {id(p) for opt in module.strategy.optimizers() for g in opt.param_groups for p in g["params"]}
    net_params = {id(p) for p in module.nets.parameters()}
    stray = [n for n, p in module.named_parameters() if p.grad is not None and id(p) not in net_params | owned]
    assert not stray


def test_deterministic_under_seed(name: str, noisy_batch: Batch) -> None:
    assert torch.equal(run_step(make_module(name), noisy_batch).loss, run_step(make_module(name), noisy_batch).loss)


def test_batch_of_one(name: str, noisy_batch: Batch) -> None:
    one = Batch(*(t[:1] for t in noisy_batch))
    assert torch.isfinite(run_step(make_module(name), one).loss)


def test_every_sample_rejected_still_gives_a_finite_loss(name: str, noisy_batch: Batch) -> None:
    """Confident, wrong predictions on every sample: selection rules that would keep nothing must stay finite."""
    module = make_module(name)
    with torch.no_grad():
        for net in module.nets:
            net.head.weight.mul_(50.0)  # type: ignore[operator]
    logits = module.nets(noisy_batch.inputs).logits[0]
    wrong = (logits.argmax(1) + 1) % NUM_CLASSES  # every label disagrees with a confident prediction
    result = run_step(module, noisy_batch._replace(targets=wrong))
    assert torch.isfinite(result.loss)
    if not module.strategy.manual_optimization:
        result.loss.backward()
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in module.nets.parameters())


def test_state_dict_round_trip(name: str, noisy_batch: Batch) -> None:
    module = make_module(name)
    run_step(module, noisy_batch)  # mutate any per-sample state
    module.strategy.after_optimizer_step(module.nets)
    restored = make_module(name, seed=1)
    restored.load_state_dict(copy.deepcopy(module.state_dict()))
    assert torch.equal(run_step(module, noisy_batch, seed=2).loss, run_step(restored, noisy_batch, seed=2).loss)


def test_clean_labels_never_reach_the_loss(name: str, noisy_batch: Batch) -> None:
    """Scrambling clean_targets leaves the loss bit-identical; only the Oracle baseline may differ."""
    scrambled = noisy_batch._replace(clean_targets=noisy_batch.clean_targets.roll(3))
    same = torch.equal(run_step(make_module(name), noisy_batch).loss, run_step(make_module(name), scrambled).loss)
    assert same != STRATEGIES.get(name).uses_clean_labels


# manual strategies add regularizers through ManualStep.add_regularizers (tested with the toy in test_seam.py)
@pytest.mark.parametrize("name", [n for n in STRATEGIES.names() if not STRATEGIES.get(n).manual_optimization])
def test_regularizer_order_does_not_change_the_loss(name: str, noisy_batch: Batch) -> None:
    def loss(order: int) -> torch.Tensor:
        regs = [ELR(), NeighborConsistency(start_epoch=0, k=3)]
        module = make_module(name, regularizers=regs[::order])
        with pytest.warns(UserWarning, match="self.trainer"):  # no Trainer: Lightning's log() only warns
            return module.training_step(noisy_batch, 0)["loss"]

    torch.testing.assert_close(loss(1), loss(-1), rtol=0, atol=0)


def test_yaml_round_trip(name: str) -> None:
    """The strategy's defaults survive a config dump and re-parse, as LightningCLI's saved config.yaml does."""
    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(Strategy, "strategy")
    cls = STRATEGIES.get(name)
    config = parser.parse_object({"strategy": {"class_path": f"{cls.__module__}.{cls.__name__}"}})
    again = parser.parse_object(yaml.safe_load(parser.dump(config)))
    assert again == config
    built = parser.instantiate_classes(again).strategy
    assert type(built) is cls and repr(built) == repr(cls())


def test_registry_rejects_duplicates() -> None:
    with pytest.raises(KeyError, match="already registered"):
        STRATEGIES.register("cross_entropy")(Strategy)


class CountUpdates(pl.Callback):
    """Counts the networks' optimizer steps and the after_optimizer_step calls, per training batch."""

    def __init__(self) -> None:
        self.batches = self.steps = self.after = 0

    def on_train_start(self, trainer: pl.Trainer, pl_module: Any) -> None:
        optimizer, strategy = trainer.optimizers[0], pl_module.strategy
        step, after = optimizer.step, strategy.after_optimizer_step

        def counted_step(*args: Any, **kwargs: Any) -> Any:
            self.steps += 1
            return step(*args, **kwargs)

        def counted_after(nets: Any) -> None:
            self.after += 1
            after(nets)

        optimizer.step, strategy.after_optimizer_step = counted_step, counted_after

    def on_train_batch_end(self, *args: Any) -> None:
        self.batches += 1


@pytest.mark.parametrize("phase", [0], ids=["fit"], indirect=True)  # one fit per strategy
def test_one_update_per_step_in_a_real_fit(name: str, quiet_trainer: dict[str, object]) -> None:
    dm = BlobsDataModule(num_samples=200, test_samples=50, noise=SymmetricNoise(rate=0.3), batch_size=32)
    torch.manual_seed(0)
    strategy = STRATEGIES.get(name)(**({"stage1_epochs": 1} if name == "nested_co_teaching" else {}))
    module = RobustModule(strategy, backbone="mlp", backbone_kwargs={"hidden": 16}, num_classes=dm.num_classes,
                          input_shape=dm.input_shape)  # fmt: skip
    before = [p.clone() for p in module.nets.parameters()]
    count = CountUpdates()
    trainer = pl.Trainer(max_epochs=2, callbacks=[count], **quiet_trainer)
    trainer.fit(module, datamodule=dm)
    assert count.batches == count.steps == count.after == trainer.global_step > 0
    changed = [not torch.equal(a, b) for a, b in zip(before, module.nets.parameters(), strict=True)]
    assert all(changed)
