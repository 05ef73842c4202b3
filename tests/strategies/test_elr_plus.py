"""ELR+: ramps, weight averages, mixup, the loss against a hand computation, and checkpoint round trips."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from robustlabels.data import BlobsDataModule
from robustlabels.errors import InputError
from robustlabels.module import RobustModule
from robustlabels.nn.ema import ema_decay, sigmoid_rampup, update_average, weight_average
from robustlabels.nn.nested_dropout import NestedDropout
from robustlabels.noise import SymmetricNoise
from robustlabels.strategies import STRATEGIES, ELRPlus
from robustlabels.strategies.elr_plus import mix, mixup_pairs
from robustlabels.types import Batch, TrainData


def test_sigmoid_rampup_and_ema_decay_follow_the_official_formulas() -> None:
    assert sigmoid_rampup(5, 0) == 1.0
    assert sigmoid_rampup(0, 100) == pytest.approx(math.exp(-5))
    assert sigmoid_rampup(50, 100) == pytest.approx(math.exp(-1.25))
    assert sigmoid_rampup(100, 100) == sigmoid_rampup(1e6, 100) == 1.0
    assert ema_decay(9, max_decay=0.997, rampup_steps=100) == pytest.approx(math.exp(-5 * 0.9**2) * 0.997)
    assert ema_decay(1, max_decay=0.9999, rampup_steps=0) == pytest.approx(0.5)  # the true average of 2
    assert ema_decay(3, max_decay=0.9999, rampup_steps=0) == pytest.approx(0.75)
    assert ema_decay(10**6, max_decay=0.9999, rampup_steps=0) == 0.9999


def test_weight_average_moves_parameters_only_and_takes_no_gradients() -> None:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    copy = weight_average(net)
    assert not any(p.requires_grad for p in copy.parameters())
    before = [p.clone() for p in copy.parameters()]
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
        net[1].running_mean.fill_(7.0)
    update_average(copy, net, decay=0.9)
    for old, new, cur in zip(before, copy.parameters(), net.parameters(), strict=True):
        torch.testing.assert_close(new, 0.9 * old + 0.1 * cur)
    assert torch.equal(copy[1].running_mean, torch.zeros(4))  # buffers are the copy's own


def test_mixup_pairs_fold_lambda_and_permute() -> None:
    rng, cpu = np.random.default_rng(0), torch.device("cpu")
    draws = [mixup_pairs(10, 1.0, rng=rng, device=cpu) for _ in range(20)]
    assert all(0.5 <= lam <= 1.0 and sorted(perm.tolist()) == list(range(10)) for lam, perm in draws)
    assert len({lam for lam, _ in draws}) == 20
    lam, perm = mixup_pairs(4, 0.0, rng=rng, device=cpu)
    assert lam == 1.0 and perm.tolist() == [0, 1, 2, 3]
    x = torch.arange(4.0).view(4, 1)
    torch.testing.assert_close(mix(x, 0.75, torch.tensor([1, 0, 3, 2])), torch.tensor([[0.25], [0.75], [2.25], [2.75]]))


def train_data(num_samples: int, num_classes: int = 3) -> TrainData:
    return TrainData(num_samples, num_classes, torch.zeros(num_samples, 5), torch.zeros(num_samples, dtype=torch.long))


def small_module(strategy: ELRPlus, num_classes: int = 3, **kwargs: Any) -> RobustModule:
    torch.manual_seed(0)
    return RobustModule(strategy, backbone="mlp", backbone_kwargs={"hidden": 8}, num_classes=num_classes,
                        input_shape=(5,), **kwargs)  # fmt: skip


def hand_loss(strategy: ELRPlus, model: RobustModule, batch: Batch, mixes: list[tuple[float, torch.Tensor]],
              old_targets: torch.Tensor, a: int) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """Network ``a``'s ELR+ loss and its new target rows, written out from the paper's Sec. 4.2."""
    lam, perm = mixes[a]
    x_mix = lam * batch.inputs + (1 - lam) * batch.inputs[perm]
    z = model.nets[a](x_mix)
    peer = F.softmax(strategy.average[1 - a](batch.inputs), dim=1)  # type: ignore[index]
    rows = strategy.momentum * old_targets[a][batch.index] + (1 - strategy.momentum) * peer
    q = lam * rows + (1 - lam) * rows[perm]
    onehot = F.one_hot(batch.targets, 3).float()
    y = lam * onehot + (1 - lam) * onehot[perm]
    if strategy.reweight_labels:
        y = y * q / (y * q).sum(1, keepdim=True)
    p = F.softmax(z, dim=1).clamp(1e-4, 1 - 1e-4)
    ce = -(y * F.log_softmax(z, dim=1)).sum(1).mean()
    weight = sigmoid_rampup(strategy.steps + 1, strategy.weight_rampup_steps) * strategy.weight
    return ce + weight * torch.log(1 - (q * p).sum(1)).mean(), rows


@pytest.mark.parametrize("reweight", [False, True])
def test_loss_and_targets_match_a_hand_computation(reweight: bool) -> None:
    strategy = ELRPlus(momentum=0.6, weight=2.0, weight_rampup_steps=10, reweight_labels=reweight)
    model = small_module(strategy)
    strategy.setup(train_data(20))
    strategy.steps = 4
    with torch.no_grad():  # averages unlike their networks, and non-zero old targets
        for p in strategy.average.parameters():  # type: ignore[union-attr]
            p.mul_(-1.5)
        strategy.targets.copy_(F.softmax(torch.randn(2, 20, 3), dim=2))
    old_targets = strategy.targets.clone()
    gen = torch.Generator().manual_seed(3)
    batch = Batch(torch.randn(6, 5, generator=gen), torch.tensor([0, 1, 2, 0, 1, 2]),
                  torch.tensor([3, 7, 0, 19, 11, 5]), torch.full((6,), -1))  # fmt: skip
    rng = np.random.default_rng((strategy.seed, strategy.steps))  # the draws step() makes
    mixes = [mixup_pairs(6, strategy.mixup_alpha, rng=rng, device=torch.device("cpu")) for _ in range(2)]
    assert all(lam < 1.0 for lam, _ in mixes) and not torch.equal(mixes[0][1], mixes[1][1])
    result = strategy.step(model.nets, batch)
    expected, rows = zip(*(hand_loss(strategy, model, batch, mixes, old_targets, a) for a in (0, 1)), strict=True)
    torch.testing.assert_close(result.loss, expected[0] + expected[1])
    for a in (0, 1):
        torch.testing.assert_close(strategy.targets[a][batch.index], rows[a])
    untouched = torch.ones(20, dtype=torch.bool)
    untouched[batch.index] = False
    assert torch.equal(strategy.targets[:, untouched], old_targets[:, untouched])
    assert result.logs["elr_weight"] == pytest.approx(2.0 * sigmoid_rampup(5, 10))


def test_summed_loss_gives_each_network_its_own_gradient() -> None:
    """Network 0's gradient does not depend on network 1's loss term (and vice versa)."""
    strategy = ELRPlus(mixup_alpha=0.0)
    model = small_module(strategy)
    strategy.setup(train_data(6))
    batch = Batch(torch.randn(6, 5), torch.tensor([0, 1, 2, 0, 1, 2]), torch.arange(6), torch.full((6,), -1))
    state = strategy.targets.clone()
    strategy.step(model.nets, batch).loss.backward()
    together = [p.grad.clone() for p in model.nets[0].parameters()]  # type: ignore[union-attr]
    model.zero_grad()
    strategy.targets.copy_(state)
    out = model.nets(batch.inputs)
    out1 = type(out)(out.features, (out.logits[0], out.logits[1].detach() * 3.0))  # net 1's term changed
    strategy.compute_loss(batch, out1).loss.backward()
    for g, p in zip(together, model.nets[0].parameters(), strict=True):
        torch.testing.assert_close(g, p.grad)


def test_presets_and_bad_values() -> None:
    assert STRATEGIES.get("elr_plus") is ELRPlus
    c100 = ELRPlus(preset="cifar100")
    assert (c100.momentum, c100.weight, c100.weight_rampup_steps, c100.reweight_labels) == (0.9, 7.0, 40_000, True)
    clothing = ELRPlus(preset="clothing1m", weight=1.0)
    assert (clothing.ema_max_decay, clothing.ema_rampup_steps, clothing.weight) == (0.9999, 0, 1.0)
    assert ELRPlus(preset="webvision").mixup_alpha == 1.5
    with pytest.raises(InputError, match="preset"):
        ELRPlus(preset="cifar1000")
    with pytest.raises(InputError, match="mixup_alpha"):
        ELRPlus(mixup_alpha=-1.0)
    with pytest.raises(InputError, match="nested_dropout"):
        small_module(ELRPlus(), nested_dropout=NestedDropout(sigma=3.0))


def fit(tmp_path: Path, max_epochs: int, ckpt_path: str | None = None) -> tuple[RobustModule, pl.Trainer]:
    dm = BlobsDataModule(num_samples=200, test_samples=50, noise=SymmetricNoise(rate=0.3), batch_size=50)
    pl.seed_everything(0)
    model = RobustModule(ELRPlus(ema_rampup_steps=0), backbone="mlp", backbone_kwargs={"hidden": 16},
                         num_classes=dm.num_classes, input_shape=dm.input_shape)  # fmt: skip
    trainer = pl.Trainer(max_epochs=max_epochs, default_root_dir=tmp_path, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, deterministic=True)  # fmt: skip
    trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path)
    return model, trainer


def test_fit_updates_averages_and_resume_restores_all_state(tmp_path: Path) -> None:
    straight, trainer = fit(tmp_path / "straight", max_epochs=4)
    strategy = straight.strategy
    assert isinstance(strategy, ELRPlus) and strategy.steps == trainer.global_step == 4 * trainer.num_training_batches
    num_train = strategy.targets.shape[1]  # each sample visited once per epoch: each row sums to 1 − β⁴
    assert float(strategy.targets.sum()) == pytest.approx(2 * num_train * (1 - strategy.momentum**4), rel=1e-4)
    for avg, net in zip(strategy.average, straight.nets, strict=True):  # type: ignore[call-overload]
        diffs = [float((a - p).abs().max()) for a, p in zip(avg.parameters(), net.parameters(), strict=True)]
        assert 0 < max(diffs) < 1.0
    _, trainer = fit(tmp_path / "resumed", max_epochs=2)
    ckpt = trainer.checkpoint_callback.best_model_path  # type: ignore[union-attr]  # no monitor: the last epoch
    resumed, _ = fit(tmp_path / "continued", max_epochs=4, ckpt_path=ckpt)
    assert resumed.strategy.steps == strategy.steps
    torch.testing.assert_close(resumed.strategy.targets, strategy.targets)
    torch.testing.assert_close(resumed.state_dict(), straight.state_dict())
