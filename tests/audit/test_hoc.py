"""HOC (robustlabels.audit.hoc): consensus statistics, the loss without a dense c3, recovery of a known T and p."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robustlabels.audit.hoc import _ConsensusLoss, consensus_counts, expected_consensus, hoc_estimate
from robustlabels.errors import InputError


def _known_model(c: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A diagonally dominant row-stochastic T (diagonal 0.6-0.8) and a non-uniform prior."""
    rng = np.random.default_rng(seed)
    diag = rng.uniform(0.6, 0.8, size=c)
    off = rng.dirichlet(np.ones(c - 1), size=c) * (1 - diag)[:, None]
    transition = np.zeros((c, c))
    for i in range(c):
        transition[i, np.arange(c) != i] = off[i]
        transition[i, i] = diag[i]
    prior = rng.dirichlet(np.full(c, 5.0))
    return transition, prior


def _triplets(transition: np.ndarray, prior: np.ndarray, m: int, seed: int) -> np.ndarray:
    """``m`` triplets: one true label from ``prior``, three given labels drawn independently from its row of T."""
    rng = np.random.default_rng(seed)
    true = rng.choice(len(prior), size=m, p=prior)
    cumulative = transition.cumsum(axis=1)
    draws = [(rng.random(m)[:, None] > cumulative[true]).sum(axis=1) for _ in range(3)]
    return np.minimum(np.stack(draws, axis=1), len(prior) - 1)


def test_consensus_counts_marginals() -> None:
    triplets = np.array([[0, 0, 1], [0, 0, 1], [1, 2, 2], [2, 1, 0]])
    cons = consensus_counts(triplets, num_classes=3)
    np.testing.assert_allclose(cons.first, [0.5, 0.25, 0.25])
    expected_second = np.zeros((3, 3))
    expected_second[0, 0], expected_second[1, 2], expected_second[2, 1] = 0.5, 0.25, 0.25
    np.testing.assert_allclose(cons.second, expected_second)
    assert cons.triplets.tolist() == [[0, 0, 1], [1, 2, 2], [2, 1, 0]]
    np.testing.assert_allclose(cons.freq, [0.5, 0.25, 0.25])
    weighted = consensus_counts(triplets[[0, 2, 3]], num_classes=3, weights=np.array([2.0, 1.0, 1.0]))
    np.testing.assert_allclose(weighted.freq, cons.freq)


def test_loss_equals_dense_definition() -> None:
    transition, prior = _known_model(4, seed=1)
    cons = consensus_counts(_triplets(transition, prior, 5000, seed=2), num_classes=4)
    dense3 = np.zeros((4, 4, 4))
    dense3[tuple(cons.triplets.T)] = cons.freq
    other_t, other_p = _known_model(4, seed=3)
    for t, p in ((transition, prior), (other_t, other_p)):
        c1, c2, c3 = expected_consensus(t, p)
        want = np.linalg.norm(cons.first - c1) + np.linalg.norm(cons.second - c2) + np.linalg.norm(dense3 - c3)
        got = float(_ConsensusLoss(cons)(torch.tensor(t), torch.tensor(p)))
        assert got == pytest.approx(want, rel=1e-9, abs=1e-12)


def test_recovers_known_transition_and_prior() -> None:
    transition, prior = _known_model(5, seed=0)
    triplets = _triplets(transition, prior, 100_000, seed=1)
    est = hoc_estimate(triplets, num_classes=5, seed=0)
    assert np.abs(est.transition - transition).max() < 0.03
    assert np.abs(est.prior - prior).max() < 0.02
    np.testing.assert_allclose(est.transition.sum(axis=1), 1.0, atol=1e-9)
    assert est.joint.sum() == pytest.approx(1.0)
    true_noise = 1 - float(prior @ np.diag(transition))
    assert 1 - np.trace(est.joint) == pytest.approx(true_noise, abs=0.01)


def test_exact_consensus_gives_near_zero_loss_and_is_deterministic() -> None:
    transition, prior = _known_model(3, seed=4)
    _, _, c3 = expected_consensus(transition, prior)
    triplets = np.argwhere(np.ones((3, 3, 3), dtype=bool))
    weights = c3[tuple(triplets.T)]
    a = hoc_estimate(triplets, num_classes=3, weights=weights, seed=7, steps=600)
    b = hoc_estimate(triplets, num_classes=3, weights=weights, seed=7, steps=600)
    assert a.loss < 5e-3
    np.testing.assert_allclose(a.transition, transition, atol=0.01)
    np.testing.assert_array_equal(a.transition, b.transition)
    np.testing.assert_array_equal(a.prior, b.prior)


@pytest.mark.parametrize(
    ("triplets", "kwargs"),
    [
        (np.array([[0, 1]]), {}),
        (np.array([[0, 1, 3]]), {}),
        (np.array([[0, 1, 2]]), {"weights": np.array([-1.0])}),
        (np.array([[0, 1, 2]]), {"steps": 0}),
    ],
)
def test_bad_input(triplets: np.ndarray, kwargs: dict) -> None:
    with pytest.raises(InputError) as err:
        hoc_estimate(triplets, num_classes=3, **kwargs)
    assert "\n" not in str(err.value)
