"""Transition-matrix builders: rows sum to 1, the two symmetric conventions, the asymmetric maps."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from robustlabels.errors import InputError
from robustlabels.noise.transition import (
    CIFAR100_COARSE_OF_FINE,
    cifar10_asymmetric_transition,
    cifar100_asymmetric_transition,
    pairflip_transition,
    symmetric_transition,
    validate_transition,
)

rates = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)


@settings(max_examples=30, deadline=None)
@given(num_classes=st.integers(2, 40), rate=rates, include_true_class=st.booleans())
def test_symmetric_and_pairflip_rows_sum_to_one(
    num_classes: int, rate: float, include_true_class: bool
) -> None:
    for matrix in (
        symmetric_transition(num_classes, rate, include_true_class=include_true_class),
        pairflip_transition(num_classes, rate),
    ):
        assert matrix.shape == (num_classes, num_classes) and matrix.dtype == np.float64
        assert np.all(matrix >= 0)
        np.testing.assert_allclose(matrix.sum(axis=1), 1.0, atol=1e-12)
        validate_transition(matrix)


@settings(max_examples=15, deadline=None)
@given(rate=rates, variant=st.sampled_from(["block", "superclass"]))
def test_cifar_matrices_rows_sum_to_one(rate: float, variant: str) -> None:
    for matrix in (
        cifar10_asymmetric_transition(rate),
        cifar10_asymmetric_transition(rate, variant="elr_realised"),
        cifar100_asymmetric_transition(rate, variant=variant),
    ):
        np.testing.assert_allclose(matrix.sum(axis=1), 1.0, atol=1e-12)
        assert np.all(matrix >= 0)


def test_symmetric_conventions_differ_as_documented() -> None:
    incl = symmetric_transition(10, 0.8, include_true_class=True)
    excl = symmetric_transition(10, 0.8, include_true_class=False)
    np.testing.assert_allclose(np.diag(incl), 1 - 0.8 + 0.08)
    np.testing.assert_allclose(incl[0, 1:], 0.08)
    np.testing.assert_allclose(1 - np.diag(incl), 0.8 * (1 - 1 / 10))  # ELR: 80% gives 72% wrong
    np.testing.assert_allclose(np.diag(excl), 0.2)
    np.testing.assert_allclose(excl[0, 1:], 0.8 / 9)


def test_pairflip_moves_to_next_class() -> None:
    matrix = pairflip_transition(4, 0.45)
    expected = np.array([[0.55, 0.45, 0, 0], [0, 0.55, 0.45, 0], [0, 0, 0.55, 0.45], [0.45, 0, 0, 0.55]])
    np.testing.assert_allclose(matrix, expected)


def test_cifar10_asymmetric_maps_named_classes() -> None:
    matrix = cifar10_asymmetric_transition(0.4)
    for source, target in {9: 1, 2: 0, 4: 7, 3: 5, 5: 3}.items():
        assert matrix[source, target] == pytest.approx(0.4)
        assert matrix[source, source] == pytest.approx(0.6)
    for untouched in (0, 1, 6, 7, 8):
        np.testing.assert_array_equal(matrix[untouched], np.eye(10)[untouched])


def test_cifar10_asymmetric_elr_realised_composes_elrs_steps() -> None:
    rate = 0.4
    clean = cifar10_asymmetric_transition(rate)
    realised = cifar10_asymmetric_transition(rate, variant="elr_realised")
    # cat -> dog, then dog -> cat re-reads the moved cats: cat stays with 1 - r + r^2, ends on dog with r (1 - r)
    assert realised[3, 3] == pytest.approx(1 - rate + rate**2) and realised[3, 5] == pytest.approx(rate * (1 - rate))
    np.testing.assert_allclose(np.delete(realised, 3, axis=0), np.delete(clean, 3, axis=0))
    assert 1 - np.mean(np.diag(realised)) == pytest.approx(0.184)  # balanced classes: 18.4 % wrong
    with pytest.raises(InputError, match="`variant` must be one of clean, elr_realised"):
        cifar10_asymmetric_transition(rate, variant="elr")  # type: ignore[arg-type]


def test_cifar100_block_cycles_within_index_blocks() -> None:
    matrix = cifar100_asymmetric_transition(0.3, variant="block")
    assert matrix[0, 1] == pytest.approx(0.3) and matrix[3, 4] == pytest.approx(0.3)
    assert matrix[4, 0] == pytest.approx(0.3) and matrix[99, 95] == pytest.approx(0.3)
    assert np.count_nonzero(matrix - np.diag(np.diag(matrix))) == 100


def test_cifar100_coarse_table_and_superclass_variant() -> None:
    assert CIFAR100_COARSE_OF_FINE.shape == (100,)
    np.testing.assert_array_equal(np.bincount(CIFAR100_COARSE_OF_FINE), np.full(20, 5))
    assert CIFAR100_COARSE_OF_FINE[0] == 4 and CIFAR100_COARSE_OF_FINE[99] == 13  # apple, worm
    matrix = cifar100_asymmetric_transition(0.2, variant="superclass")
    sources, targets = np.nonzero(matrix - np.diag(np.diag(matrix)))
    assert sources.size == 100
    np.testing.assert_array_equal(CIFAR100_COARSE_OF_FINE[sources], CIFAR100_COARSE_OF_FINE[targets])
    # aquatic mammals (coarse 0) are fine labels 4, 30, 55, 72, 95: a cycle in ascending order
    assert [int(np.argmax(matrix[i] * (np.arange(100) != i))) for i in (4, 30, 55, 72, 95)] == [
        30,
        55,
        72,
        95,
        4,
    ]


def test_cifar100_superclass_accepts_custom_table() -> None:
    coarse = np.arange(100) // 5  # identical to the index blocks
    np.testing.assert_array_equal(
        cifar100_asymmetric_transition(0.3, variant="superclass", coarse_of_fine=coarse),
        cifar100_asymmetric_transition(0.3, variant="block"),
    )


@pytest.mark.parametrize(
    ("matrix", "message"),
    [
        ([[0.5, 0.5], [0.6, 0.3]], "transition matrix row 1 sums to 0.9, not 1"),
        ([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], "square"),
        ([[1.2, -0.2], [0.0, 1.0]], "negative entry -0.2 at row 0, column 1"),
        ([[np.nan, 1.0], [0.0, 1.0]], "non-finite entry nan at row 0, column 0"),
    ],
)
def test_validate_transition_names_first_problem(matrix: list[list[float]], message: str) -> None:
    with pytest.raises(InputError, match=message):
        validate_transition(np.array(matrix))


def test_builders_reject_bad_rates_and_sizes() -> None:
    with pytest.raises(InputError, match=r"`rate` must be in \[0, 1\]; got 1.5"):
        symmetric_transition(10, 1.5, include_true_class=False)
    with pytest.raises(InputError, match="`num_classes` must be at least 2; got 1"):
        pairflip_transition(1, 0.2)
    with pytest.raises(InputError, match="`variant`"):
        cifar100_asymmetric_transition(0.2, variant="blocks")  # type: ignore[arg-type]
