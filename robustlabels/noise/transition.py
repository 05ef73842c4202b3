"""Noise transition matrices for the synthetic noise models of the label-noise literature.

Convention, used everywhere in robustlabels: a transition matrix ``T`` of shape ``(C, C)`` is
**row-stochastic**, ``T[i, j] = P(noisy = j | true = i)``; each row sums to 1. cleanlab's
``noise_matrix`` is the transpose (column-stochastic, ``P(label = i | true_label = j)``), so transpose at
that boundary.

Every builder is a pure numpy function returning a float64 ``(C, C)`` array. The realised wrong-label rate
of each model is listed in ``docs/methods.md`` ("Noise models").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

from robustlabels.checks import check_probability_rows
from robustlabels.errors import InputError, check_choice, check_interval

#: Source class -> target class of the CIFAR-10 asymmetric noise (ELR, Nested Co-teaching):
#: truck -> automobile, bird -> airplane, deer -> horse, cat -> dog, dog -> cat.
CIFAR10_ASYMMETRIC_TARGETS: dict[int, int] = {9: 1, 2: 0, 4: 7, 3: 5, 5: 3}

#: The two CIFAR-10 asymmetric variants: ``clean`` (each source class loses ``r`` of its samples) and
#: ``elr_realised`` (ELR's ``asymmetric_noise`` loop, which re-reads labels it has already changed).
CIFAR10_ASYMMETRIC_VARIANTS = ("clean", "elr_realised")

#: CIFAR-100 coarse label (superclass, 0..19) of each fine label (0..99), as in the ``coarse_labels`` /
#: ``fine_labels`` pairs of the CIFAR-100 python release (fine and coarse names are both alphabetical).
CIFAR100_COARSE_OF_FINE: np.ndarray = np.array(
    [
        4, 1, 14, 8, 0, 6, 7, 7, 18, 3,
        3, 14, 9, 18, 7, 11, 3, 9, 7, 11,
        6, 11, 5, 10, 7, 6, 13, 15, 3, 15,
        0, 11, 1, 10, 12, 14, 16, 9, 11, 5,
        5, 19, 8, 8, 15, 13, 14, 17, 18, 10,
        16, 4, 17, 4, 2, 0, 17, 4, 18, 17,
        10, 3, 2, 12, 12, 16, 12, 1, 9, 19,
        2, 10, 0, 1, 16, 12, 9, 13, 15, 13,
        16, 19, 2, 4, 6, 19, 5, 5, 8, 19,
        18, 1, 2, 15, 6, 0, 17, 8, 14, 13,
    ],
    dtype=np.int64,
)  # fmt: skip
CIFAR100_COARSE_OF_FINE.flags.writeable = False


def _check_num_classes(num_classes: int, *, minimum: int = 2) -> int:
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)):
        raise InputError(f"`num_classes` must be an integer; got {num_classes!r}")
    if num_classes < minimum:
        raise InputError(f"`num_classes` must be at least {minimum}; got {num_classes}")
    return int(num_classes)


def symmetric_transition(num_classes: int, rate: float, *, include_true_class: bool) -> np.ndarray:
    """Uniform ("symmetric") label noise.

    Two conventions exist and differ by a factor ``(1 - 1/C)`` in the realised wrong-label rate:

    * ``include_true_class=True`` — the **ELR / DivideMix** convention: a fraction ``r`` of labels is
      resampled uniformly from all ``C`` classes, possibly landing on the true one. ``T_ii = 1 - r + r/C``,
      ``T_ij = r/C``; realised wrong rate ``r (1 - 1/C)`` (80% gives 72% on CIFAR-10).
    * ``include_true_class=False`` — the **Co-teaching** (``noisify_multiclass_symmetric``) and Nested
      Co-teaching convention: ``T_ii = 1 - r``, ``T_ij = r / (C - 1)``; realised wrong rate ``r``.

    Args:
        num_classes: number of classes ``C`` (at least 2).
        rate: noise rate ``r`` in ``[0, 1]``.
        include_true_class: which convention to use (see above).

    Returns:
        ``(C, C)`` float64 row-stochastic matrix.
    """
    num_classes = _check_num_classes(num_classes)
    rate = check_interval("rate", rate, low=0, high=1)
    if include_true_class:
        matrix = np.full((num_classes, num_classes), rate / num_classes)
        np.fill_diagonal(matrix, 1.0 - rate + rate / num_classes)
    else:
        matrix = np.full((num_classes, num_classes), rate / (num_classes - 1))
        np.fill_diagonal(matrix, 1.0 - rate)
    return matrix


def pairflip_transition(num_classes: int, rate: float) -> np.ndarray:
    """Pair-flip noise: class ``i`` goes to ``(i + 1) mod C`` with probability ``r``.

    ``T_ii = 1 - r``, ``T_{i, (i+1) mod C} = r`` (Han et al., 2018, Co-teaching ``noisify_pairflip``;
    usually ``r = 0.45``).

    Args:
        num_classes: number of classes ``C`` (at least 2).
        rate: noise rate ``r`` in ``[0, 1]``.

    Returns:
        ``(C, C)`` float64 row-stochastic matrix.
    """
    num_classes = _check_num_classes(num_classes)
    rate = check_interval("rate", rate, low=0, high=1)
    return _cyclic_within_groups([np.arange(num_classes)], num_classes, rate)


def cifar10_asymmetric_transition(
    rate: float, *, variant: Literal["clean", "elr_realised"] = "clean"
) -> np.ndarray:
    """CIFAR-10 asymmetric noise of Patrini et al. (2017), as defined or as ELR's code realises it.

    truck (9) -> automobile (1), bird (2) -> airplane (0), deer (4) -> horse (7), cat (3) -> dog (5) and
    dog (5) -> cat (3); rows 0, 1, 6, 7, 8 are identity.

    * ``variant="clean"`` — the definition: each source class moves to its target with probability ``r``
      (``T_ss = 1 - r``, ``T_st = r``). Overall wrong-label rate ``r / 2`` on balanced classes. This is the
      intended noise of ELR and Nested Co-teaching, but not what ELR's code realises.
    * ``variant="elr_realised"`` — the noise ELR's code trains on (``shengliu66/ELR``,
      ``data_loader/cifar10.py`` ``asymmetric_noise``, same in ``ELR_plus``): classes are processed in
      ascending order and each step picks among the samples whose *current* label is the source, so the
      cats moved to dog (step 3) are drawn again at step 5 (dog -> cat) and a fraction ``r`` of them goes
      back. The matrix is the product of the per-step matrices in that order: the cat row becomes
      ``T_cat,cat = 1 - r + r²``, ``T_cat,dog = r (1 - r)``; every other row equals the clean one. At ``r``
      0.4: cat 24 % wrong, dog 40 %, overall 18.4 % on balanced classes (instead of 40 / 40 / 20).

    Args:
        rate: noise rate ``r`` in ``[0, 1]`` of each source class.
        variant: ``"clean"`` or ``"elr_realised"`` (see above).

    Returns:
        ``(10, 10)`` float64 row-stochastic matrix.
    """
    rate = check_interval("rate", rate, low=0, high=1)
    check_choice("variant", variant, CIFAR10_ASYMMETRIC_VARIANTS)
    if variant == "clean":
        matrix = np.eye(10)
        for source, target in CIFAR10_ASYMMETRIC_TARGETS.items():
            matrix[source, source] = 1.0 - rate
            matrix[source, target] = rate
        return matrix
    matrix = np.eye(10)
    for source in sorted(CIFAR10_ASYMMETRIC_TARGETS):  # ELR's loop order; row vectors, so right-multiply
        step = np.eye(10)
        step[source, source] = 1.0 - rate
        step[source, CIFAR10_ASYMMETRIC_TARGETS[source]] = rate
        matrix = matrix @ step
    return matrix


def cifar100_asymmetric_transition(
    rate: float,
    *,
    variant: Literal["block", "superclass"] = "block",
    coarse_of_fine: Sequence[int] | np.ndarray | None = None,
) -> np.ndarray:
    """CIFAR-100 asymmetric noise: a cyclic flip ``i -> next`` inside groups of five classes.

    * ``variant="block"`` reproduces what the ELR (``build_for_cifar100``) and Nested Co-teaching code do:
      the groups are the index blocks ``{5s, ..., 5s+4}``, ``i -> i + 1`` and the last goes to the first.
      The fine labels are alphabetical, so **0 of these 20 blocks is a real CIFAR-100 superclass**; use it
      for comparability with published numbers.
    * ``variant="superclass"`` applies the same cyclic flip within each true superclass (fine labels sorted
      ascending inside it), using ``coarse_of_fine`` or :data:`CIFAR100_COARSE_OF_FINE`.

    Args:
        rate: noise rate ``r`` in ``[0, 1]``.
        variant: ``"block"`` or ``"superclass"``.
        coarse_of_fine: ``(100,)`` coarse label of each fine label; only for ``"superclass"``.

    Returns:
        ``(100, 100)`` float64 row-stochastic matrix.
    """
    rate = check_interval("rate", rate, low=0, high=1)
    check_choice("variant", variant, ("block", "superclass"))
    if variant == "block":
        groups = [np.arange(start, start + 5) for start in range(0, 100, 5)]
    else:
        coarse = CIFAR100_COARSE_OF_FINE if coarse_of_fine is None else np.asarray(coarse_of_fine)
        if coarse.shape != (100,):
            raise InputError(f"`coarse_of_fine` must have 100 entries; got shape {coarse.shape}")
        groups = [np.flatnonzero(coarse == value) for value in np.unique(coarse)]
    return _cyclic_within_groups(groups, 100, rate)


def _cyclic_within_groups(groups: list[np.ndarray], num_classes: int, rate: float) -> np.ndarray:
    """``T_ii = 1 - r`` and ``T_{i, next(i)} = r``, ``next`` cycling through each group's sorted members."""
    matrix = np.eye(num_classes)
    for group in groups:
        members = np.sort(group)
        if members.size < 2:
            continue  # a class alone in its group has nowhere to go
        matrix[members, members] = 1.0 - rate
        matrix[members, np.roll(members, -1)] += rate
    return matrix


def validate_transition(matrix: ArrayLike, *, name: str = "transition matrix") -> np.ndarray:
    """Check that ``matrix`` is a row-stochastic ``(C, C)`` matrix and return it as float64.

    Args:
        matrix: candidate ``(C, C)`` matrix, ``T[i, j] = P(noisy = j | true = i)``.
        name: how to call the matrix in error messages (for example ``"matrix file 'T.csv'"``).

    Returns:
        ``(C, C)`` float64 array (a copy if a conversion was needed).

    Raises:
        InputError: one line naming the first problem: shape, a non-finite or negative entry (row and
            column), or the first row whose sum differs from 1 by more than 1e-6.
    """
    try:
        array = np.asarray(matrix, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a square matrix of numbers") from None
    if array.ndim != 2 or array.shape[0] != array.shape[1] or array.shape[0] == 0:
        raise InputError(f"{name} must be a non-empty square (C, C) matrix; got shape {array.shape}")
    return check_probability_rows(array, name=name)
