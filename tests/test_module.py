"""RobustModule: the training step, evaluation metrics, and that clean labels never reach a loss."""

from __future__ import annotations

import pytorch_lightning as pl
import torch

from robustlabels.data import BlobsDataModule
from robustlabels.metrics import memorization_counts, summarize_history
from robustlabels.module import RobustModule
from robustlabels.noise import SymmetricNoise
from robustlabels.strategies import CrossEntropy


def blobs() -> BlobsDataModule:
    dm = BlobsDataModule(num_samples=400, test_samples=200, noise=SymmetricNoise(rate=0.4), batch_size=64)
    dm.setup("fit")
    return dm


def module(dm: BlobsDataModule) -> RobustModule:
    torch.manual_seed(0)
    return RobustModule(CrossEntropy(), backbone="mlp", num_classes=dm.num_classes, input_shape=dm.input_shape)


def test_scrambled_clean_targets_leave_the_training_loss_bit_identical() -> None:
    dm = blobs()
    batch = next(iter(dm.train_dataloader()))
    model = module(dm)
    loss = model.training_step(batch, 0)["loss"]
    scrambled = batch._replace(clean_targets=batch.clean_targets[torch.randperm(len(batch.targets))])
    assert torch.equal(model.training_step(scrambled, 0)["loss"], loss)


def test_memorization_counts_by_hand() -> None:
    targets = torch.tensor([0, 1, 2, 3, 1])
    clean = torch.tensor([0, 0, 0, 3, -1])  # samples 1 and 2 flipped; sample 4 unknown
    preds = torch.tensor([0, 0, 2, 1, 1])
    assert memorization_counts(preds, targets, clean).tolist() == [2.0, 1.0, 1.0]


def test_summary_picks_best_final_and_best_val_epoch() -> None:
    history = [{"val/acc": 0.5, "test/acc": 0.6}, {"val/acc": 0.7, "test/acc": 0.65}, {"val/acc": 0.4, "test/acc": 0.7}]
    summary = summarize_history(history)
    assert summary["best_test_acc"] == 0.7 and summary["final_test_acc"] == 0.7
    assert summary["test_acc_at_best_val"] == 0.65 and summary["epochs"] == 3


def test_fit_logs_accuracy_memorization_and_noise_rate(quiet_trainer) -> None:
    dm = blobs()
    model = module(dm)
    pl.seed_everything(0)
    pl.Trainer(max_epochs=3, **quiet_trainer).fit(model, datamodule=dm)
    assert len(model.history) == 3
    last = model.history[-1]
    for key in ("val/acc", "val/acc_clean", "test/acc", "train/mem_true", "train/mem_noisy", "train/noise_rate"):
        assert key in last, key
    assert last["train/noise_rate"] == dm.realized_noise_rate
    assert last["test/acc"] > 0.5  # well-separated blobs are learnable despite 40% noise
    assert last["train/mem_true"] + last["train/mem_noisy"] <= 1.0
