"""RobustModule with two networks: independent init, per-network clipping and accuracy, checkpoints, configs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl
import torch

from robustlabels.data import BlobsDataModule
from robustlabels.errors import InputError
from robustlabels.fit import main
from robustlabels.module import RobustModule
from robustlabels.nn.nested_dropout import NestedDropout
from robustlabels.noise import SymmetricNoise
from robustlabels.strategies import CoTeaching, CrossEntropy, Strategy

ROOT = Path(__file__).resolve().parents[1]
CO_TEACHING_YAML = ROOT / "configs" / "fashion_mnist" / "co_teaching.yaml"


def blobs() -> BlobsDataModule:
    return BlobsDataModule(num_samples=300, test_samples=100, noise=SymmetricNoise(rate=0.3), batch_size=64)


def module(dm: BlobsDataModule, strategy: Strategy, **kwargs: Any) -> RobustModule:
    torch.manual_seed(0)
    return RobustModule(strategy, backbone="mlp", backbone_kwargs={"hidden": 32}, num_classes=dm.num_classes,
                        input_shape=dm.input_shape, **kwargs)  # fmt: skip


def test_two_networks_are_initialised_independently() -> None:
    model = module(blobs(), CoTeaching())
    assert len(model.nets) == 2
    for (name, a), (_, b) in zip(model.nets[0].named_parameters(), model.nets[1].named_parameters(), strict=True):
        assert a.shape == b.shape and not torch.equal(a, b), name


def test_single_network_strategies_are_unaffected() -> None:
    model = module(blobs(), CrossEntropy())
    assert len(model.nets) == 1 and model.nets.nested_dropout is None and model.gradient_clip_per_network is None
    assert model.nets[0].linear_head().bias is not None
    assert not any(key.startswith("nested_dropout") for key in model.state_dict())


class GradNorms(pl.Callback):
    """Before clipping: record each net's gradient norm and set the clip between the two. After: record again."""

    def __init__(self) -> None:
        self.before: list[float] = []
        self.after: list[float] = []

    @staticmethod
    def norms(model: RobustModule) -> list[float]:
        return [float(torch.cat([p.grad.flatten() for p in net.parameters()]).norm()) for net in model.nets]

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: Any, optimizer: Any) -> None:
        self.before = self.norms(pl_module)
        pl_module.gradient_clip_per_network = sum(self.before) / 2

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, *args: Any) -> None:
        self.after = self.norms(pl_module)


def test_gradients_are_clipped_per_network(quiet_trainer: dict[str, object]) -> None:
    dm = blobs()
    model = module(dm, CoTeaching(forget_rate=0.3), gradient_clip_per_network=1.0)
    norms = GradNorms()
    pl.Trainer(max_steps=1, callbacks=[norms], **quiet_trainer).fit(model, datamodule=dm)
    clip = sum(norms.before) / 2
    assert norms.before[0] != pytest.approx(norms.before[1])
    # the larger norm is clipped to `clip`; the smaller one is untouched (a joint clip would have shrunk it)
    assert norms.after == pytest.approx([min(n, clip) for n in norms.before], rel=1e-4)
    with pytest.raises(InputError, match="gradient_clip_per_network"):
        module(dm, CrossEntropy(), gradient_clip_per_network=0.0)


def test_checkpoint_round_trip_holds_both_networks_and_the_best_k(tmp_path: Path, quiet_trainer: dict) -> None:
    dm = blobs()
    model = module(dm, CoTeaching(forget_rate=0.3, num_gradual=1), nested_dropout=NestedDropout(sigma=5.0))
    pl.seed_everything(0)
    trainer_kwargs = {**quiet_trainer, "enable_checkpointing": True, "default_root_dir": str(tmp_path)}
    pl.Trainer(max_epochs=2, **trainer_kwargs).fit(model, datamodule=dm)
    last = model.history[-1]
    for key in ("val/acc_net0", "val/acc_net1", "test/acc_net0", "test/acc_net1", "val/nested_k"):
        assert key in last, key  # each network's own accuracy is logged next to the ensemble's
    (path,) = (tmp_path / "checkpoints").glob("*.ckpt")
    restored = RobustModule.load_from_checkpoint(path, strategy=CoTeaching(), nested_dropout=NestedDropout(sigma=5.0))
    saved = model.state_dict()
    assert {k for k in saved if k.startswith("nets.1.")} and saved.keys() == restored.state_dict().keys()
    for key, value in restored.state_dict().items():  # NaN: CoTeaching's unused forget-rate estimate
        torch.testing.assert_close(value, saved[key], rtol=0, atol=0, equal_nan=True, msg=key)
    assert int(restored.nets.nested_dropout.best_k) == int(last["val/nested_k"]) >= 1
    batch = next(iter(dm.test_dataloader()))
    model.eval()
    restored.eval()
    torch.testing.assert_close(restored(batch.inputs), model(batch.inputs))


def test_co_teaching_config_runs_fast_dev_run(tmp_path: Path) -> None:
    args = ["--config", str(CO_TEACHING_YAML), "--trainer.fast_dev_run=true", "--data.init_args.fake=true",
            "--trainer.default_root_dir", str(tmp_path), "--trainer.logger=false", "--trainer.accelerator=cpu",
            "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]  # fmt: skip
    assert main(args) == 0


def test_forget_rate_estimate_runs_at_setup(quiet_trainer: dict[str, object]) -> None:
    dm = BlobsDataModule(num_samples=1000, test_samples=100, noise=SymmetricNoise(rate=0.3), batch_size=64)
    model = module(dm, CoTeaching(forget_rate="estimate", num_gradual=0))
    pl.Trainer(fast_dev_run=True, **quiet_trainer).fit(model, datamodule=dm)
    assert model.strategy.rate == pytest.approx(float(model.strategy.estimated_forget_rate))
    assert abs(model.strategy.rate - dm.realized_noise_rate) < 0.1
