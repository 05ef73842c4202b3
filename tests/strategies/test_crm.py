"""CRM-style collaborative reward filtering, the pairwise baselines, and training on pairs end to end."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from robustlabels.data import PairDataModule
from robustlabels.errors import InputError
from robustlabels.module import RobustModule
from robustlabels.noise import SymmetricNoise
from robustlabels.strategies import (
    BradleyTerry,
    CollaborativeRewardFilter,
    ConservativeBradleyTerry,
    RewardEnsemble,
)
from robustlabels.strategies.crm import curriculum_order, estimate_swap_rate, keep_ratio, top_margin
from robustlabels.strategies.pairwise import label_margin
from robustlabels.types import Batch, Forward, TrainData


def pair_logits(s: list[float]) -> torch.Tensor:
    t = torch.tensor(s)
    return torch.stack([t / 2, -t / 2], 1).requires_grad_()


def test_label_margin_is_the_signed_reward_difference() -> None:
    logits = pair_logits([2.0, -1.0, 0.5])
    assert label_margin(logits, torch.tensor([0, 0, 1])).tolist() == [2.0, -1.0, -0.5]
    three = torch.tensor([[1.0, 3.0, 2.0]])
    assert label_margin(three, torch.tensor([2])).tolist() == [-1.0]


def test_keep_ratio_ramp_and_constant() -> None:
    assert keep_ratio(0, 0.4, ramp_epochs=10) == 1.0
    assert keep_ratio(5, 0.4, ramp_epochs=10) == pytest.approx(0.8)
    assert keep_ratio(30, 0.4, ramp_epochs=10) == pytest.approx(0.6)
    assert keep_ratio(0, 0.4, ramp_epochs=0) == pytest.approx(0.6)


def test_top_margin_breaks_ties_by_position() -> None:
    margins = torch.tensor([1.0, 3.0, 1.0, 1.0, 3.0])
    assert top_margin(margins, 0.6).tolist() == [1, 4, 0]
    assert top_margin(margins, 0.0).tolist() == [1]  # at least one pair is kept


def test_curriculum_order_is_easy_to_hard_and_buckets_shuffle_within_parts() -> None:
    margins = torch.tensor([0.5, float("nan"), 3.0, -1.0, 2.0, 0.5])
    assert curriculum_order(margins, buckets=1, seed=0).tolist() == [2, 4, 0, 5, 3, 1]
    many = torch.randn(100)
    order = curriculum_order(many, buckets=4, seed=3)
    assert sorted(order.tolist()) == list(range(100))
    ranks = torch.empty(100, dtype=torch.long)
    ranks[torch.sort(-many).indices] = torch.arange(100)
    buckets = [sorted((ranks[order[k * 25 : (k + 1) * 25]] // 25).tolist()) for k in range(4)]
    assert buckets == [[k] * 25 for k in range(4)]
    assert not torch.equal(order, curriculum_order(many, buckets=4, seed=4))


@pytest.mark.parametrize("method", ["gmm", "negative_margin"])
def test_swap_rate_estimate_on_separated_margins(method: str) -> None:
    gen = torch.Generator().manual_seed(0)
    clean, swapped = torch.randn(7000, generator=gen) * 0.7 + 3.0, torch.randn(3000, generator=gen) * 0.7 - 3.0
    estimate = estimate_swap_rate(torch.cat([clean, swapped, torch.tensor([float("nan")])]), method=method)
    assert abs(estimate - 0.3) < 0.02


def crm_batch() -> tuple[Batch, Forward]:
    """8 pairs, all labelled side 0; model A is sure of pairs 0, 1, 4, 5; model B of pairs 2, 3, 6, 7."""
    s_a = [4.0, 3.0, -1.0, -2.0, 2.0, 1.0, -3.0, -4.0]
    s_b = [-4.0, -3.0, 1.0, 2.0, -2.0, -1.0, 3.0, 4.0]
    z_a, z_b = pair_logits(s_a), pair_logits(s_b)
    targets = torch.zeros(8, dtype=torch.long)
    clean = torch.tensor([0, 0, 0, 1, 0, 0, 1, 1])
    return Batch(torch.zeros(8, 2, 1), targets, torch.arange(8), clean), Forward((z_a, z_b), (z_a, z_b))


@pytest.mark.parametrize(("review", "for_a", "for_b"), [("peer", [2, 3], [4, 5]), ("self", [0, 1], [6, 7])])
def test_each_model_trains_on_what_its_reviewer_keeps(review: str, for_a: list[int], for_b: list[int]) -> None:
    strategy = CollaborativeRewardFilter(noise_rate=0.5, ramp_epochs=0, review=review)
    strategy.setup(TrainData(8, 2, torch.zeros(8, 2, 1), torch.zeros(8, dtype=torch.long)))
    strategy.on_train_epoch_start(0)
    batch, out = crm_batch()
    result = strategy.compute_loss(batch, out)
    result.loss.backward()
    grads_a, grads_b = out.logits[0].grad, out.logits[1].grad
    assert grads_a is not None and grads_b is not None
    assert torch.nonzero(grads_a.abs().sum(1)).flatten().tolist() == for_a  # A learns only from its half, filtered
    assert torch.nonzero(grads_b.abs().sum(1)).flatten().tolist() == for_b
    expected = sum(F.softplus(-out.logits[0][i, 0] * 2).item() for i in for_a) / 2
    expected += sum(F.softplus(-out.logits[1][i, 0] * 2).item() for i in for_b) / 2
    assert float(result.loss.detach()) == pytest.approx(expected, rel=1e-6)
    assert strategy.kept.tolist() == [1.0 if i in for_a + for_b else 0.0 for i in range(8)]
    assert strategy.margins[0].tolist() == [4.0, 3.0, -1.0, -2.0, 2.0, 1.0, -3.0, -4.0]


def test_sample_table_ranks_the_pairs_both_models_doubt() -> None:
    strategy = CollaborativeRewardFilter(noise_rate=0.25, ramp_epochs=0)
    strategy.setup(TrainData(8, 2, torch.zeros(8, 2, 1), torch.zeros(8, dtype=torch.long)))
    strategy.on_train_epoch_start(0)
    batch, out = crm_batch()
    strategy.compute_loss(batch, out)
    table = strategy.sample_table()
    assert table["suspicion"].tolist() == [0.0] * 8  # A and B disagree exactly everywhere
    strategy.margins[1] = strategy.margins[0]
    table = strategy.sample_table()
    assert torch.nonzero(table["flagged"]).flatten().tolist() == [6, 7]  # round(0.25 * 8) most doubted
    assert set(table) == {"suspicion", "flagged", "margin_a", "margin_b", "keep_frequency"}


def test_epoch_plan_visits_easy_pairs_first_after_the_warm_up() -> None:
    strategy = CollaborativeRewardFilter(noise_rate=0.2, curriculum="sorted")
    strategy.setup(TrainData(4, 2, torch.zeros(4, 2, 1), torch.zeros(4, dtype=torch.long)))
    assert strategy.on_train_epoch_start(0) is None
    strategy.margins.copy_(torch.tensor([[0.0, 5.0, -2.0, 1.0], [0.0, 5.0, -2.0, 1.0]]))
    plan = strategy.on_train_epoch_start(1)
    assert plan is not None and plan.sample_order is not None and plan.sample_order.tolist() == [1, 3, 0, 2]
    assert CollaborativeRewardFilter().on_train_epoch_start(3) is None  # the default: no curriculum sort


def test_bad_options_are_one_line_errors() -> None:
    with pytest.raises(InputError, match="batch_mode"):
        CollaborativeRewardFilter(batch_mode="half")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="ramp_epochs >= 0"):
        CollaborativeRewardFilter(ramp_epochs=-1)
    with pytest.raises(InputError, match="epsilon"):
        ConservativeBradleyTerry(epsilon=0.5)


def test_conservative_bradley_terry_is_the_cdpo_loss() -> None:
    logits, targets, eps = pair_logits([1.5, -0.5]), torch.tensor([0, 1]), 0.2
    s = torch.tensor([1.5, -0.5])
    signed = torch.where(targets == 0, s, -s)
    expected = ((1 - eps) * F.softplus(-signed) + eps * F.softplus(signed)).mean()
    got = ConservativeBradleyTerry(epsilon=eps).compute_loss(Batch(logits, targets, targets, targets),
                                                             Forward((logits,), (logits,))).loss  # fmt: skip
    assert float(got) == pytest.approx(float(expected), rel=1e-6)
    bt = BradleyTerry().compute_loss(Batch(logits, targets, targets, targets), Forward((logits,), (logits,))).loss
    assert float(bt) == pytest.approx(float(F.softplus(-signed).mean()), rel=1e-6)


def test_reward_ensemble_trains_both_members_on_everything() -> None:
    z_a, z_b = pair_logits([1.0, -2.0]), pair_logits([0.5, 3.0])
    targets = torch.tensor([0, 1])
    loss = RewardEnsemble().compute_loss(Batch(z_a, targets, targets, targets), Forward((z_a, z_b), (z_a, z_b))).loss
    loss.backward()
    assert z_a.grad is not None and z_b.grad is not None
    assert (z_a.grad.abs().sum(1) > 0).all() and (z_b.grad.abs().sum(1) > 0).all()


# ---- end to end: pairs through fit, an audit table, and a resume ------------------------------------------
def write_pairs(path: Path, n: int, seed: int) -> str:
    """Pairs whose preferred side says "good" more often: a linear reward on TF-IDF can learn it."""
    rng = np.random.default_rng(seed)
    vocab = ["good", "great", "fine", "bad", "poor", "dull", "plot", "actor", "scene", "film"]
    rows = []
    for i in range(n):
        good = " ".join(rng.choice(vocab[:3] + vocab[6:], 8)) + f" x{i}"
        bad = " ".join(rng.choice(vocab[3:], 8)) + f" y{i}"
        rows.append(json.dumps({"prompt": "", "chosen": good, "rejected": bad}))
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return str(path)


def fit_pairs(tmp_path: Path, quiet_trainer: dict, *, epochs: int, ckpt: str | None = None,
              root: str = "run") -> tuple[RobustModule, pl.Trainer, PairDataModule]:  # fmt: skip
    pl.seed_everything(0, verbose=False)
    train, test = write_pairs(tmp_path / "train.jsonl", 300, 0), write_pairs(tmp_path / "test.jsonl", 100, 1)
    data = PairDataModule(train, test, features="tfidf", max_features=64, noise=SymmetricNoise(0.3), noise_seed=2,
                          batch_size=32, val_fraction=0.1)  # fmt: skip
    model = RobustModule(CollaborativeRewardFilter(noise_rate=0.3, ramp_epochs=2), backbone="pairwise",
                         backbone_kwargs={"hidden": 16}, num_classes=2, input_shape=data.input_shape,
                         optimizer=lambda p: torch.optim.Adam(p, lr=1e-2))  # fmt: skip
    options = {**quiet_trainer, "logger": pl.loggers.CSVLogger(str(tmp_path), name=root), "enable_checkpointing": True}
    trainer = pl.Trainer(max_epochs=epochs, **options)
    trainer.fit(model, datamodule=data, ckpt_path=ckpt)
    return model, trainer, data


def test_crm_on_pairs_learns_flags_swaps_and_resumes_exactly(tmp_path: Path, quiet_trainer: dict) -> None:
    full, trainer, data = fit_pairs(tmp_path, quiet_trainer, epochs=4)
    assert full.history[-1]["test/acc"] > 0.9
    rows = list(csv.DictReader((Path(trainer.log_dir) / "issues.csv").open()))
    assert len(rows) == len(data.datasets["train"]) and rows[0]["rank"] == "1"
    swapped = np.array([r["given_label"] != r["true_label"] for r in rows])
    flagged = np.array([r["flagged"] == "1" for r in rows])
    assert flagged.sum() == round(0.3 * len(rows))
    precision, recall = swapped[flagged].mean(), flagged[swapped].mean()
    assert precision > 0.8 and recall > 0.7  # the audit table finds the swapped pairs
    suspicion = [float(r["suspicion"]) for r in rows]
    assert suspicion == sorted(suspicion, reverse=True)

    _, half, _ = fit_pairs(tmp_path, quiet_trainer, epochs=2, root="half")
    ckpt = str(next(Path(half.log_dir).glob("checkpoints/*.ckpt")))
    resumed, _, _ = fit_pairs(tmp_path, quiet_trainer, epochs=4, ckpt=ckpt, root="resumed")
    for name in ("margins", "kept", "seen"):
        assert torch.equal(getattr(resumed.strategy, name), getattr(full.strategy, name)), name
    for a, b in zip(resumed.nets.parameters(), full.nets.parameters(), strict=True):
        assert torch.allclose(a, b)
    assert math.isclose(resumed.history[-1]["test/acc"], full.history[-1]["test/acc"])


def test_epoch_selection_keeps_the_reviewers_globally_best_pairs() -> None:
    """selection="epoch": the peer's recorded margins over all pairs decide; a half-batch may keep none."""
    strategy = CollaborativeRewardFilter(noise_rate=0.5, ramp_epochs=0, selection="epoch", curriculum="none")
    strategy.setup(TrainData(8, 2, torch.zeros(8, 2, 1), torch.zeros(8, dtype=torch.long)))
    strategy.margins.copy_(torch.tensor([[9.0, 8, 7, 6, 5, 4, 3, 2], [2.0, 3, 4, 5, 6, 7, 8, 9]]))
    strategy.on_train_epoch_start(1)  # A trains on B's top half {4..7}, B on A's top half {0..3}
    batch, out = crm_batch()
    strategy.compute_loss(batch, out).loss.backward()
    grads_a, grads_b = out.logits[0].grad, out.logits[1].grad
    assert grads_a is not None and grads_b is not None
    assert torch.nonzero(grads_a.abs().sum(1)).flatten().tolist() == []  # A's half {0..3}: none kept by B
    assert torch.nonzero(grads_b.abs().sum(1)).flatten().tolist() == []  # B's half {4..7}: none kept by A
    assert strategy.kept.sum() == 0
