"""Hand-computed cases for the audit's scoring metrics and ranking order."""

from __future__ import annotations

import numpy as np
import pytest

from robustlabels.audit.scoring import flag_metrics, precision_at_k, ranking_order


def test_ranking_order_most_suspicious_first_ties_by_index() -> None:
    order = ranking_order(np.array([0.1, 0.9, 0.5, 0.9, 0.5]))
    assert order.tolist() == [1, 3, 2, 4, 0]
    assert order.dtype == np.int64


def test_ranking_order_nan_last_and_integer_scores() -> None:
    assert ranking_order(np.array([np.nan, 1.0, 2.0])).tolist() == [2, 1, 0]
    assert ranking_order(np.array([0, 3, 3, 1], dtype=np.uint8)).tolist() == [1, 2, 3, 0]
    assert ranking_order(np.array([])).tolist() == []


def test_flag_metrics_hand_computed() -> None:
    flagged = np.array([True, True, False, False, True])
    is_error = np.array([True, False, True, False, False])
    metrics = flag_metrics(flagged, is_error)
    # 1 hit of 3 flagged and 2 errors: P = 1/3, R = 1/2, F1 = 2 * (1/6) / (5/6) = 0.4
    assert metrics["precision"] == pytest.approx(1 / 3)
    assert metrics["recall"] == pytest.approx(1 / 2)
    assert metrics["f1"] == pytest.approx(0.4)
    assert (metrics["num_flagged"], metrics["num_errors"]) == (3, 2)


def test_flag_metrics_undefined_ratios_are_zero() -> None:
    nothing = np.zeros(4, dtype=bool)
    errors = np.array([True, False, False, False])
    assert flag_metrics(nothing, errors) == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "num_flagged": 0,
                                             "num_errors": 1}  # fmt: skip
    assert flag_metrics(errors, nothing)["recall"] == 0.0
    perfect = flag_metrics(errors, errors)
    assert (perfect["precision"], perfect["recall"], perfect["f1"]) == (1.0, 1.0, 1.0)


def test_flag_metrics_shape_mismatch() -> None:
    with pytest.raises(ValueError, match="shapes differ"):
        flag_metrics(np.zeros(3, dtype=bool), np.zeros(4, dtype=bool))


def test_precision_at_k_ties_by_index_and_k_beyond_n() -> None:
    scores = np.array([0.9, 0.8, 0.8, 0.1, 0.5])
    is_error = np.array([False, True, False, True, True])
    # order 0, 1, 2, 4, 3 (1 before 2 on the tie) -> errors F T F T T -> hits 0 1 1 2 3
    result = precision_at_k(scores, is_error, ks=(1, 2, 3, 10))
    assert result == pytest.approx({1: 0.0, 2: 0.5, 3: 1 / 3, 5: 3 / 5})
    assert list(result) == [1, 2, 3, 5]


def test_precision_at_k_default_ks_clip_and_deduplicate() -> None:
    scores = np.array([0.9, 0.8, 0.8, 0.1, 0.5])
    is_error = np.array([False, True, False, True, True])
    # defaults (100, 500, 1000, num_errors = 3) clipped to N = 5 -> {3, 5}
    assert precision_at_k(scores, is_error) == pytest.approx({3: 1 / 3, 5: 3 / 5})


def test_precision_at_k_drops_non_positive_k() -> None:
    scores = np.array([0.2, 0.1])
    no_errors = np.zeros(2, dtype=bool)
    assert precision_at_k(scores, no_errors) == {2: 0.0}  # num_errors = 0 is dropped
    assert precision_at_k(scores, np.array([False, True]), ks=(0, -1, 2)) == {2: 0.5}


def test_precision_at_k_shape_mismatch() -> None:
    with pytest.raises(ValueError, match="shapes differ"):
        precision_at_k(np.zeros(3), np.zeros(2, dtype=bool))
