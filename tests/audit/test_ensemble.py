"""The audit's ensemble: averaged ranks, and a majority vote of every method's top k (k the median flag count)."""

from __future__ import annotations

import numpy as np

from robustlabels.audit.ensemble import ensemble, normalized_rank, top_k_mask
from robustlabels.audit.types import MethodResult

N, C = 200, 4


def method(name: str, scores: np.ndarray, num_flagged: int, seed: int = 0) -> MethodResult:
    """A method with ``scores`` that flags ``num_flagged`` examples (its top ones) and suggests a fixed label."""
    return MethodResult(name, scores=scores, flagged=top_k_mask(scores, num_flagged),
                        suggested=np.random.default_rng(seed).integers(0, C, N))  # fmt: skip


def three_methods() -> list[MethodResult]:
    rng = np.random.default_rng(0)
    truth = rng.random(N)  # a shared signal; each method sees it with its own noise and flags its own count
    return [method(name, truth + 0.3 * rng.random(N), count, seed)
            for seed, (name, count) in enumerate([("dynamics", 20), ("confident_learning", 60), ("knn", 90)])]


def test_flags_are_the_majority_of_each_methods_top_median_count() -> None:
    results = three_methods()
    labels = np.zeros(N, dtype=np.int64)
    out = ensemble(results, labels, C)
    votes = sum(top_k_mask(normalized_rank(r.scores), 60).astype(int) for r in results)
    assert out.params["flag_count"] == 60
    np.testing.assert_array_equal(out.flagged, votes >= 2)
    np.testing.assert_allclose(out.scores, np.mean([normalized_rank(r.scores) for r in results], axis=0))
    plain_vote = sum(r.flagged.astype(int) for r in results) >= 2
    assert not np.array_equal(out.flagged, plain_vote)  # not the vote of the methods' own flags


def test_only_each_methods_count_matters_not_its_threshold_or_scale() -> None:
    results = three_methods()
    labels = np.zeros(N, dtype=np.int64)
    before = ensemble(results, labels, C).flagged
    cautious = results[0]
    rescaled = MethodResult(cautious.method, scores=cautious.scores * 1000 - 5,
                            flagged=np.roll(cautious.flagged, 7), suggested=cautious.suggested)  # fmt: skip
    np.testing.assert_array_equal(ensemble([rescaled, *results[1:]], labels, C).flagged, before)


def test_two_methods_break_ties_by_the_averaged_ranking() -> None:
    rng = np.random.default_rng(1)
    a, b = method("a", rng.random(N), 40), method("b", rng.random(N), 40, seed=1)
    out = ensemble([a, b], np.zeros(N, dtype=np.int64), C)
    both = top_k_mask(a.scores, 40) & top_k_mask(b.scores, 40)
    one = top_k_mask(a.scores, 40) ^ top_k_mask(b.scores, 40)
    np.testing.assert_array_equal(out.flagged, both | (one & top_k_mask(out.scores, 40)))
    assert both.sum() < out.flagged.sum() <= 40 + both.sum()
