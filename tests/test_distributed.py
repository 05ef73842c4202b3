"""Per-sample state under DDP: two ``gloo`` processes on CPU against one process on the union batch.

One spawn serves the whole module (process start-up dominates the cost): each rank runs every scenario in
:func:`_rank_results` and saves what it saw; the tests compare the ranks with each other and with the
single-process computation on the concatenated batch. Every scenario's data come from a seeded generator,
so the ranks and the parent rebuild the same tensors.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import Tensor

from robustlabels.distributed import gather_rows
from robustlabels.networks import Networks
from robustlabels.regularizers.elr import ELR
from robustlabels.regularizers.neighbor_consistency import (
    NeighborConsistency,
    batch_neighbors,
    gather_with_grad,
    ncr_term,
    neighbor_weights,
)
from robustlabels.strategies.elr_plus import ELRPlus
from robustlabels.types import Batch, Forward, TrainData

WORLD = 2
NUM_SAMPLES, NUM_CLASSES, DIM = 12, 3, 5
ROWS = (3, 5)  # unequal per-rank batch sizes for gather_rows (a last batch): padding must be dropped
GRAD_ROWS = 4  # gather_with_grad needs equal sizes across ranks
# ELR and the NCR bank: two steps; in the second each rank revisits rows the *other* rank updated in the first,
# so a rank that had not applied the other rank's update would start from a zero target and disagree.
STEP_INDEX = (((0, 5, 9), (1, 2, 7, 11, 3)), ((1, 2, 4), (0, 5, 9, 6, 10)))
NCR_K = 3  # within a global batch of 8: most neighbour lists reach into the other rank's rows


# ---- data every process rebuilds ------------------------------------------------------------------------
def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def gather_data() -> tuple[Tensor, Tensor]:
    """Global ``index (8,)`` (a permutation, so order matters) and ``rows (8, 2, 3)``."""
    g = _generator(1)
    return torch.randperm(100, generator=g)[: sum(ROWS)], torch.randn(sum(ROWS), 2, 3, generator=g)


def grad_data() -> tuple[Tensor, Tensor, Tensor]:
    """Global ``features (8, D)``, ``logits (8, C)`` and per-rank loss weights ``(W, 8, D + C)``."""
    g = _generator(2)
    n = WORLD * GRAD_ROWS
    return (torch.randn(n, DIM, generator=g), torch.randn(n, NUM_CLASSES, generator=g),
            torch.randn(WORLD, n, DIM + NUM_CLASSES, generator=g))  # fmt: skip


def step_data(step: int) -> tuple[Tensor, Tensor, Tensor]:
    """The union batch of one step: ``index (8,)``, ``features (8, D)``, ``logits (8, C)``."""
    g = _generator(10 + step)
    index = torch.tensor([i for rank in STEP_INDEX[step] for i in rank])
    return index, torch.randn(len(index), DIM, generator=g), 3.0 * torch.randn(len(index), NUM_CLASSES, generator=g)


def rank_slice(rank: int, sizes: tuple[int, ...]) -> slice:
    start = sum(sizes[:rank])
    return slice(start, start + sizes[rank])


def step_sizes(step: int) -> tuple[int, ...]:
    return tuple(len(rows) for rows in STEP_INDEX[step])


def make_batch(index: Tensor) -> Batch:
    n = len(index)
    return Batch(torch.zeros(n, 1), torch.zeros(n, dtype=torch.long), index, torch.full((n,), -1))


def new_elr() -> ELR:
    elr = ELR(momentum=0.7, weight=3.0)
    elr.setup(num_samples=NUM_SAMPLES, num_classes=NUM_CLASSES)
    return elr


def new_elr_plus() -> ELRPlus:
    """ELR+ over two tiny MLPs seeded alike in every process: each network's targets follow its peer's weight
    average on the batch's inputs."""
    torch.manual_seed(0)
    nets = Networks("mlp", count=2, input_shape=(DIM,), num_classes=NUM_CLASSES, backbone_kwargs={"hidden": 4})
    strategy = ELRPlus(momentum=0.7, weight=3.0)
    strategy.setup_networks(nets)
    strategy.setup(TrainData(NUM_SAMPLES, NUM_CLASSES, torch.zeros(NUM_SAMPLES, DIM), torch.zeros(NUM_SAMPLES)))
    return strategy


def feature_batch(index: Tensor, features: Tensor) -> Batch:
    return make_batch(index)._replace(inputs=features)


def two_networks(features: Tensor, logits: Tensor) -> Forward:
    return Forward((features, features), (logits, logits.flip(1)))


def new_bank() -> NeighborConsistency:
    ncr = NeighborConsistency(pool="dataset", k=NCR_K, temperature=2.0, start_epoch=0)
    ncr.setup(num_samples=NUM_SAMPLES, num_classes=NUM_CLASSES)
    return ncr


def ncr_batch_loss(features: Tensor, logits: Tensor, rows: slice) -> Tensor:
    """The NCR batch-pool term of ``rows``, neighbours searched over all of ``features`` (as after a gather)."""
    sim, nbr = batch_neighbors(features, NCR_K)
    probs = F.softmax(logits.float() / 2.0, dim=1) + 1e-16
    return ncr_term(logits[rows], probs[nbr[rows]], neighbor_weights(sim[rows], 1.0), 2.0)


# ---- what each rank computes ------------------------------------------------------------------------------
def _rank_results(rank: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    index, rows = gather_data()
    mine = rank_slice(rank, ROWS)
    results["gather_index"], results["gather_rows"] = gather_rows(index[mine], rows[mine])

    features, logits, weights = grad_data()
    mine = rank_slice(rank, (GRAD_ROWS,) * WORLD)
    local_f, local_z = features[mine].clone().requires_grad_(), logits[mine].clone().requires_grad_()
    all_f, all_z, offset = gather_with_grad(local_f, local_z)
    (torch.cat([all_f, all_z], dim=1) * weights[rank]).sum().backward()  # a different loss on every rank
    results["gathered"], results["offset"] = torch.cat([all_f, all_z], dim=1).detach(), offset
    results["linear_grad"] = torch.cat([local_f.grad, local_z.grad], dim=1)

    local_f, local_z = features[mine].clone().requires_grad_(), logits[mine].clone().requires_grad_()
    regularizer = NeighborConsistency(pool="batch", k=NCR_K, temperature=2.0, start_epoch=0)
    results["ncr_loss"] = regularizer.network_term(make_batch(torch.arange(GRAD_ROWS)), local_f, local_z)
    results["ncr_loss"].backward()
    results["ncr_loss"] = results["ncr_loss"].detach()
    results["ncr_grad"] = torch.cat([local_f.grad, local_z.grad], dim=1)

    elr, elr_plus, bank, results["elr_loss"] = new_elr(), new_elr_plus(), new_bank(), []
    for step in range(len(STEP_INDEX)):
        index, features, logits = step_data(step)
        mine = rank_slice(rank, step_sizes(step))
        loss = elr(make_batch(index[mine]), Forward((features[mine],), (logits[mine],)))
        results["elr_loss"].append(loss)
        elr_plus.compute_loss(feature_batch(index[mine], features[mine]), two_networks(features[mine], logits[mine]))
        bank.update_bank(index[mine], features[mine], logits[mine])
    results["elr_targets"], results["elr_plus_targets"] = elr.targets, elr_plus.targets
    results["bank_features"], results["bank_probs"] = bank.bank_features, bank.bank_probs
    return results


def _worker(rank: int, store: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD,
                            timeout=timedelta(seconds=60))  # fmt: skip
    try:
        torch.save(_rank_results(rank), Path(out) / f"rank{rank}.pt")
        dist.barrier()  # no rank tears gloo down while the other still has a collective in flight
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """What each of the two ranks computed."""
    folder = tmp_path_factory.mktemp("ddp")
    mp.start_processes(_worker, args=(str(folder / "store"), str(folder)), nprocs=WORLD, join=True,
                       start_method="spawn")  # fmt: skip
    return [torch.load(folder / f"rank{r}.pt") for r in range(WORLD)]


# ---- the tests -------------------------------------------------------------------------------------------
def test_gather_rows_returns_every_ranks_rows_in_rank_order(ranks: list[dict[str, Any]]) -> None:
    index, rows = gather_data()
    for result in ranks:
        assert torch.equal(result["gather_index"], index)  # rank 0's 3 rows, then rank 1's 5, padding dropped
        assert torch.equal(result["gather_rows"], rows)


def test_gather_with_grad_keeps_values_and_sums_gradients_over_ranks(ranks: list[dict[str, Any]]) -> None:
    features, logits, weights = grad_data()
    for rank, result in enumerate(ranks):
        assert torch.equal(result["gathered"], torch.cat([features, logits], dim=1))
        assert result["offset"] == rank * GRAD_ROWS
        # Rank r's loss is <gathered, weights[r]>, so its local rows get every rank's weights on them.
        mine = rank_slice(rank, (GRAD_ROWS,) * WORLD)
        assert torch.allclose(result["linear_grad"], weights.sum(0)[mine])
        assert not torch.allclose(result["linear_grad"], weights[rank][mine])  # the other rank's part is not zero


def test_ncr_batch_term_gradients_match_one_process(ranks: list[dict[str, Any]]) -> None:
    features, logits, _ = grad_data()
    features.requires_grad_()
    logits.requires_grad_()
    parts = [ncr_batch_loss(features, logits, rank_slice(r, (GRAD_ROWS,) * WORLD)) for r in range(WORLD)]
    own = torch.autograd.grad(parts[0], (features, logits), retain_graph=True)
    torch.stack(parts).sum().backward()  # DDP averages these over ranks: the gradient of the mean term
    expected = torch.cat([features.grad, logits.grad], dim=1)
    for rank, result in enumerate(ranks):
        mine = rank_slice(rank, (GRAD_ROWS,) * WORLD)
        assert torch.allclose(result["ncr_loss"], parts[rank].detach(), atol=1e-6)
        assert torch.allclose(result["ncr_grad"], expected[mine], atol=1e-6)
    # Neighbours cross ranks, so rank 0's rows also get gradient from rank 1's loss: the check has teeth.
    assert not torch.allclose(torch.cat(own, dim=1)[:GRAD_ROWS], expected[:GRAD_ROWS], atol=1e-4)


def test_elr_targets_match_one_process_on_the_union_batch(ranks: list[dict[str, Any]]) -> None:
    elr = new_elr()
    for step in range(len(STEP_INDEX)):
        index, features, logits = step_data(step)
        loss = elr(make_batch(index), Forward((features,), (logits,)))
        sizes = step_sizes(step)
        per_rank = [ranks[r]["elr_loss"][step] * sizes[r] for r in range(WORLD)]  # term means -> sums
        assert torch.allclose(sum(per_rank) / len(index), loss, atol=1e-6)
    # A zero-initialised EMA holds 1 − β^visits of mass: rows seen twice (by both ranks) have 0.51, not 0.3.
    visits = torch.bincount(torch.tensor([i for step in STEP_INDEX for rows in step for i in rows]),
                            minlength=NUM_SAMPLES)  # fmt: skip
    assert torch.allclose(elr.targets.sum(1), 1.0 - 0.7 ** visits.float(), atol=1e-6)
    for result in ranks:
        assert torch.allclose(result["elr_targets"], elr.targets, atol=1e-7)
    assert torch.equal(ranks[0]["elr_targets"], ranks[1]["elr_targets"])


def test_elr_plus_targets_of_both_networks_match_one_process(ranks: list[dict[str, Any]]) -> None:
    strategy = new_elr_plus()
    for step in range(len(STEP_INDEX)):
        index, features, logits = step_data(step)
        strategy.compute_loss(feature_batch(index, features), two_networks(features, logits))
    assert not torch.allclose(strategy.targets[0], strategy.targets[1])  # each from its own peer
    for result in ranks:
        assert torch.allclose(result["elr_plus_targets"], strategy.targets, atol=1e-7)


def test_ncr_dataset_bank_is_identical_on_ranks_and_matches_one_process(ranks: list[dict[str, Any]]) -> None:
    bank = new_bank()
    for step in range(len(STEP_INDEX)):
        bank.update_bank(*step_data(step))
    assert bank.bank_features.shape == (NUM_SAMPLES, DIM) and bank.bank_probs.shape == (NUM_SAMPLES, NUM_CLASSES)
    for name in ("bank_features", "bank_probs"):
        assert torch.equal(ranks[0][name], ranks[1][name])
        assert torch.allclose(ranks[0][name], getattr(bank, name), atol=1e-7)
    unvisited = [8]  # never in a batch: stays zero
    assert torch.count_nonzero(ranks[0]["bank_probs"][unvisited]) == 0
