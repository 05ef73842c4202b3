"""Nested dropout: the k distribution (docs/methods.md), masks, prefix scoring, bias-free heads, K selection."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from robustlabels.data import BlobsDataModule
from robustlabels.errors import InputError
from robustlabels.fit import main
from robustlabels.module import RobustModule
from robustlabels.nn.backbones import create_backbone
from robustlabels.nn.nested_dropout import (
    NestedDropout,
    PrefixTally,
    nested_k_probs,
    prefix_logits,
    prefix_mask,
    select_k,
)
from robustlabels.noise import SymmetricNoise
from robustlabels.strategies import CrossEntropy

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("sigma", "mean", "median", "p95"), [(10, 6.0, 5, 14), (100, 57.0, 48, 139)])
def test_k_distribution_matches_methods_md(sigma: float, mean: float, median: int, p95: int) -> None:
    probs = nested_k_probs(512, sigma)
    cdf = probs.cumsum(0)
    assert float((probs * torch.arange(1, 513)).sum()) == pytest.approx(mean, abs=0.3)
    assert int((cdf < 0.5).sum()) + 1 == median and int((cdf < 0.95).sum()) + 1 == p95
    assert probs[0] > probs[1] > probs[100]  # half-Gaussian from k = 1, not a geometric law


def test_sampled_k_has_the_methods_md_mean() -> None:
    layer = NestedDropout(sigma=10.0)
    gen = torch.Generator().manual_seed(0)
    draws = torch.tensor([layer.draw_k(256, generator=gen) for _ in range(20_000)], dtype=torch.float64)
    assert draws.min() >= 1 and draws.max() <= 256
    assert float(draws.mean()) == pytest.approx(5.97, abs=0.08)  # exact mean 5.969; the paper: "mean 6"
    assert float(draws.median()) == 5


def test_mask_zeroes_the_tail_without_rescaling() -> None:
    features = torch.arange(1.0, 9.0).repeat(2, 1)
    assert prefix_mask(features, 3).tolist() == [[1, 2, 3, 0, 0, 0, 0, 0]] * 2
    assert prefix_mask(features, 8) is features and torch.equal(prefix_mask(features, torch.tensor(8)), features)


def test_one_k_per_batch_shared_by_networks_in_training_and_best_k_in_eval() -> None:
    layer = NestedDropout(sigma=2.0)
    features = (torch.ones(5, 16), 2 * torch.ones(5, 16))
    torch.manual_seed(0)
    for _ in range(20):
        a, b = layer.apply_shared(features)
        kept = int((a[0] != 0).sum())
        assert (a != 0).sum(1).eq(kept).all() and torch.equal(b, 2 * a)  # same k for every row and net
    layer.eval()
    assert torch.equal(layer(features[0]), features[0])  # no K selected yet: all channels
    layer.best_k.fill_(4)
    assert int((layer(features[0])[0] != 0).sum()) == 4


def test_prefix_logits_equal_the_masked_head() -> None:
    torch.manual_seed(0)
    features, weight = torch.randn(7, 12), torch.randn(3, 12)
    prefixes = prefix_logits(features, weight)
    assert prefixes.shape == (7, 12, 3)
    for k in range(1, 13):
        torch.testing.assert_close(prefixes[:, k - 1], prefix_mask(features, k) @ weight.T)


def test_select_k_penalises_larger_k() -> None:
    correct = torch.tensor([10.0, 60.0, 90.0, 90.0, 90.5])  # out of 100
    assert select_k(correct, 100.0, penalty=1e-5) == 5  # K=5 gains 0.005 over K=3, more than 2e-5
    assert select_k(correct, 100.0, penalty=0.01) == 3  # 0.005 no longer pays for 2 more channels (0.02)
    assert select_k(correct[:4], 100.0, penalty=1e-5) == 3  # K=3 and K=4 equally accurate: the smaller
    assert select_k(torch.tensor([5.0, 5.0]), 10.0, penalty=0.0) == 1  # ties: the smaller K


def test_tally_matches_direct_evaluation_at_each_k() -> None:
    torch.manual_seed(0)
    features = [torch.randn(50, 6), torch.randn(50, 6)]
    weights = [torch.randn(3, 6), torch.randn(3, 6)]
    targets, clean = torch.randint(0, 3, (50,)), torch.randint(0, 3, (50,))
    tally = PrefixTally()
    tally.update([f[:20] for f in features], weights, targets[:20], clean[:20])
    tally.update([f[20:] for f in features], weights, targets[20:], clean[20:])
    for k in (1, 4, 6):
        logits = [prefix_mask(f, k) @ w.T for f, w in zip(features, weights, strict=True)]
        mean = (logits[0] + logits[1]) / 2
        metrics = tally.metrics(k, split="val")
        assert metrics["acc"] == pytest.approx(float((mean.argmax(1) == targets).float().mean()))
        assert metrics["acc_clean"] == pytest.approx(float((mean.argmax(1) == clean).float().mean()))
        assert metrics["loss"] == pytest.approx(float(torch.nn.functional.cross_entropy(mean, targets)), rel=1e-5)
        assert metrics["acc_net1"] == pytest.approx(float((logits[1].argmax(1) == targets).float().mean()))


HEADS = [("mlp", (1, 8, 8)), ("small_cnn", (1, 28, 28)), ("resnet10t", (3, 32, 32))]  # resnet10t: a timm model


@pytest.mark.parametrize(("name", "shape"), HEADS)
def test_heads_lose_their_bias(name: str, shape: tuple[int, ...]) -> None:
    net = create_backbone(name, input_shape=shape, num_classes=5)
    assert net.linear_head().bias is not None
    net.remove_head_bias()
    head = net.linear_head()
    assert head.bias is None and head.weight.shape == (5, net.feature_dim)
    assert net(torch.randn(2, *shape)).shape == (2, 5)


def test_options_are_validated() -> None:
    with pytest.raises(InputError, match="sigma"):
        NestedDropout(sigma=0.0)
    with pytest.raises(InputError, match="penalty"):
        NestedDropout(penalty=-1.0)


def test_fit_selects_k_and_logs_at_it(quiet_trainer: dict[str, object]) -> None:
    dm = BlobsDataModule(num_samples=300, test_samples=100, noise=SymmetricNoise(rate=0.3), batch_size=64)
    torch.manual_seed(0)
    model = RobustModule(CrossEntropy(), backbone="mlp", backbone_kwargs={"hidden": 32}, num_classes=dm.num_classes,
                         input_shape=dm.input_shape, nested_dropout=NestedDropout(sigma=5.0))  # fmt: skip
    pl.seed_everything(0)
    pl.Trainer(max_epochs=2, **quiet_trainer).fit(model, datamodule=dm)
    last = model.history[-1]
    best_k = int(model.nets.nested_dropout.best_k)
    assert 1 <= best_k <= 32 and last["val/nested_k"] == best_k
    assert {"val/acc", "val/loss", "val/acc_clean", "test/acc"} <= last.keys()
    # trainer.test uses the saved K in eval mode and agrees with the test accuracy logged at that K
    test = pl.Trainer(**quiet_trainer).test(model, datamodule=dm, verbose=False)[0]
    assert test["test/acc"] == pytest.approx(last["test/acc"], abs=1e-6)


def test_nested_dropout_config_runs_fast_dev_run(tmp_path: Path) -> None:
    config = ROOT / "configs" / "fashion_mnist" / "nested_dropout.yaml"
    args = ["--config", str(config), "--trainer.fast_dev_run=true", "--data.init_args.fake=true",
            "--trainer.default_root_dir", str(tmp_path), "--trainer.logger=false", "--trainer.accelerator=cpu",
            "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]  # fmt: skip
    assert main(args) == 0
