"""Sampling noisy labels: exact counts, seeded determinism, realised rates, instance-dependent noise."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from robustlabels.errors import InputError
from robustlabels.noise.sample import (
    _categorical,
    _largest_remainder,
    _truncated_normal,
    flips_per_class,
    instance_dependent_noise,
    noisy_labels_from,
    sample_from_transition,
    sequential_flips,
)
from robustlabels.noise.transition import (
    cifar10_asymmetric_transition,
    pairflip_transition,
    symmetric_transition,
)


def round_half_up(value: float) -> int:
    return math.floor(round(value, 9) + 0.5)


def labels_with_sizes(sizes: list[int], seed: int = 0) -> np.ndarray:
    labels = np.repeat(np.arange(len(sizes)), sizes)
    return np.random.default_rng(seed).permutation(labels).astype(np.int64)


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 150), min_size=2, max_size=8),
    rate=st.sampled_from([0.0, 0.1, 0.2, 0.25, 0.3, 0.45, 0.5, 0.8, 1.0]),
    kind=st.sampled_from(["pairflip", "symmetric"]),
    seed=st.integers(0, 2**32),
)
def test_exact_flips_round_r_n_per_class_and_only_where_allowed(
    sizes: list[int], rate: float, kind: str, seed: int
) -> None:
    num_classes = len(sizes)
    labels = labels_with_sizes(sizes)
    if kind == "pairflip":
        matrix = pairflip_transition(num_classes, rate)
    else:
        matrix = symmetric_transition(num_classes, rate, include_true_class=False)
    result = sample_from_transition(labels, matrix, seed=seed, exact=True)
    expected = [round_half_up(rate * n) for n in sizes]
    assert flips_per_class(labels, result.is_flipped, num_classes).tolist() == expected
    assert np.all(matrix[labels, result.noisy] > 0)
    assert result.realized_rate == pytest.approx(sum(expected) / max(labels.size, 1))


def test_exact_symmetric_spreads_flips_evenly_over_other_classes() -> None:
    labels = labels_with_sizes([900, 900, 900, 900])
    result = sample_from_transition(
        labels, symmetric_transition(4, 0.4, include_true_class=False), seed=3, exact=True
    )
    counts = np.bincount(labels * 4 + result.noisy, minlength=16).reshape(4, 4)
    np.testing.assert_array_equal(np.diag(counts), [540] * 4)
    np.testing.assert_array_equal(counts[~np.eye(4, dtype=bool)], 120)


def test_exact_symmetric_including_true_class_flips_r_times_one_minus_one_over_c() -> None:
    labels = labels_with_sizes([1000] * 10)
    matrix = symmetric_transition(10, 0.8, include_true_class=True)
    result = sample_from_transition(labels, matrix, seed=0, exact=True)
    assert result.realized_rate == pytest.approx(0.72)


def test_exact_cifar10_asymmetric_touches_only_source_classes() -> None:
    labels = labels_with_sizes([500] * 10)
    result = sample_from_transition(labels, cifar10_asymmetric_transition(0.4), seed=1, exact=True)
    assert flips_per_class(labels, result.is_flipped, 10).tolist() == [0, 0, 200, 200, 200, 200, 0, 0, 0, 200]
    flipped = result.is_flipped
    targets = {9: 1, 2: 0, 4: 7, 3: 5, 5: 3}
    assert all(targets[int(t)] == int(n) for t, n in zip(labels[flipped], result.noisy[flipped], strict=True))
    assert result.realized_rate == pytest.approx(0.2)


def test_sequential_flips_reread_the_labels_earlier_steps_changed() -> None:
    labels = labels_with_sizes([10, 10, 10])
    # 0 -> 1 moves ceil(0.25 * 10) = 3; 1 -> 0 then draws ceil(0.25 * 13) = 4 of the 13 current 1s.
    for seed in range(10):
        result = sequential_flips(labels, [(0, 1), (1, 0)], 0.25, num_classes=3, seed=seed)
        assert np.sum(result.noisy == 1) == 13 - 4 and np.sum(result.noisy == 0) == 7 + 4
        np.testing.assert_array_equal(result.noisy[labels == 2], 2)
        moved_back = np.sum((labels == 0) & (result.noisy == 0)) - 7  # former 0s the second step took back
        assert flips_per_class(labels, result.is_flipped, 3)[0] == 3 - moved_back
    coins = sequential_flips(labels, [(0, 1), (1, 0)], 1.0, num_classes=3, seed=0, exact=False)
    np.testing.assert_array_equal(coins.noisy, np.where(labels == 2, 2, 0))  # everything ends on 0
    with pytest.raises(InputError, match=r"flip 0 -> 3 is outside \[0, 3\)"):
        sequential_flips(labels, [(0, 3)], 0.5, num_classes=3, seed=0)


@pytest.mark.parametrize("exact", [False, True])
def test_seeded_determinism(exact: bool) -> None:
    labels = labels_with_sizes([300] * 5)
    matrix = symmetric_transition(5, 0.4, include_true_class=False)
    first = sample_from_transition(labels, matrix, seed=7, exact=exact)
    again = sample_from_transition(labels, matrix, seed=7, exact=exact)
    other = sample_from_transition(labels, matrix, seed=8, exact=exact)
    np.testing.assert_array_equal(first.noisy, again.noisy)
    np.testing.assert_array_equal(first.empirical_matrix, again.empirical_matrix)
    assert not np.array_equal(first.noisy, other.noisy)
    assert first.noisy.dtype == np.int64 and first.is_flipped.dtype == np.bool_


@pytest.mark.parametrize("rate", [0.2, 0.45])
def test_sampled_rate_within_four_binomial_sd(rate: float) -> None:
    n = 20000
    labels = np.random.default_rng(0).integers(0, 10, n)
    result = sample_from_transition(labels, pairflip_transition(10, rate), seed=11)
    assert abs(result.realized_rate - rate) < 4 * math.sqrt(rate * (1 - rate) / n)
    assert np.all((result.noisy == labels) | (result.noisy == (labels + 1) % 10))


def test_empirical_matrix_rows_and_identity_for_missing_class() -> None:
    true = np.array([0, 0, 0, 0, 1, 1])
    noisy = np.array([0, 1, 1, 1, 1, 0])
    result = noisy_labels_from(true, noisy, 3)
    np.testing.assert_allclose(result.empirical_matrix, [[0.25, 0.75, 0], [0.5, 0.5, 0], [0, 0, 1]])
    np.testing.assert_array_equal(result.is_flipped, [False, True, True, True, False, True])
    assert result.realized_rate == pytest.approx(4 / 6)


def test_invalid_labels_name_first_bad_value_and_position() -> None:
    with pytest.raises(InputError, match=r"labels value 5 at position 2 is outside \[0, 3\)"):
        sample_from_transition(np.array([0, 1, 5, 7]), np.eye(3), seed=0)
    with pytest.raises(InputError, match=r"row 1 sums to 0\.5"):
        sample_from_transition(np.array([0, 1]), np.array([[1.0, 0.0], [0.25, 0.25]]), seed=0)


def test_categorical_never_picks_zero_probability_classes() -> None:
    probs = np.array([[0.0, 0.3, 0.0, 0.7, 0.0, 0.0]] * 4 + [[0.1, 0.2, 0.3, 0.4, 0.0, 0.0]] * 4)
    almost_one = np.nextafter(1.0, 0.0)
    uniforms = np.array([0.0, 0.3, 0.2999999, almost_one, 0.0, 0.35, 0.65, almost_one])
    np.testing.assert_array_equal(_categorical(probs, uniforms), [1, 3, 1, 3, 0, 2, 3, 3])


@settings(max_examples=30, deadline=None)
@given(
    quotas=st.lists(st.floats(0, 50, allow_nan=False), min_size=1, max_size=12),
    seed=st.integers(0, 1000),
)
def test_largest_remainder_sums_to_total(quotas: list[float], seed: int) -> None:
    array = np.array(quotas)
    total = round_half_up(array.sum())
    array = array * (total / array.sum()) if array.sum() > 0 else array
    counts = _largest_remainder(array, total, np.random.default_rng(seed))
    assert counts.sum() == total
    assert np.all(np.abs(counts - array) < 1 + 1e-9)


def test_truncated_normal_stays_in_unit_interval() -> None:
    values = _truncated_normal(0.02, 0.1, 5000, np.random.default_rng(0))
    assert values.min() >= 0.0 and values.max() <= 1.0


def blob_features(n: int, dim: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 5, n).astype(np.int64), rng.normal(size=(n, dim))


def test_instance_dependent_rate_and_determinism() -> None:
    labels, features = blob_features(6000)
    result = instance_dependent_noise(labels, features, 0.3, num_classes=5, seed=1)
    assert abs(result.realized_rate - 0.3) < 4 * math.sqrt(0.3 * 0.7 / labels.size)
    again = instance_dependent_noise(labels, features, 0.3, num_classes=5, seed=1)
    other = instance_dependent_noise(labels, features, 0.3, num_classes=5, seed=2)
    np.testing.assert_array_equal(result.noisy, again.noisy)
    assert not np.array_equal(result.noisy, other.noisy)


def test_instance_dependent_chunking_does_not_change_result() -> None:
    labels, features = blob_features(700)
    images = (features.reshape(700, 2, 2, 3) * 40 + 128).clip(0, 255).astype(np.uint8)
    whole = instance_dependent_noise(labels, images, 0.4, num_classes=5, seed=3, chunk_size=10**6)
    chunked = instance_dependent_noise(labels, images, 0.4, num_classes=5, seed=3, chunk_size=7)
    np.testing.assert_array_equal(whole.noisy, chunked.noisy)


def test_instance_dependent_never_flips_to_zero_probability_class() -> None:
    # All samples of a class share one feature vector at a huge scale, so softmax(a) is one-hot: each
    # class has a single possible wrong label and every other class has probability 0 (exactly).
    labels = np.repeat(np.arange(6), 400)
    features = np.random.default_rng(0).normal(size=(6, 30))[labels] * 1e4
    result = instance_dependent_noise(labels, features, 0.5, num_classes=6, seed=4)
    for true_class in range(6):
        wrong = result.noisy[(labels == true_class) & result.is_flipped]
        assert wrong.size > 0 and np.unique(wrong).size == 1 and wrong[0] != true_class


def test_instance_dependent_rejects_mismatched_features() -> None:
    with pytest.raises(InputError, match="features must have shape"):
        instance_dependent_noise(np.zeros(5, np.int64), np.zeros((4, 3)), 0.2, num_classes=2, seed=0)
