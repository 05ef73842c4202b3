"""NCR against a hand-computed case, its switches, and the dataset pool's bank."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from robustlabels.errors import InputError
from robustlabels.regularizers import NeighborConsistency
from robustlabels.regularizers.neighbor_consistency import bank_index, batch_neighbors, ncr_term, neighbor_weights
from robustlabels.types import Batch, Forward

# 4 samples in 2-D: 0 and 1 point the same way, 2 is 60° from 0, 3 points away from everything.
FEATURES = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.5, math.sqrt(3) / 2], [-1.0, -0.1]])
LOGITS = torch.tensor([[2.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 3.0]])


def batch(n: int = 4) -> Batch:
    return Batch(FEATURES[:n], torch.zeros(n, dtype=torch.long), torch.arange(n), torch.zeros(n, dtype=torch.long))


def softmax(z: list[float], t: float) -> list[float]:
    e = [math.exp(v / t) for v in z]
    return [v / sum(e) for v in e]


def test_four_sample_case_by_hand() -> None:
    """k = 2, T = 2, γ = 1: weights from cosine similarities, KL with the neighbour mixture first, times T²."""
    t = 2.0
    cos = [[1, 1, 0.5, -0.995], [1, 1, 0.5, -0.995], [0.5, 0.5, 1, -0.5 - 0.0866], [-0.995, -0.995, -0.5866, 1]]
    probs = [softmax(z, t) for z in LOGITS.tolist()]
    expected = 0.0
    for i in range(4):
        others = sorted((j for j in range(4) if j != i), key=lambda j: -cos[i][j])[:2]
        s = [max(cos[i][j], 0.0) for j in others]
        w = [v / (sum(s) + 1e-16) for v in s]
        q = [sum(w[a] * (probs[j][c] + 1e-16) for a, j in enumerate(others)) for c in range(2)]
        p_i = softmax(LOGITS[i].tolist(), t)
        expected += t**2 * sum(q[c] * (math.log(max(q[c], 1e-16)) - math.log(p_i[c])) for c in range(2)) / 4
    reg = NeighborConsistency(weight=0.3, temperature=t, k=2, start_epoch=0)
    value = reg(batch(), Forward((FEATURES,), (LOGITS,)))
    assert value.item() == pytest.approx(0.3 * expected, rel=1e-3)
    assert reg.base_loss_scale == pytest.approx(0.7)


def test_kl_direction_and_temperature_factor() -> None:
    q = torch.tensor([[[0.9, 0.1]]])
    z = torch.tensor([[0.0, 0.0]])
    w = torch.ones(1, 1)
    kl_q_first = 0.9 * math.log(0.9 / 0.5) + 0.1 * math.log(0.1 / 0.5)
    assert ncr_term(z, q, w, 1.0).item() == pytest.approx(kl_q_first, rel=1e-5)
    assert ncr_term(z, q, w, 3.0).item() == pytest.approx(9 * kl_q_first, rel=1e-5)  # T² · KL; p uniform either way


def test_self_is_excluded_even_with_duplicates_and_negatives_get_zero_weight() -> None:
    nbr = batch_neighbors(FEATURES, 1).indices[:, 0].tolist()
    assert nbr[:2] == [1, 0]  # 0 and 1 are duplicates in direction: each finds the other, not itself
    assert nbr[2] in (0, 1) and nbr[3] == 2
    weights = neighbor_weights(torch.tensor([[0.5, -0.4], [-0.2, -0.1]]), gamma=1.0)
    assert weights.tolist() == [[1.0, 0.0], [0.0, 0.0]]


def test_gradient_reaches_the_neighbours_logits_and_features() -> None:
    features, logits = FEATURES.clone().requires_grad_(), LOGITS.clone().requires_grad_()
    reg = NeighborConsistency(k=2, start_epoch=0)  # with k = 1 the single weight is always 1
    reg(batch(), Forward((features,), (logits,))).backward()
    moved = logits.grad.abs().sum(1).gt(0).tolist()
    # sample 1 gets gradient from its own term and as sample 0's neighbour; sample 3's only neighbours have
    # negative similarity, so its mixture is zero and nothing flows into it
    assert moved == [True, True, True, False] and features.grad.abs().sum() > 0


def test_hard_switch_at_start_epoch() -> None:
    reg = NeighborConsistency(k=2, start_epoch=3)
    reg.on_train_epoch_start(2)
    assert reg(batch(), Forward((FEATURES,), (LOGITS,))).item() == 0.0 and reg.base_loss_scale == 1.0
    reg.on_train_epoch_start(3)
    assert reg(batch(), Forward((FEATURES,), (LOGITS,))).item() > 0.0 and reg.base_loss_scale == 0.7


def dataset_pool(start_epoch: int = 1, index: str = "auto") -> NeighborConsistency:
    reg = NeighborConsistency(k=2, start_epoch=start_epoch, pool="dataset", index=index, nprobe=2)
    reg.setup(num_samples=4, num_classes=2)
    return reg


@pytest.mark.parametrize("index", ["auto", "IVF2"])  # 4 samples: "auto" is exact; IVF2 with both lists probed
def test_dataset_pool_bank_is_index_aligned_and_neighbours_come_from_the_index(index: str) -> None:
    reg = dataset_pool(index=index)
    reg.on_train_epoch_start(0)
    order = torch.tensor([2, 0, 3, 1])
    shuffled = Batch(FEATURES[order], torch.zeros(4).long(), order, torch.zeros(4).long())
    assert reg(shuffled, Forward((FEATURES[order],), (LOGITS[order],))).item() == 0.0  # before start_epoch
    assert torch.allclose(reg.bank_features, torch.nn.functional.normalize(FEATURES, dim=1))
    assert torch.allclose(reg.bank_probs, torch.softmax(LOGITS / 2.0, dim=1))
    reg.on_train_epoch_start(1)
    sims, exact = batch_neighbors(FEATURES, 2)
    assert torch.allclose(reg.bank_similarities[:, 0], sims[:, 0])
    assert reg.bank_neighbors[[0, 1, 3], 0].tolist() == exact[[0, 1, 3], 0].tolist()  # 2 ties between 0 and 1
    assert reg(batch(), Forward((FEATURES,), (LOGITS,))).item() > 0.0


@pytest.mark.parametrize("index", ["auto", "IVF2"])
def test_dataset_pool_bank_survives_a_state_dict_round_trip(index: str) -> None:
    reg = dataset_pool(index=index)
    reg.on_train_epoch_start(0)
    reg(batch(), Forward((FEATURES,), (LOGITS,)))
    restored = dataset_pool(index=index)
    restored.load_state_dict(copy.deepcopy(reg.state_dict()))
    assert torch.equal(restored.bank_features, reg.bank_features) and torch.equal(restored.bank_probs, reg.bank_probs)
    for part in (reg, restored):
        part.on_train_epoch_start(1)  # the neighbour lists are rebuilt from the restored bank
    assert torch.equal(restored.bank_neighbors, reg.bank_neighbors)
    out = Forward((FEATURES,), (LOGITS,))
    assert torch.equal(restored(batch(), out), reg(batch(), out))


def test_auto_bank_index_is_exact_for_small_banks_and_ivf_above() -> None:
    assert bank_index("auto", 4095) == ("Flat", None)
    assert bank_index("auto", 20_000) == ("IVF35", 2)
    assert bank_index("auto", 1_000_000) == ("IVF1000", 6)  # from 100k: the policy's √N lists, nprobe 6
    assert bank_index("IVF64", 20_000, 4) == ("IVF64", 4)
    with pytest.raises(InputError, match=r"`index` must be 'auto', 'Flat', .* got 'HNSW32'"):
        NeighborConsistency(pool="dataset", index="HNSW32")


def test_dataset_pool_ivf_recall_and_refresh_every() -> None:
    """A 5,000-sample bank goes through the IVF index: recall against exact search, refreshed every 2 epochs."""
    gen = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 20, (5000,), generator=gen)
    features = 3 * torch.randn(20, 32, generator=gen)[labels] + torch.randn(5000, 32, generator=gen)
    logits = torch.randn(5000, 3, generator=gen)
    reg = NeighborConsistency(k=10, start_epoch=0, pool="dataset", refresh_every=2)
    reg.setup(num_samples=5000, num_classes=3)
    reg.on_train_epoch_start(0)  # empty bank: nothing to search yet
    for rows in torch.randperm(5000, generator=gen).split(500):
        reg.update_bank(rows, features[rows], logits[rows])
    reg.on_train_epoch_start(1)  # no neighbour lists yet: built now although epoch 1 is not due
    _, exact = batch_neighbors(features, 10)
    hits = (reg.bank_neighbors.unsqueeze(2) == exact.unsqueeze(1)).any(2).float().mean()
    assert hits >= 0.9
    assert (reg.bank_neighbors != torch.arange(5000).unsqueeze(1)).all()
    before = reg.bank_neighbors.clone()
    reg.update_bank(torch.arange(5000), features.flip(0), logits)  # every row changes
    reg.on_train_epoch_start(3)  # (3 - 0) % 2 != 0: not due
    assert torch.equal(reg.bank_neighbors, before)
    reg.on_train_epoch_start(4)
    assert not torch.equal(reg.bank_neighbors, before)
