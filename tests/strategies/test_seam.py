"""The Strategy seam's capabilities, exercised by test-only strategies that touch no core file.

``ToyMetaRescaling`` needs everything meta loss rescaling will: manual optimisation, a parameter of its own with
its own optimizer, a meta batch each step and a second-order step through ``Networks.functional``.
``ReversedOrder`` sets a curriculum through ``EpochPlan.sample_order``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustlabels.data import BlobsDataModule, DigitsDataModule
from robustlabels.data.datamodule import MetaBatchSampler
from robustlabels.errors import InputError
from robustlabels.module import RobustModule
from robustlabels.networks import Networks
from robustlabels.noise import SymmetricNoise
from robustlabels.regularizers import ELR
from robustlabels.strategies.base import EpochPlan, ManualStep, MetaStream, Strategy
from robustlabels.types import Batch, Forward, StepResult


class ToyMetaRescaling(Strategy):
    """Weights each sample's loss by ``sigmoid(w)``; ``w`` learns from a meta batch through a virtual SGD step."""

    manual_optimization = True

    def __init__(self, meta_batch_size: int = 16) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))
        self.meta_stream = MetaStream(batch_size=meta_batch_size)
        self.meta_inputs: list[Tensor] = []  # what arrived as meta batches (for the tests)
        self.updates = 0  # after_optimizer_step calls

    def after_optimizer_step(self, nets: Networks) -> None:
        self.updates += 1

    def optimizers(self) -> list[torch.optim.Optimizer]:
        return [torch.optim.SGD([self.w], lr=1.0)]

    def compute_loss(self, batch: Batch, out: Forward) -> StepResult:
        weight = torch.sigmoid(self.w)
        return StepResult((weight * F.cross_entropy(out.logits[0], batch.targets, reduction="none")).mean())

    def manual_step(self, nets: Networks, batch: Batch, meta: Batch | None, ctx: ManualStep) -> StepResult:
        assert meta is not None
        self.meta_inputs.append(meta.inputs.detach().clone())
        params = dict(nets.named_parameters())
        virtual = self.compute_loss(batch, nets.functional(params, batch.inputs)).loss
        grads = torch.autograd.grad(virtual, list(params.values()), create_graph=True)
        fast = {name: p - 0.1 * g for (name, p), g in zip(params.items(), grads, strict=True)}
        meta_loss = F.cross_entropy(nets.functional(fast, meta.inputs).logits[0], meta.targets)
        (own,) = ctx.own_optimizers
        own.zero_grad()
        ctx.backward(meta_loss)
        own.step()
        out = nets(batch.inputs)
        loss = ctx.add_regularizers(self.compute_loss(batch, out).loss, batch, out)
        ctx.step_networks(loss)
        return StepResult(loss, {"w": self.w.detach()}, out)


class ReversedOrder(Strategy):
    """Cross-entropy, visiting the training set in reverse position order from epoch 1 on."""

    def __init__(self) -> None:
        super().__init__()
        self.num_samples = 0
        self.seen: dict[int, list[int]] = {}

    def setup(self, data: Any) -> None:
        self.num_samples = data.num_samples

    def on_train_epoch_start(self, epoch: int) -> EpochPlan | None:
        self.epoch = epoch
        return EpochPlan(sample_order=torch.arange(self.num_samples).flip(0)) if epoch >= 1 else None

    def compute_loss(self, batch: Batch, out: Forward) -> StepResult:
        self.seen.setdefault(self.epoch, []).extend(batch.index.tolist())
        return StepResult(F.cross_entropy(out.logits[0], batch.targets))


def digits(batch_size: int = 64) -> DigitsDataModule:
    return DigitsDataModule(noise=SymmetricNoise(rate=0.3), batch_size=batch_size, train_subset=320)


def toy_module(dm: Any, strategy: Strategy, **kwargs: Any) -> RobustModule:
    torch.manual_seed(0)
    optimizer = lambda params: torch.optim.SGD(params, lr=0.1)  # noqa: E731
    return RobustModule(strategy, backbone="mlp", backbone_kwargs={"hidden": 16}, num_classes=dm.num_classes,
                        input_shape=dm.input_shape, optimizer=optimizer, **kwargs)  # fmt: skip


class Watch(pl.Callback):
    """Per optimizer step of the networks: each network's gradient norm (after clipping); learning rates."""

    def __init__(self) -> None:
        self.norms: list[list[float]] = []
        self.lrs: list[float] = []

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: Any, optimizer: Any) -> None:
        if optimizer is trainer.optimizers[0]:
            self.norms.append([float(torch.cat([p.grad.flatten() for p in net.parameters()]).norm())
                               for net in pl_module.nets])  # fmt: skip

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: Any) -> None:
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])


def test_manual_strategy_with_own_optimizer_clipping_schedule_and_meta_batches(quiet_trainer: dict) -> None:
    dm = digits()
    strategy = ToyMetaRescaling()
    scheduler = lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)  # noqa: E731
    model = toy_module(dm, strategy, lr_scheduler=scheduler, gradient_clip_per_network=0.05, regularizers=[ELR()])
    watch = Watch()
    trainer = pl.Trainer(max_epochs=3, callbacks=[watch], **quiet_trainer)
    trainer.fit(model, datamodule=dm)
    batches = 3 * trainer.num_training_batches
    assert trainer.global_step == strategy.updates == batches  # one counted update per step (two optimizers)
    assert float(strategy.w.detach()) != 0.0  # its own optimizer ran
    assert len(watch.norms) == batches and max(n for row in watch.norms for n in row) <= 0.05 + 1e-6  # clipped
    assert watch.lrs == pytest.approx([0.1, 0.05, 0.025])  # the scheduler steps under manual optimisation
    assert float(model.regularizers[0].targets.abs().sum()) > 0  # regularizers joined the real step
    meta = torch.cat(strategy.meta_inputs)
    assert meta.dtype == torch.float32 and abs(float(meta.mean())) < 0.5  # normalised like training batches
    assert len(strategy.meta_inputs) == batches and all(len(m) == 16 for m in strategy.meta_inputs)


def fit_toy(tmp_path: Path, max_epochs: int, ckpt_path: str | None = None) -> RobustModule:
    dm = digits()
    model = toy_module(dm, ToyMetaRescaling())
    pl.seed_everything(0)
    trainer = pl.Trainer(max_epochs=max_epochs, default_root_dir=tmp_path, logger=False, enable_progress_bar=False,
                         enable_model_summary=False)  # fmt: skip
    trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path)
    return model


@pytest.mark.filterwarnings("ignore:The dirpath has changed")
def test_manual_strategy_resumes_exactly(tmp_path: Path) -> None:
    """A resumed run restores the networks, the strategy's own parameter and optimizer, and the meta draws."""
    straight = fit_toy(tmp_path / "straight", 3)
    fit_toy(tmp_path / "first", 2)
    (ckpt,) = (tmp_path / "first" / "checkpoints").glob("*.ckpt")
    resumed = fit_toy(tmp_path / "resumed", 3, ckpt_path=str(ckpt))
    torch.testing.assert_close(resumed.state_dict(), straight.state_dict(), rtol=0, atol=0)


def test_automatic_strategies_cannot_own_optimizers() -> None:
    class Owning(ReversedOrder):
        def optimizers(self) -> list[torch.optim.Optimizer]:
            return [torch.optim.SGD([nn.Parameter(torch.zeros(()))], lr=1.0)]

    model = toy_module(digits(), Owning())
    with pytest.raises(InputError, match="manual_optimization"):
        model.configure_optimizers()


def test_functional_forward_substitutes_parameters_and_spares_batchnorm_statistics() -> None:
    torch.manual_seed(0)
    nets = Networks("cnn9", count=1, input_shape=(3, 32, 32), num_classes=4)
    x = torch.randn(4, 3, 32, 32)
    bn = next(m for m in nets.modules() if isinstance(m, nn.BatchNorm2d))
    before = bn.running_mean.clone()
    params = dict(nets.named_parameters())
    nets.eval()
    torch.testing.assert_close(nets.functional(params, x).logits[0], nets(x).logits[0], rtol=0, atol=0)
    nets.train()
    shifted = {**params, "0.head.bias": params["0.head.bias"] + 1.0}
    torch.manual_seed(1)  # the same dropout draws in both passes
    out = nets.functional(shifted, x).logits[0]
    assert torch.equal(bn.running_mean, before)  # the functional pass used copies of the buffers
    torch.manual_seed(1)
    torch.testing.assert_close(out, nets(x).logits[0] + 1.0, rtol=1e-4, atol=1e-4)
    assert not torch.equal(bn.running_mean, before)  # the ordinary training forward updates them


def test_curriculum_order_reaches_the_sampler(quiet_trainer: dict[str, object]) -> None:
    dm = BlobsDataModule(num_samples=200, test_samples=50, noise=SymmetricNoise(rate=0.3), batch_size=32)
    strategy = ReversedOrder()
    pl.Trainer(max_epochs=3, **quiet_trainer).fit(toy_module(dm, strategy), datamodule=dm)
    n = strategy.num_samples
    assert sorted(strategy.seen[0]) == list(range(n)) and strategy.seen[0] != list(range(n))  # seeded shuffle
    assert strategy.seen[1] == strategy.seen[2] == list(range(n))[::-1]


def test_sample_order_and_meta_stream_are_checked() -> None:
    dm = BlobsDataModule(num_samples=200, test_samples=50, batch_size=32)
    dm.setup("fit")
    sampler = dm.train_dataloader().sampler
    n = len(dm.datasets["train"])
    with pytest.raises(InputError, match="permutation"):
        sampler.set_order(1, torch.zeros(n, dtype=torch.long))
    with pytest.raises(InputError, match="positions"):
        dm.serve_meta_stream(MetaStream(batch_size=2, positions=torch.tensor([0, n])))
    with pytest.raises(InputError, match="batch_size"):
        dm.serve_meta_stream(MetaStream(batch_size=0, positions=torch.tensor([0, 1])))
    with pytest.raises(InputError, match="true labels"):
        dm.datasets["train"].clean_targets[0] = -1
        dm.serve_meta_stream(MetaStream(batch_size=2, positions=torch.tensor([0, 1]), trusted=True))


def test_meta_batches_depend_only_on_seed_and_epoch_and_stay_in_the_pool() -> None:
    pool = torch.tensor([3, 5, 8, 13, 21, 34, 55])
    def draw(epoch: int, seed: int = 0) -> list[list[int]]:
        sampler = MetaBatchSampler(pool, 3, num_batches=5, seed=seed)
        sampler.set_epoch(epoch)
        return list(sampler)

    assert draw(0) == draw(0) and draw(1) == draw(1) and draw(0) != draw(1) and draw(0) != draw(0, seed=1)
    batches = draw(2)
    assert len(batches) == 5 and all(len(b) == len(set(b)) == 3 and set(b) <= set(pool.tolist()) for b in batches)


def test_trusted_meta_stream_serves_true_labels() -> None:
    dm = BlobsDataModule(num_samples=300, test_samples=50, noise=SymmetricNoise(rate=0.5), batch_size=32)
    dm.setup("fit")
    train = dm.datasets["train"]
    flipped = torch.nonzero(train.targets != train.clean_targets).flatten()[:10]
    dm.serve_meta_stream(MetaStream(batch_size=10, positions=flipped, trusted=True))
    meta = next(iter(dm.train_dataloader()["meta"]))
    assert sorted(meta.index.tolist()) == sorted(flipped.tolist())
    assert torch.equal(meta.targets, train.clean_targets[meta.index])
