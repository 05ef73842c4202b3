"""Nested Co-teaching: stage switch, eval-mode selection at the best K, checkpoint round trip mid stage 2."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor

from robustlabels.data import BlobsDataModule
from robustlabels.errors import InputError
from robustlabels.fit import main
from robustlabels.module import RobustModule
from robustlabels.nn.nested_dropout import NestedDropout, prefix_mask
from robustlabels.noise import SymmetricNoise
from robustlabels.strategies import STRATEGIES, NestedCoTeaching
from robustlabels.strategies.nested_co_teaching import class_balanced_subset
from robustlabels.types import Batch, Forward, TrainData

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "fashion_mnist" / "nested_co_teaching.yaml"
CLI = ["--config", str(CONFIG), "--data.init_args.fake=true", "--trainer.logger=false", "--trainer.accelerator=cpu",
       "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]  # fmt: skip


def blobs() -> BlobsDataModule:
    return BlobsDataModule(num_samples=300, test_samples=100, noise=SymmetricNoise(rate=0.3), batch_size=64)


def module(dm: BlobsDataModule, strategy: NestedCoTeaching, lr: float = 0.05) -> RobustModule:
    torch.manual_seed(0)
    optimizer = lambda params: torch.optim.SGD(params, lr=lr, momentum=0.9)  # noqa: E731
    return RobustModule(strategy, backbone="mlp", backbone_kwargs={"hidden": 32}, num_classes=dm.num_classes,
                        input_shape=dm.input_shape, nested_dropout=NestedDropout(sigma=5.0),
                        optimizer=optimizer)  # fmt: skip


class Record(pl.Callback):
    """At the first batch of each epoch: the stage, the learning rate and whether the optimizer has state."""

    def __init__(self) -> None:
        self.rows: dict[int, tuple[int, float, bool]] = {}

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: Any, batch: Any, batch_idx: int) -> None:
        if batch_idx == 0:
            optimizer = trainer.optimizers[0]
            state = any(optimizer.state[p] for group in optimizer.param_groups for p in group["params"])
            self.rows[trainer.current_epoch] = (pl_module.strategy.stage, optimizer.param_groups[0]["lr"], state)


def test_registered_and_validates_arguments() -> None:
    assert STRATEGIES.get("nested_co_teaching") is NestedCoTeaching
    assert NestedCoTeaching.num_networks == 2
    for bad in ({"stage1_epochs": -1}, {"num_gradual": -1}, {"stage2_lr": 0.0}, {"forget_rate": 1.0}):
        with pytest.raises(InputError):
            NestedCoTeaching(**bad)


def test_stage_switches_at_stage1_epochs_and_resets_the_optimizer(quiet_trainer: dict[str, object]) -> None:
    dm = blobs()
    model = module(dm, NestedCoTeaching(stage1_epochs=2, forget_rate=0.3, stage2_lr=0.001))
    record = Record()
    pl.Trainer(max_epochs=4, callbacks=[record], **quiet_trainer).fit(model, datamodule=dm)
    assert record.rows[0] == (1, 0.05, False)
    assert record.rows[1] == (1, 0.05, True)  # stage 1 keeps its momentum
    assert record.rows[2] == (2, 0.001, False)  # the switch: fresh optimizer state, stage-2 learning rate
    assert record.rows[3] == (2, 0.001, True)  # no second reset
    assert bool(model.strategy.switched) and model.strategy.rate == 0.3  # constant forget rate
    assert int(model.nets.nested_dropout.best_k) >= 1


def test_stage1_sums_two_plain_cross_entropies(noisy_batch: Batch) -> None:
    strategy = NestedCoTeaching(stage1_epochs=1)
    strategy.on_train_epoch_start(0)
    z = (torch.randn(16, 4), torch.randn(16, 4))
    loss = strategy.compute_loss(noisy_batch, Forward((z[0], z[1]), z)).loss
    expected = F.cross_entropy(z[0], noisy_batch.targets) + F.cross_entropy(z[1], noisy_batch.targets)
    torch.testing.assert_close(loss, expected)


class FakeNets:
    """Stands in for ``Networks``: fixed eval-mode logits per half, fixed training logits, a record of calls."""

    def __init__(self, eval_z: tuple[Tensor, Tensor], train_z: tuple[Tensor, Tensor]) -> None:
        self.eval_z, self.train_z = eval_z, train_z
        self.calls: list[tuple[str, Any]] = []

    def eval_logits(self, inputs: Sequence[Tensor], *, own_k: bool = False) -> tuple[Tensor, ...]:
        self.calls.append(("eval_logits", ([x.clone() for x in inputs], own_k)))
        return self.eval_z

    def freeze_batchnorm(self) -> None:
        self.calls.append(("freeze_batchnorm", None))

    def __call__(self, inputs: Tensor, *, shared_k: bool = True) -> Forward:
        self.calls.append(("forward", shared_k))
        return Forward(self.train_z, self.train_z)


@pytest.mark.parametrize("size", [16, 15])
@pytest.mark.parametrize("k_selection", ["shared", "per_network"])
def test_stage2_selects_half_batches_with_the_eval_scores(noisy_batch: Batch, size: int, k_selection: str) -> None:
    """Net 0 scores B1 and net 1 scores B2 in eval mode; each peer trains on the other's choice. An odd batch's
    last sample is left out of both halves, as the official code's ``narrow`` does."""
    batch = Batch(*(t[:size] for t in noisy_batch))
    gen = torch.Generator().manual_seed(1)
    eval_z = (torch.randn(size // 2, 4, generator=gen) * 3, torch.randn(size // 2, 4, generator=gen) * 3)
    train_z = (torch.randn(size, 4, generator=gen, requires_grad=True),
               torch.randn(size, 4, generator=gen, requires_grad=True))  # fmt: skip
    nets = FakeNets(eval_z, train_z)
    strategy = NestedCoTeaching(stage1_epochs=0, forget_rate=0.5, k_selection=k_selection)  # type: ignore[arg-type]
    strategy.on_train_epoch_start(0)
    result = strategy.step(nets, batch)  # type: ignore[arg-type]
    half = size // 2
    (name, (halves, own_k)), *rest = nets.calls
    assert name == "eval_logits" and own_k == (k_selection == "per_network")
    torch.testing.assert_close(halves[0], batch.inputs[:half])
    torch.testing.assert_close(halves[1], batch.inputs[half : 2 * half])
    assert rest == [("forward", True)]  # stage1_epochs = 0: nothing to freeze; one shared k
    y = batch.targets
    keep0 = F.cross_entropy(eval_z[0], y[:half], reduction="none").argsort()[: half // 2]  # ⌊0.5·half⌋ smallest
    keep1 = F.cross_entropy(eval_z[1], y[half : 2 * half], reduction="none").argsort()[: half // 2] + half
    expected = F.cross_entropy(train_z[0][keep1], y[keep1]) + F.cross_entropy(train_z[1][keep0], y[keep0])
    torch.testing.assert_close(result.loss, expected)
    assert result.logs["stage"] == 2.0 and result.out is not None
    kept = torch.cat([keep0, keep1])
    clean_frac = (y[kept] == batch.clean_targets[kept]).float().mean()
    assert float(result.logs["kept_clean_frac"]) == pytest.approx(float(clean_frac))


def test_networks_eval_logits_use_eval_mode_and_the_chosen_k() -> None:
    dm = blobs()
    dm.setup("fit")
    model = module(dm, NestedCoTeaching(stage1_epochs=0))
    nested = model.nets.nested_dropout
    nested.best_k.fill_(3)
    nested.network_k.copy_(torch.tensor([5, 0]))  # net 1 not selected yet: falls back to best_k
    model.train()
    x = torch.randn(5, *dm.input_shape)
    own, shared = model.nets.eval_logits([x, x], own_k=True), model.nets.eval_logits([x, x])
    assert all(m.training for m in model.nets.modules()) and not own[0].requires_grad  # modes restored
    model.eval()
    for net, z_own, z_shared, k in zip(model.nets, own, shared, (5, 3), strict=True):
        torch.testing.assert_close(z_own, net.forward_head(prefix_mask(net.forward_features(x), k)))
        torch.testing.assert_close(z_shared, net.forward_head(prefix_mask(net.forward_features(x), 3)))
    assert not torch.allclose(own[0], shared[0])


@pytest.mark.parametrize("freeze_bn", [True, False])
def test_stage2_freezes_batchnorm_after_a_stage1(freeze_bn: bool) -> None:
    """With ``freeze_bn`` (the official ``--freeze-bn``), stage 2 leaves BatchNorm's running statistics and affine
    parameters as stage 1 left them; the rest of the network still learns."""
    torch.manual_seed(0)
    strategy = NestedCoTeaching(stage1_epochs=1, forget_rate=0.25, freeze_bn=freeze_bn)
    model = RobustModule(strategy, backbone="cnn9", num_classes=4, input_shape=(3, 32, 32),
                         nested_dropout=NestedDropout(sigma=50.0))  # fmt: skip
    optimizer = torch.optim.SGD(model.nets.parameters(), lr=0.1)
    batch = Batch(torch.randn(8, 3, 32, 32), torch.arange(8) % 4, torch.arange(8), torch.full((8,), -1))
    bn = next(m for m in model.nets[0].modules() if isinstance(m, torch.nn.BatchNorm2d))
    model.train()
    strategy.on_train_epoch_start(1)  # stage 2, after a stage 1
    before = [t.clone() for t in (bn.running_mean, bn.weight, model.nets[0].head.weight)]
    strategy.step(model.nets, batch).loss.backward()
    optimizer.step()
    changed = [not torch.equal(a, b) for a, b in zip(before, (bn.running_mean, bn.weight, model.nets[0].head.weight),
                                                     strict=True)]  # fmt: skip
    assert changed == [not freeze_bn, not freeze_bn, True]
    assert bn.training == (not freeze_bn)


def test_class_balanced_subsets_by_hand() -> None:
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])  # smallest class: 2 samples
    mask = class_balanced_subset(labels, 3, seed=123)
    assert np.bincount(labels[mask], minlength=3).tolist() == [2, 2, 2]
    assert mask[[3, 4]].all()  # class 1 is kept whole
    other = class_balanced_subset(labels, 3, seed=321)
    assert not np.array_equal(mask, other) and np.array_equal(mask, class_balanced_subset(labels, 3, seed=123))
    assert not class_balanced_subset(labels, 4, seed=0).any()  # an empty class: empty subsets


def test_stage1_subsets_mask_each_networks_loss(noisy_batch: Batch) -> None:
    strategy = NestedCoTeaching(stage1_epochs=5, stage1_subsets=True)
    labels = torch.arange(32) % 4
    labels[:6] = 0  # counts 12, 6, 7, 7: each subset holds 6 per class
    strategy.setup(TrainData(32, 4, torch.zeros(32, 1), labels))
    members = strategy.subsets
    assert members.shape == (2, 32) and members.sum(1).tolist() == [24, 24] and (members[0] != members[1]).any()
    strategy.on_train_epoch_start(0)
    z = torch.randn(2, 16, 4)
    result = strategy.compute_loss(noisy_batch, Forward((z[0], z[1]), (z[0], z[1])))
    mine = [members[i][noisy_batch.index] for i in range(2)]
    expected = sum(F.cross_entropy(z[i][mine[i]], noisy_batch.targets[mine[i]]) for i in range(2))
    torch.testing.assert_close(result.loss, expected)


@pytest.mark.filterwarnings("ignore:The dirpath has changed")
def test_checkpoint_round_trip_mid_stage2(tmp_path: Path, quiet_trainer: dict[str, object]) -> None:
    dm = blobs()
    kwargs = {**quiet_trainer, "enable_checkpointing": True, "default_root_dir": str(tmp_path)}
    strategy = lambda: NestedCoTeaching(stage1_epochs=1, forget_rate=0.3, stage2_lr=0.001)  # noqa: E731
    model = module(dm, strategy())
    pl.Trainer(max_epochs=2, **kwargs).fit(model, datamodule=dm)  # epoch 0: stage 1, epoch 1: stage 2
    (path,) = (tmp_path / "checkpoints").glob("*.ckpt")
    restored = RobustModule.load_from_checkpoint(path, strategy=strategy(), nested_dropout=NestedDropout(sigma=5.0))
    saved = model.state_dict()
    assert "strategy.switched" in saved and saved.keys() == restored.state_dict().keys()
    for key, value in restored.state_dict().items():
        torch.testing.assert_close(value, saved[key], rtol=0, atol=0, msg=key)
    # resume mid stage 2: no second optimizer reset, the stage-2 learning rate and momentum carry on
    resumed, record = module(dm, strategy()), Record()
    kwargs["default_root_dir"] = str(tmp_path / "resumed")
    pl.Trainer(max_epochs=3, callbacks=[record], **kwargs).fit(resumed, datamodule=dm, ckpt_path=str(path))
    assert record.rows == {2: (2, 0.001, True)}
    assert int(resumed.nets.nested_dropout.best_k) >= 1 and (resumed.nets.nested_dropout.network_k >= 1).all()
    assert {"val/nested_k_net0", "val/nested_k_net1"} <= resumed.history[-1].keys()


def test_config_runs_both_stages_from_one_command(tmp_path: Path) -> None:
    limits = ["--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1"]
    args = [*CLI, f"--trainer.default_root_dir={tmp_path}", "--trainer.max_epochs=2",
            "--model.strategy.init_args.stage1_epochs=1", *limits]  # fmt: skip
    assert main(args) == 0


def test_config_runs_stage2_alone_under_fast_dev_run(tmp_path: Path) -> None:
    args = [*CLI, f"--trainer.default_root_dir={tmp_path}", "--trainer.fast_dev_run=true",
            "--model.strategy.init_args.stage1_epochs=0"]  # fmt: skip
    assert main(args) == 0


def test_nested_k_is_drawn_per_network_in_stage1_and_shared_in_stage2(monkeypatch: pytest.MonkeyPatch) -> None:
    dm = blobs()
    model = module(dm, NestedCoTeaching(stage1_epochs=1))
    draws: list[int] = []
    draw = model.nets.nested_dropout.draw_k
    monkeypatch.setattr(model.nets.nested_dropout, "draw_k", lambda dim, **kw: draws.append(dim) or draw(dim, **kw))
    x = torch.randn(4, *dm.input_shape)
    for epoch, expected in ((0, 2), (1, 1)):
        draws.clear()
        model.strategy.on_train_epoch_start(epoch)
        model.train()
        model.strategy.step(model.nets, Batch(x, torch.zeros(4, dtype=torch.long), torch.arange(4), torch.zeros(4)))
        assert len(draws) == expected, epoch
