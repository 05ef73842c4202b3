"""STORM-style meta loss rescaling: the 19 features against a literal re-statement of the authors' definitions,
the meta-gradient against finite differences, the inner update rules, BatchNorm and DDP guards, resume."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
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
from robustlabels.strategies import STRATEGIES, MetaLossRescaling
from robustlabels.strategies.meta_step import inner_update
from robustlabels.strategies.storm_features import (
    FeatureMemory,
    gaussian_kl,
    gaussian_overlap,
    pass_statistics,
    rescaler_features,
)
from robustlabels.types import Batch

EPS = 1e-8


# ---- a literal re-statement of the authors' per-sample and per-cell definitions (loops, Python floats) ----------
def reference_kl(p_mu: float, p_std: float, q_mu: float, q_std: float) -> float:
    if p_std == 0 or q_std == 0:
        return 0.0
    return math.log(q_std / p_std) + (p_std**2 + (p_mu - q_mu) ** 2) / (2 * q_std**2) - 0.5


def reference_overlap(mu1: float, s1: float, mu2: float, s2: float) -> float:
    return statistics.NormalDist(mu1, max(s1, EPS)).overlap(statistics.NormalDist(mu2, max(s2, EPS)))


def mean_std(values: list[float]) -> tuple[float, float]:
    mean = sum(values) / len(values) if values else math.nan
    return mean, statistics.stdev(values) if len(values) > 1 else EPS


def reference_features(rows: list[list[float]], labels: list[int], batch: list[int]) -> list[list[float]]:
    """``rows``: the memory of every sample seen (``[ℓ̄, ℓ̆, p̄, p̆, a]``), ``labels`` theirs; features of ``batch``."""
    features = []
    for i in batch:
        group = [r for r, y in zip(rows, labels, strict=True) if y == labels[i]]
        cell = [r for r in group if r[4] == rows[i][4]]  # the sample's own agreement category
        stats = [mean_std([r[k] for r in cell]) for k in range(4)]
        kls = [reference_kl(r[0], r[1], stats[0][0], stats[1][0]) for r in cell]
        ovls = [reference_overlap(r[0], r[1], stats[0][0], stats[1][0]) for r in cell]
        own = [*rows[i][:4], reference_kl(rows[i][0], rows[i][1], stats[0][0], stats[1][0]),
               reference_overlap(rows[i][0], rows[i][1], stats[0][0], stats[1][0])]  # fmt: skip
        cells = [*stats, mean_std(kls), mean_std(ovls)]
        features.append([v for k in range(6) for v in (own[k], *cells[k])] + [rows[i][4]])
    return features


def test_pass_statistics_by_hand() -> None:
    losses = torch.tensor([[1.0, 0.5], [2.0, 0.5], [3.0, 0.5]])  # G = 3 passes, B = 2
    logits = torch.tensor([[[2.0, 0.0], [0.0, 1.0]], [[0.0, 2.0], [0.0, 1.0]], [[0.0, 2.0], [1.0, 0.0]]])
    stats = pass_statistics(losses, logits, torch.tensor([0, 1]))
    top = torch.sigmoid(torch.tensor(2.0)).item()
    torch.testing.assert_close(stats[0, :4], torch.tensor([2.0, 1.0, top, 0.0], dtype=torch.float64))
    assert stats[:, 4].tolist() == [0.0, 1.0]  # sample 0: right once in 3; sample 1: twice
    tie = pass_statistics(losses[:2], logits[:2], torch.tensor([0, 1]))  # G = 2: one right, one wrong
    assert tie[0, 4] == 1.0  # a tie goes to pass 0, which was right
    single = pass_statistics(losses[:1], logits[:1], torch.tensor([0, 1]))
    assert single[:, 1].tolist() == [0.0, 0.0]  # the std of one pass is NaN in torch: 0, as the authors set


def test_gaussian_overlap_and_kl_match_the_reference() -> None:
    gen = torch.Generator().manual_seed(0)
    mu = torch.randn(200, 2, generator=gen, dtype=torch.float64)
    std = torch.rand(200, 2, generator=gen, dtype=torch.float64) + 0.05
    std[:20, 1] = std[:20, 0]  # equal variances take their own branch
    std[20:25, 0] = EPS  # floored stds
    got = gaussian_overlap(mu[:, 0], std[:, 0], mu[:, 1], std[:, 1])
    want = [reference_overlap(*map(float, (mu[i, 0], std[i, 0], mu[i, 1], std[i, 1]))) for i in range(200)]
    torch.testing.assert_close(got, torch.tensor(want, dtype=torch.float64), atol=1e-9, rtol=0)
    std[25:30, 0] = 0.0  # a zero std: KL is 0 by the authors' convention
    kl = gaussian_kl(mu[:, 0], std[:, 0], mu[:, 1], std[:, 1])
    want = [reference_kl(*map(float, (mu[i, 0], std[i, 0], mu[i, 1], std[i, 1]))) for i in range(200)]
    torch.testing.assert_close(kl, torch.tensor(want, dtype=torch.float64), atol=1e-9, rtol=1e-9)


def test_the_19_features_match_the_reference_including_tiny_cells() -> None:
    gen = torch.Generator().manual_seed(3)
    rows = torch.rand(14, 5, generator=gen, dtype=torch.float64)
    rows[:, 4] = torch.tensor([1, 1, 1, 0, 1, 1, 0, 1, 1, 1, 0, 1, 1, 1], dtype=torch.float64)
    rows[2, 1] = 0.0  # a zero loss std: KL 0
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2])  # class 1's disagree cell holds one row
    memory = FeatureMemory(num_groups=3, capacity=8)
    memory.update(rows[:7], labels[:7])
    memory.update(rows[7:], labels[7:])
    features = rescaler_features(rows, labels, memory.cells())
    want = reference_features(rows.tolist(), labels.tolist(), list(range(14)))
    assert features.shape == (14, 19)
    torch.testing.assert_close(features, torch.tensor(want, dtype=torch.float64), atol=1e-9, rtol=1e-9)
    assert features[6, 2] == EPS and features[6, 14] == EPS  # one value in the cell: std 1e-8


def test_memory_keeps_the_last_rows_per_group_and_resets() -> None:
    memory = FeatureMemory(num_groups=2, capacity=3)
    stats = torch.arange(30, dtype=torch.float64).view(6, 5)
    memory.update(stats, torch.tensor([0, 0, 1, 0, 0, 1]))
    assert memory.counts.tolist() == [3, 2]
    assert memory.rows[0, :3, 0].tolist() == [5.0, 15.0, 20.0]  # the 4 rows of group 0: the last 3 kept
    memory.reset()
    assert memory.counts.tolist() == [0, 0]


# ---- the inner update and the meta-gradient ---------------------------------------------------------------------
def test_reset_adam_is_adams_first_step() -> None:
    gen = torch.Generator().manual_seed(0)
    param = torch.nn.Parameter(torch.randn(5, 3, generator=gen))
    grad = torch.randn(5, 3, generator=gen) * torch.tensor([1.0, 1e-3, 0.0])  # including zero gradients
    fast = inner_update({"w": param}, [grad], rule="reset_adam", lr=0.05)["w"]
    adam = torch.optim.Adam([param], lr=0.05)
    param.grad = grad.clone()
    adam.step()
    torch.testing.assert_close(fast, param.detach(), rtol=0, atol=1e-7)


@pytest.mark.parametrize("rule", ["sgd", "reset_adam"])
def test_meta_gradient_equals_finite_differences(rule: str) -> None:
    """d/dω of ``Σ_j w_j(ω) ℓ_j(θ′(ω))`` with ``θ′ = θ − Δ(∇θ Σ_i w_i(ω) ℓ_i(θ))``, on a linear model in float64.

    The losses are scaled by 1e-7 so that ``reset_adam``'s gradients sit near its ε, where the path through
    ``θ′`` is not negligible; with ``sgd`` the scale does not matter."""
    torch.manual_seed(0)
    x, y = torch.randn(6, 4, dtype=torch.float64), torch.tensor([0, 1, 2, 0, 1, 2])
    xv, yv = torch.randn(5, 4, dtype=torch.float64), torch.tensor([2, 1, 0, 0, 1])
    theta = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    scale = 1e-7 if rule == "reset_adam" else 1.0

    def meta_loss(omega: torch.Tensor) -> torch.Tensor:
        weights = torch.sigmoid(omega * torch.arange(6, dtype=torch.float64))
        inner = scale * (weights * F.cross_entropy(x @ theta, y, reduction="none")).sum()
        (grad,) = torch.autograd.grad(inner, [theta], create_graph=True)
        fast = inner_update({"theta": theta}, [grad], rule=rule, lr=0.5)["theta"]  # type: ignore[arg-type]
        meta_weights = torch.sigmoid(omega * torch.ones(5, dtype=torch.float64))
        return (meta_weights * F.cross_entropy(xv @ fast, yv, reduction="none")).sum()

    omega = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    (analytic,) = torch.autograd.grad(meta_loss(omega), [omega])
    h = 1e-6
    numeric = (meta_loss(omega.detach() + h) - meta_loss(omega.detach() - h)) / (2 * h)
    torch.testing.assert_close(analytic, numeric.detach(), rtol=1e-5, atol=1e-9)


# ---- the strategy --------------------------------------------------------------------------------------------------
def blobs(batch_size: int = 32) -> BlobsDataModule:
    return BlobsDataModule(num_samples=320, test_samples=100, noise=SymmetricNoise(rate=0.3), batch_size=batch_size)


def storm_module(dm: Any, **kwargs: Any) -> RobustModule:
    torch.manual_seed(0)
    optimizer = lambda params: torch.optim.Adam(params, lr=0.05)  # noqa: E731
    return RobustModule(MetaLossRescaling(**kwargs), backbone="mlp", backbone_kwargs={"depth": 0},  # linear
                        num_classes=dm.num_classes, input_shape=dm.input_shape, optimizer=optimizer)  # fmt: skip


def test_registered_and_validates_arguments() -> None:
    assert STRATEGIES.get("meta_loss_rescaling") is MetaLossRescaling
    for bad in ({"mode": "mwnet"}, {"inner_update": "adagrad"}, {"passes": 0}, {"pass_dropout": 1.0},
                {"features": "grad"}, {"first_order": True, "meta_loss_rescaling": False}):  # fmt: skip
        with pytest.raises(InputError):
            MetaLossRescaling(**bad)


def test_extra_passes_leave_batchnorm_statistics_and_features_carry_no_gradient() -> None:
    torch.manual_seed(0)
    nets = Networks("cnn9", count=1, input_shape=(3, 32, 32), num_classes=4)
    strategy = MetaLossRescaling()
    strategy.setup_networks(nets)
    batch = Batch(torch.randn(6, 3, 32, 32), torch.arange(6) % 4, torch.arange(6), torch.full((6,), -1))
    bn = next(m for m in nets.modules() if isinstance(m, torch.nn.BatchNorm2d))
    before = bn.running_mean.clone()
    logits = nets.functional(dict(nets.named_parameters()), batch.inputs).logits[0]
    losses = F.cross_entropy(logits, batch.targets, reduction="none")
    features, groups = strategy.features_of(nets, dict(nets.named_parameters()), batch, losses, logits, "train_batch")
    assert torch.equal(bn.running_mean, before)
    assert features.shape == (6, 19) and not features.requires_grad and torch.isfinite(features).all()
    assert torch.equal(groups, batch.targets)


@pytest.mark.parametrize("kwargs", [{}, {"mode": "storm_mwstyle", "inner_update": "sgd"}, {"first_order": True},
                                    {"features": "loss", "class_separation": False}, {"rescale": False}])
def test_fit_runs_and_learns_the_rescaler(kwargs: dict[str, Any], quiet_trainer: dict[str, object]) -> None:
    dm = blobs()
    model = storm_module(dm, **kwargs)
    before = [p.clone() for p in model.strategy.rescaler.parameters()]
    trainer = pl.Trainer(max_epochs=2, **quiet_trainer)
    trainer.fit(model, datamodule=dm)
    assert trainer.global_step == 2 * trainer.num_training_batches
    moved = any(not torch.equal(a, b) for a, b in zip(before, model.strategy.rescaler.parameters(), strict=True))
    assert moved == kwargs.get("rescale", True)  # the baseline has no meta step
    assert model.history[-1]["test/acc"] > 0.5
    if not kwargs:  # the epoch diagnostics: weights against the true labels, and ω's two gradient paths
        last = model.history[-1]
        assert 0.0 <= last["train/weight_auc"] <= 1.0 and last["train/grad_path_direct"] > 0
        assert last["train/grad_path_theta"] >= 0 and len(model.strategy.diagnostics()["weight_histograms"]) == 2


def test_the_run_folder_gets_the_weight_histograms(tmp_path: Path) -> None:
    from pytorch_lightning.loggers import CSVLogger

    dm = blobs()
    model = storm_module(dm)
    pl.Trainer(max_epochs=1, logger=CSVLogger(tmp_path, name="run"), enable_checkpointing=False,
               enable_progress_bar=False, enable_model_summary=False).fit(model, datamodule=dm)  # fmt: skip
    (path,) = tmp_path.glob("run/version_0/diagnostics.json")
    (epoch,) = json.loads(path.read_text())["weight_histograms"]
    assert epoch["epoch"] == 0 and sum(epoch["clean"]) + sum(epoch["flipped"]) == len(dm.datasets["train"])


def test_storm_mode_refuses_ddp(monkeypatch: pytest.MonkeyPatch, noisy_batch: Batch) -> None:
    import torch.distributed as dist

    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    with pytest.raises(InputError, match="storm_mwstyle"):
        MetaLossRescaling().manual_step(None, noisy_batch, noisy_batch, None)  # type: ignore[arg-type]


@pytest.mark.filterwarnings("ignore:The dirpath has changed")
def test_resume_restores_rescaler_its_optimizer_and_memory(tmp_path: Path) -> None:
    def fit(folder: str, epochs: int, ckpt: str | None = None) -> RobustModule:
        dm = blobs()
        model = storm_module(dm)
        pl.seed_everything(0)
        trainer = pl.Trainer(max_epochs=epochs, default_root_dir=tmp_path / folder, logger=False,
                             enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
        trainer.fit(model, datamodule=dm, ckpt_path=ckpt)
        return model

    straight = fit("straight", 3)
    fit("first", 2)
    (ckpt,) = (tmp_path / "first" / "checkpoints").glob("*.ckpt")
    resumed = fit("resumed", 3, str(ckpt))
    torch.testing.assert_close(resumed.state_dict(), straight.state_dict(), rtol=0, atol=0)
    assert int(straight.strategy.memories["train_batch"].counts.sum()) > 0
