"""SimiFeat (robustlabels.audit.simifeat): votes by hand, restriction = search in the subsample, blobs F1."""

from __future__ import annotations

import numpy as np
import pytest

from robustlabels.audit.simifeat import (
    _rank_flags,
    _subsamples,
    default_search_k,
    knn_votes,
    restrict_neighbors,
    simifeat,
)
from robustlabels.errors import InputError
from robustlabels.neighbors import build

pytest.importorskip("faiss")

NUM_CLASSES = 5


def _f1(pred: np.ndarray, truth: np.ndarray) -> float:
    return float(2 * (pred & truth).sum() / (pred.sum() + truth.sum()))


@pytest.fixture(scope="module")
def noisy_blobs() -> dict[str, np.ndarray]:
    """3000 points, 5 well-separated 20-D blobs, 30% symmetric noise (each flip to a uniform other class)."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(NUM_CLASSES, 20))
    centres *= 6.0 / np.linalg.norm(centres, axis=1, keepdims=True)
    true = rng.permutation(np.arange(3000) % NUM_CLASSES)
    features = (centres[true] + rng.normal(size=(3000, 20))).astype(np.float32)
    flipped = rng.random(3000) < 0.3
    given = np.where(flipped, (true + rng.integers(1, NUM_CLASSES, 3000)) % NUM_CLASSES, true)
    return {"features": features, "true": true, "given": given, "flipped": flipped}


@pytest.fixture(scope="module")
def results(noisy_blobs: dict[str, np.ndarray]) -> dict[str, object]:
    return {rule: simifeat(noisy_blobs["features"], noisy_blobs["given"], num_classes=NUM_CLASSES, rule=rule)
            for rule in ("mv", "rank")}  # fmt: skip


def test_knn_votes_by_hand() -> None:
    labels = np.array([0, 1, 1, 0])
    sims = np.array([[1.0, 0.9, 0.8, 0.5], [1.0, 0.7, 0.0, 0.6], [1.0, 0.4, 0.0, 0.0]], dtype=np.float32)
    idx = np.array([[0, 1, 2, 3], [1, 0, -1, 2], [2, 3, -1, -1]])
    votes = knn_votes(sims, idx, labels, num_classes=3)
    # row 0: self weight 1 - (2 d1 - d2) = 2 * 0.9 - 0.8 = 1.0; class 0 = 1.0 + 0.5, class 1 = 0.9 + 0.8
    # row 1: the -1 entry is skipped, so d1, d2 come from 0.7, 0.6: self 0.8; class 1 = 0.8 + 0.6, class 0 = 0.7
    # row 2: one neighbour only: self weighs like it (0.4); class 1 = 0.4, class 0 = 0.4
    raw = np.array([[1.5, 1.7, 0.0], [0.7, 1.4, 0.0], [0.4, 0.4, 0.0]])
    np.testing.assert_allclose(votes, raw / np.linalg.norm(raw, axis=1, keepdims=True), rtol=1e-6)
    # blockwise-safe: rows are independent
    np.testing.assert_allclose(knn_votes(sims[1:], idx[1:], labels, num_classes=3), votes[1:])


def test_restriction_equals_search_within_subsample() -> None:
    rng = np.random.default_rng(1)
    features = rng.normal(size=(200, 8)).astype(np.float32)
    sims, idx = build(features, metric="cosine", index="Flat").search(None, 199, exclude_self=True)
    sampled = np.zeros(200, dtype=bool)
    sampled[rng.choice(200, 130, replace=False)] = True
    got_sims, got_idx = restrict_neighbors(sims, idx, sampled, k=6)
    rows = np.flatnonzero(sampled)
    want_sims, want_local = build(features[rows], metric="cosine", index="Flat").search(None, 6)
    np.testing.assert_array_equal(got_idx, rows[want_local])
    np.testing.assert_allclose(got_sims[:, 1:], want_sims[:, 1:], atol=1e-5)
    # a list too short to cover the subsample is padded with -1 rather than reaching outside it
    _, short_idx = restrict_neighbors(sims[:, :3], idx[:, :3], sampled, k=6)
    assert (short_idx[:, 4:] == -1).any()
    assert sampled[short_idx[short_idx >= 0]].all()


def test_pipeline_scores_match_knn_votes(noisy_blobs: dict[str, np.ndarray]) -> None:
    """With the whole set in every round the result is exactly one application of knn_votes."""
    features, given = noisy_blobs["features"][:600], noisy_blobs["given"][:600]
    result = simifeat(features, given, num_classes=NUM_CLASSES, rounds=1, subsample=1.0, hoc_steps=10)
    sims, idx = build(features, metric="cosine").search(None, 10)
    votes = knn_votes(sims, idx, given, num_classes=NUM_CLASSES)
    own = votes[np.arange(600), given]
    np.testing.assert_allclose(result.scores, -np.log(own + 1e-8), rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(result.suggested, votes.argmax(axis=1))
    np.testing.assert_array_equal(result.flagged, votes.argmax(axis=1) != given)


@pytest.mark.parametrize("rule", ["mv", "rank"])
def test_blobs_f1_noise_rate_and_suggestions(rule: str, results: dict, noisy_blobs: dict) -> None:
    result = results[rule]
    flipped, true = noisy_blobs["flipped"], noisy_blobs["true"]
    assert result.method == "knn"
    assert result.scores.shape == (3000,) and result.suggested.dtype == np.int64
    assert _f1(result.flagged, flipped) >= 0.9  # measured: mv 0.985, rank 0.970
    assert result.noise_rate == pytest.approx(flipped.mean(), abs=0.02)  # measured: 0.2995 vs 0.2973
    assert (result.suggested[result.flagged] == true[result.flagged]).mean() >= 0.95
    assert result.scores[flipped].mean() > result.scores[~flipped].mean()
    np.testing.assert_allclose(result.joint.sum(), 1.0)
    assert {"k", "rule", "rounds", "subsample", "seed", "index", "backend", "threads"} <= set(result.params)


def test_deterministic(noisy_blobs: dict[str, np.ndarray]) -> None:
    features, given = noisy_blobs["features"][:800], noisy_blobs["given"][:800]
    runs = [simifeat(features, given, num_classes=NUM_CLASSES, rule="rank", rounds=5, seed=3, hoc_steps=200)
            for _ in range(2)]  # fmt: skip
    for name in ("scores", "flagged", "suggested", "joint"):
        np.testing.assert_array_equal(getattr(runs[0], name), getattr(runs[1], name))


def test_points_no_round_sampled_are_scored_not_flagged(noisy_blobs: dict[str, np.ndarray]) -> None:
    features, given = noisy_blobs["features"][:400], noisy_blobs["given"][:400]
    result = simifeat(features, given, num_classes=NUM_CLASSES, rounds=1, subsample=0.5, hoc_steps=10)
    sims, idx = build(features, metric="cosine").search(None, 10)
    votes = knn_votes(sims, idx, given, num_classes=NUM_CLASSES)
    unseen = np.flatnonzero(~next(_subsamples(400, 200, 1, 0)))  # the one round's subsample, seed 0
    own = votes[unseen, given[unseen]]
    np.testing.assert_allclose(result.scores[unseen], -np.log(own + 1e-8), rtol=1e-4, atol=1e-5)
    assert not result.flagged[unseen].any()
    np.testing.assert_array_equal(result.suggested[unseen], votes[unseen].argmax(axis=1))


def test_rank_flags_match_numpy_percentile() -> None:
    rng = np.random.default_rng(2)
    scores = rng.random(500).astype(np.float32)
    given = rng.integers(0, 4, 500)
    rates = np.array([0.05, 0.3, 0.5, 0.95])
    want = np.zeros(500, dtype=bool)
    for c in range(4):
        members = given == c
        want |= members & (scores >= np.percentile(scores[members].astype(np.float64), 100 * (1 - rates[c])))
    np.testing.assert_array_equal(_rank_flags(scores, given, rates), want)


def test_default_search_k() -> None:
    assert default_search_k(10, 1.0, 1000) == 9
    assert 9 < default_search_k(10, 0.9, 1000) <= 21
    assert default_search_k(10, 0.5, 1000) > default_search_k(10, 0.9, 1000)
    assert default_search_k(10, 0.5, 15) == 14


@pytest.mark.parametrize(
    ("labels", "kwargs", "match"),
    [
        (np.full(50, 5), {}, "outside"),
        (np.full(50, -1), {}, "outside"),
        (np.zeros(49, dtype=np.int64), {}, "rows"),
        (np.zeros(50, dtype=np.int64), {"rule": "vote"}, "rule"),
        (np.zeros(50, dtype=np.int64), {"k": 46}, "`k`"),
        (np.zeros(50, dtype=np.int64), {"subsample": 0.0}, "subsample"),
    ],
)
def test_bad_input(labels: np.ndarray, kwargs: dict, match: str) -> None:
    features = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)
    with pytest.raises(InputError, match=match) as err:
        simifeat(features, labels, num_classes=NUM_CLASSES, **kwargs)
    assert "\n" not in str(err.value)
