"""ELR against hand-computed values, the update order, and a checkpoint round trip."""

from __future__ import annotations

import math

import pytest
import pytorch_lightning as pl
import torch

from robustlabels.errors import InputError
from robustlabels.regularizers import ELR
from robustlabels.regularizers.elr import elr_probs, elr_target_update, elr_term
from robustlabels.types import Batch, Forward


def batch_of(index: list[int]) -> Batch:
    n = len(index)
    return Batch(torch.zeros(n, 1), torch.zeros(n, dtype=torch.long), torch.tensor(index), torch.zeros(n).long())


def test_term_matches_hand_computation() -> None:
    logits = torch.tensor([[0.0, math.log(3.0)]])  # softmax = [0.25, 0.75]
    target = torch.tensor([[0.5, 0.5]])
    assert elr_term(elr_probs(logits), target).item() == pytest.approx(math.log(1 - 0.5), rel=1e-6)


def test_probabilities_are_clamped_not_renormalised() -> None:
    probs = elr_probs(torch.tensor([[30.0, 0.0, 0.0]]))
    assert probs[0, 1].item() == pytest.approx(1e-4) and probs[0, 0].item() == pytest.approx(1 - 1e-4)
    assert probs.sum().item() > 1.0  # no renormalisation for the regularizer


def test_first_visit_updates_the_zero_target_before_the_term() -> None:
    """t starts at 0; after the first visit t = (1 − β)·p̂, and the term already uses that updated t."""
    elr = ELR(momentum=0.7, weight=2.0)
    elr.setup(num_samples=3, num_classes=2)
    logits = torch.tensor([[0.0, math.log(3.0)]], requires_grad=True)
    value = elr(batch_of([1]), Forward((logits,), (logits,)))
    p = torch.tensor([0.25, 0.75])
    t = 0.3 * p
    assert torch.allclose(elr.targets[1], t) and elr.targets[[0, 2]].abs().sum() == 0
    assert value.item() == pytest.approx(2.0 * math.log(1 - float((t * p).sum())), rel=1e-5)
    value.backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_second_visit_is_an_ema_per_sample() -> None:
    rows = torch.tensor([[0.2, 0.8]])
    probs = torch.tensor([[0.5, 0.5]])
    assert torch.allclose(elr_target_update(rows, probs, 0.9), 0.9 * rows + 0.1 * probs)


def test_presets_and_validation() -> None:
    assert (ELR(preset="cifar10_asym").momentum, ELR(preset="cifar10_asym").weight) == (0.9, 1.0)
    assert ELR(preset="cifar100", weight=5.0).weight == 5.0
    with pytest.raises(InputError, match="preset"):
        ELR(preset="imagenet")
    with pytest.raises(InputError, match="momentum"):
        ELR(momentum=1.0)


def test_mislabel_scores_and_flags() -> None:
    elr = ELR()
    elr.setup(num_samples=3, num_classes=2)
    elr.targets.copy_(torch.tensor([[0.9, 0.1], [0.2, 0.6], [0.0, 0.0]]))
    labels = torch.tensor([0, 0, 1])
    assert elr.mislabel_flags(labels).tolist() == [False, True, False]
    assert torch.allclose(elr.mislabel_scores(labels), torch.tensor([0.1, 0.75, 0.0]))


def test_targets_survive_a_checkpoint_round_trip(tmp_path, quiet_trainer) -> None:
    from robustlabels.data import BlobsDataModule
    from robustlabels.module import RobustModule
    from robustlabels.noise import SymmetricNoise

    def build() -> tuple[RobustModule, BlobsDataModule]:
        dm = BlobsDataModule(num_samples=200, test_samples=50, noise=SymmetricNoise(rate=0.3), batch_size=50)
        return RobustModule(regularizers=[ELR()], num_classes=4, input_shape=(16,)), dm

    model, dm = build()
    trainer = pl.Trainer(max_epochs=2, **{**quiet_trainer, "enable_checkpointing": True}, default_root_dir=tmp_path)
    trainer.fit(model, datamodule=dm)
    targets = model.regularizers[0].targets.clone()
    assert targets.shape == (len(dm.datasets["train"]), 4) and (targets.sum(1) > 0).all()
    ckpt = tmp_path / "elr.ckpt"
    trainer.save_checkpoint(ckpt)
    restored, dm2 = build()
    trainer2 = pl.Trainer(max_epochs=2, **quiet_trainer)
    trainer2.fit(restored, datamodule=dm2, ckpt_path=ckpt)  # already at max_epochs: restores, trains nothing
    assert torch.equal(restored.regularizers[0].targets, targets)
