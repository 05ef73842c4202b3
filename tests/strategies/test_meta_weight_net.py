"""Meta-Weight-Net and L2RW: L2RW's weights are gradient alignments, both down-weight flipped samples in a fit,
and their clean meta set is checked."""

from __future__ import annotations

from typing import Any

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from robustlabels.data import BlobsDataModule
from robustlabels.errors import InputError
from robustlabels.module import RobustModule
from robustlabels.networks import Networks
from robustlabels.noise import SymmetricNoise
from robustlabels.strategies import L2RW, MetaWeightNet
from robustlabels.strategies.base import ManualStep
from robustlabels.types import Batch


def test_l2rw_weights_are_the_positive_gradient_alignments_normalised() -> None:
    """At ε = 0, −∂L_meta(θ − lr·∇θ mean_i ε_i ℓ_i)/∂ε_i = (lr/B)·⟨∇L_meta(θ), ∇ℓ_i(θ)⟩."""
    torch.manual_seed(0)
    nets = Networks("mlp", count=1, input_shape=(5,), num_classes=3, backbone_kwargs={"depth": 0})
    batch = Batch(torch.randn(8, 5), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1]), torch.arange(8), torch.full((8,), -1))
    meta = Batch(torch.randn(6, 5), torch.tensor([0, 1, 2, 2, 1, 0]), torch.arange(6), torch.full((6,), -1))
    optimizer = torch.optim.SGD(nets.parameters(), lr=0.1)
    strategy = L2RW(clean_meta_per_class=1)
    seen: dict[str, torch.Tensor] = {}
    ctx = ManualStep(nets, optimizer, [], backward=torch.Tensor.backward, after_step=lambda n: None,
                     add_regularizers=lambda loss, b, out: seen.setdefault("loss", loss))  # fmt: skip
    params = list(nets.parameters())
    meta_grad = torch.autograd.grad(F.cross_entropy(nets(meta.inputs).logits[0], meta.targets), params)
    alignments = []
    for i in range(8):
        grad_i = torch.autograd.grad(F.cross_entropy(nets(batch.inputs[i : i + 1]).logits[0], batch.targets[i : i + 1]),
                                     params)  # fmt: skip
        alignments.append(sum((a * b).sum() for a, b in zip(meta_grad, grad_i, strict=True)))
    expected = torch.stack(alignments).clamp_min(0)
    expected = expected / expected.sum()
    result = strategy.manual_step(nets, batch, meta, ctx)
    weights = result.logs["weight_mean"] * 8  # the logged weights are B·w, whose mean is 1
    assert float(weights) == pytest.approx(8.0, rel=1e-5)
    losses = F.cross_entropy(result.out.logits[0], batch.targets, reduction="none")  # type: ignore[union-attr]
    torch.testing.assert_close(seen["loss"], (losses * expected).sum(), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(("cls", "epochs"), [(MetaWeightNet, 8), (L2RW, 4)])
def test_flipped_samples_get_less_weight_in_a_fit(cls: Any, epochs: int, quiet_trainer: dict[str, object]) -> None:
    dm = BlobsDataModule(num_samples=600, test_samples=200, noise=SymmetricNoise(rate=0.4), batch_size=50)
    torch.manual_seed(0)
    model = RobustModule(cls(clean_meta_per_class=10, meta_batch_size=20), backbone="mlp",
                         backbone_kwargs={"hidden": 32}, num_classes=dm.num_classes, input_shape=dm.input_shape,
                         optimizer=lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9))  # fmt: skip
    trainer = pl.Trainer(max_epochs=epochs, **quiet_trainer)  # MW-Net first raises every weight, then shapes V(ℓ)
    trainer.fit(model, datamodule=dm)
    last = model.history[-1]
    assert last["train/weight_mean_clean"] > last["train/weight_mean_flipped"] and last["train/weight_auc"] > 0.6
    assert model.history[-1]["test/acc"] > 0.8


def test_the_clean_meta_set_is_checked() -> None:
    with pytest.raises(InputError, match="at most one"):
        MetaWeightNet(meta_indices=[0, 1], clean_meta_per_class=5)
    with pytest.raises(InputError, match=">= 1"):
        L2RW(clean_meta_per_class=0)
    dm = BlobsDataModule(num_samples=200, test_samples=50, batch_size=32)
    dm.setup("fit")
    with pytest.raises(InputError, match="class 0"):  # more per class than the split holds
        dm.serve_meta_stream(MetaWeightNet(clean_meta_per_class=1000).meta_stream)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="positions"):
        dm.serve_meta_stream(L2RW(meta_indices=[0, 10_000], meta_batch_size=2).meta_stream)  # type: ignore[arg-type]
    dm.serve_meta_stream(L2RW(clean_meta_per_class=3, meta_batch_size=6).meta_stream)  # type: ignore[arg-type]
    chosen = dm.meta_pool
    train = dm.datasets["train"]
    assert len(chosen) == 3 * dm.num_classes
    assert torch.bincount(train.clean_targets[chosen], minlength=dm.num_classes).tolist() == [3] * dm.num_classes


def test_weight_tally_leaves_out_non_finite_weights() -> None:
    """A diverged step's NaN weights do not end the run: the epoch's AUC and means come from the finite ones."""
    from robustlabels.strategies.diagnostics import WeightTally

    tally = WeightTally()
    targets, clean = torch.tensor([0, 1, 0, 1]), torch.tensor([0, 1, 1, 0])  # rows 0-1 clean, 2-3 flipped
    tally.add(torch.tensor([0.9, 0.8, 0.1, float("nan")]), Batch(torch.zeros(4, 1), targets, torch.arange(4), clean))
    scalars, histogram = tally.close_epoch()
    assert scalars["weight_auc"] == 1.0
    assert scalars["weight_mean_clean"] == pytest.approx(0.85) and scalars["weight_mean_flipped"] == pytest.approx(0.1)
    assert sum(histogram["clean"]) == 2 and sum(histogram["flipped"]) == 1
