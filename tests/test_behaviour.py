"""Slow behavioural tests: robust strategies beat cross-entropy in clean accuracy on noisy data."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl

from robustlabels.data import BlobsDataModule
from robustlabels.module import RobustModule
from robustlabels.noise import SymmetricNoise
from robustlabels.regularizers import ELR
from robustlabels.strategies import CrossEntropy


def final_test_acc(regularizers: list, quiet_trainer: dict) -> float:
    pl.seed_everything(0)
    data = BlobsDataModule(num_samples=1500, test_samples=1000, dim=8, separation=2.5, num_classes=4,
                           noise=SymmetricNoise(rate=0.5), batch_size=32)  # fmt: skip
    model = RobustModule(CrossEntropy(), regularizers=regularizers, backbone="mlp",
                         backbone_kwargs={"hidden": 512, "depth": 3}, num_classes=4, input_shape=(8,))  # fmt: skip
    pl.Trainer(max_epochs=60, **quiet_trainer).fit(model, datamodule=data)
    return model.history[-1]["test/acc"]


@pytest.mark.slow
def test_elr_beats_cross_entropy_on_noisy_blobs(quiet_trainer: dict) -> None:
    ce = final_test_acc([], quiet_trainer)
    elr = final_test_acc([ELR(momentum=0.7, weight=3.0)], quiet_trainer)
    assert elr > ce + 0.03, (elr, ce)
