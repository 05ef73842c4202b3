"""Draw noisy labels from true labels: transition-matrix noise and instance-dependent noise.

Noise is data: it is drawn once from ``numpy.random.Generator(PCG64(seed))`` (never the global state), so
a seed gives the same labels on every machine and run, and the result is saved with the run.
``T[i, j] = P(noisy = j | true = i)`` (rows sum to 1; cleanlab's ``noise_matrix`` is the transpose).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from robustlabels.checks import check_finite_rows
from robustlabels.errors import InputError, check_interval
from robustlabels.noise.transition import validate_transition

# Quotas are rounded to this many decimals before flooring, so 0.3 * 10 == 2.9999999999999996 counts as 3.
_QUOTA_DECIMALS = 9
_SAMPLE_CHUNK = 1 << 16


@dataclass(frozen=True, eq=False)  # eq=False: element-wise array comparison has no single truth value
class NoisyLabels:
    """Noisy labels together with what was flipped.

    Attributes:
        noisy: ``(N,)`` int64 noisy labels.
        is_flipped: ``(N,)`` bool, ``noisy != true``.
        realized_rate: fraction of flipped labels, ``is_flipped.mean()`` (0.0 when ``N == 0``).
        empirical_matrix: ``(C, C)`` float64 row-normalised counts ``true -> noisy``; a class without
            samples gets an identity row.
    """

    noisy: np.ndarray
    is_flipped: np.ndarray
    realized_rate: float
    empirical_matrix: np.ndarray


def validate_labels(labels: np.ndarray, num_classes: int, *, name: str = "labels") -> np.ndarray:
    """Return ``labels`` as a ``(N,)`` int64 array, or raise :class:`InputError` naming the first bad value.

    Args:
        labels: ``(N,)`` integer class labels.
        num_classes: number of classes ``C``; every label must lie in ``[0, C)``.
        name: how to call the labels in error messages.
    """
    array = np.asarray(labels)
    if array.ndim != 1:
        raise InputError(f"{name} must be a 1-D array; got shape {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise InputError(f"{name} must be integers; got dtype {array.dtype}")
    array = array.astype(np.int64, copy=False)
    bad = np.flatnonzero((array < 0) | (array >= num_classes))
    if bad.size:
        position = bad[0]
        raise InputError(
            f"{name} value {array[position]} at position {position} is outside [0, {num_classes})"
        )
    return array


def noisy_labels_from(true: np.ndarray, noisy: np.ndarray, num_classes: int) -> NoisyLabels:
    """Build :class:`NoisyLabels` from ``(N,)`` true and noisy int labels in ``[0, C)``."""
    true = np.asarray(true, dtype=np.int64)
    noisy = np.asarray(noisy, dtype=np.int64)
    is_flipped = noisy != true
    counts = np.bincount(true * num_classes + noisy, minlength=num_classes * num_classes)
    counts = counts.reshape(num_classes, num_classes).astype(np.float64)
    totals = counts.sum(axis=1, keepdims=True)
    empirical = np.where(totals > 0, counts / np.maximum(totals, 1.0), np.eye(num_classes))
    rate = float(is_flipped.mean()) if is_flipped.size else 0.0
    return NoisyLabels(noisy, is_flipped, rate, empirical)


def flips_per_class(true: np.ndarray, is_flipped: np.ndarray, num_classes: int) -> np.ndarray:
    """``(C,)`` int64 number of flipped labels for each true class."""
    return np.bincount(np.asarray(true)[np.asarray(is_flipped)], minlength=num_classes).astype(np.int64)


def sample_from_transition(
    labels: np.ndarray, transition: np.ndarray, *, seed: int, exact: bool = False
) -> NoisyLabels:
    """Draw noisy labels from a row-stochastic transition matrix.

    * ``exact=False``: each label ``y_i`` is replaced by a categorical draw from row ``T[y_i]`` (one uniform
      per sample against the row's cumulative sums), as in Co-teaching's ``multiclass_noisify``; the
      realised rate is random around its expectation.
    * ``exact=True``: for each true class ``i`` with ``n_i`` samples, exactly ``m_i = round((1 - T_ii) n_i)``
      samples (halves round up) move, chosen by a random permutation of the class; the ``m_i`` are split
      over the other classes in proportion to ``T[i, j]`` by the largest-remainder method (ties broken at
      random), so counts sum to ``n_i`` and never go where ``T[i, j] = 0``. For symmetric (excl. true class),
      pair-flip and asymmetric noise this flips exactly ``round(r n_i)`` per class (Nested Co-teaching
      flips ``ceil(r n_i)``).

    Args:
        labels: ``(N,)`` int true labels in ``[0, C)``.
        transition: ``(C, C)`` row-stochastic ``T[i, j] = P(noisy = j | true = i)``.
        seed: seed of ``numpy.random.Generator(PCG64(seed))``.
        exact: fix per-class counts instead of sampling independently.

    Returns:
        :class:`NoisyLabels` with ``(N,)`` noisy labels.
    """
    transition = validate_transition(transition)
    num_classes = transition.shape[0]
    labels = validate_labels(labels, num_classes)
    rng = np.random.Generator(np.random.PCG64(seed))
    if exact:
        noisy = _exact_counts_sample(labels, transition, rng)
    else:
        uniforms = rng.random(labels.size)
        noisy = np.empty_like(labels)
        for start in range(0, labels.size, _SAMPLE_CHUNK):  # bounds the (chunk, C) temporaries
            stop = start + _SAMPLE_CHUNK
            noisy[start:stop] = _categorical(transition[labels[start:stop]], uniforms[start:stop])
    return noisy_labels_from(labels, noisy, num_classes)


def _categorical(probs: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
    """Index of the first cumulative probability above each uniform; ``probs`` is ``(n, C)``, rows > 0.

    Dividing the cumulative sums by their last entry makes every entry from the last positive column on
    exactly 1.0, so a uniform in ``[0, 1)`` never selects a zero-probability class.
    """
    cumulative = np.cumsum(probs, axis=1)
    cumulative /= cumulative[:, -1:]
    chosen: np.ndarray = (cumulative <= uniforms[:, None]).sum(axis=1).astype(np.int64)
    return chosen


def _exact_counts_sample(labels: np.ndarray, transition: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per class: move a fixed number of randomly chosen samples, split over targets by largest remainder."""
    noisy = labels.copy()
    num_classes = transition.shape[0]
    for true_class in range(num_classes):
        members = np.flatnonzero(labels == true_class)
        row = transition[true_class] / transition[true_class].sum()
        leave_prob = 1.0 - row[true_class]
        num_moving = int(np.floor(np.round(leave_prob * members.size, _QUOTA_DECIMALS) + 0.5))
        if num_moving == 0:
            continue
        others = np.delete(np.arange(num_classes), true_class)
        counts = _largest_remainder(row[others] / leave_prob * num_moving, num_moving, rng)
        chosen = rng.permutation(members)[:num_moving]
        noisy[chosen] = np.repeat(others, counts)
    return noisy


def _largest_remainder(quotas: np.ndarray, total: int, rng: np.random.Generator) -> np.ndarray:
    """Integer counts summing to ``total``: floors of ``quotas`` plus one for the largest fractional parts.

    Equal fractional parts are ordered at random, so no class is favoured by its index.
    """
    quotas = np.round(quotas, _QUOTA_DECIMALS)
    counts: np.ndarray = np.floor(quotas).astype(np.int64)
    shortfall = total - int(counts.sum())
    remainders = np.round(quotas - counts, _QUOTA_DECIMALS)
    order = np.lexsort((rng.random(quotas.size), -remainders))
    counts[order[: max(shortfall, 0)]] += 1
    return counts


def sequential_flips(
    labels: np.ndarray,
    flips: Sequence[tuple[int, int]],
    rate: float,
    *,
    num_classes: int,
    seed: int,
    exact: bool = True,
) -> NoisyLabels:
    """Move ``source -> target`` one step after another, each step reading the labels the earlier steps left.

    This is the procedure of ELR's ``asymmetric_noise`` (``shengliu66/ELR``, ``data_loader/cifar10.py``): for
    each ``(source, target)`` in order, the candidates are the samples whose *current* noisy label is
    ``source`` (true members and samples moved there by an earlier step), so a sample can move twice and a
    later step can move it back to its true class. Unlike :func:`sample_from_transition`, the result is not
    a draw from one matrix with fixed per-class counts: with ``exact=True`` the per-step counts are fixed but
    how many of them hit already-moved samples is hypergeometric.

    * ``exact=True``: each step moves exactly ``ceil(r m)`` of its ``m`` candidates (ELR's
      ``j < percent * len(indices)``), chosen by a random permutation.
    * ``exact=False``: each candidate moves with probability ``r`` (one uniform per candidate per step); the
      result is then a draw from the product of the per-step matrices.

    Args:
        labels: ``(N,)`` int true labels in ``[0, C)``.
        flips: ``(source, target)`` class pairs, applied in this order.
        rate: probability ``r`` in ``[0, 1]`` of each step.
        num_classes: number of classes ``C``.
        seed: seed of ``numpy.random.Generator(PCG64(seed))``.
        exact: fixed count per step instead of a coin per candidate.

    Returns:
        :class:`NoisyLabels` with ``(N,)`` noisy labels.
    """
    rate = check_interval("rate", rate, low=0, high=1)
    labels = validate_labels(labels, num_classes)
    for source, target in flips:
        if not (0 <= source < num_classes and 0 <= target < num_classes):
            raise InputError(f"flip {source} -> {target} is outside [0, {num_classes})")
    rng = np.random.Generator(np.random.PCG64(seed))
    noisy = labels.copy()
    for source, target in flips:
        candidates = np.flatnonzero(noisy == source)
        if exact:
            count = int(np.ceil(np.round(rate * candidates.size, _QUOTA_DECIMALS)))
            moving = rng.permutation(candidates)[:count]
        else:
            moving = candidates[rng.random(candidates.size) < rate]
        noisy[moving] = target
    return noisy_labels_from(labels, noisy, num_classes)


def instance_dependent_noise(
    labels: np.ndarray,
    features: np.ndarray,
    rate: float,
    *,
    num_classes: int,
    seed: int,
    chunk_size: int = 2048,
) -> NoisyLabels:
    """Part/instance-dependent noise of Xia et al. (2020), PTD ``tools.py get_instance_noisy_label``.

    Per sample a flip rate ``q_i ~ TruncNormal(mean r, sd 0.1, [0, 1])``; one ``W ~ N(0, 1)`` of shape
    ``(C, d, C)``; ``a_i = x_i @ W[y_i]`` with ``a_i[y_i] = -inf``; ``P_i = q_i softmax(a_i)``,
    ``P_i[y_i] += 1 - q_i``; the noisy label is drawn from ``P_i``. ``x_i`` are the features flattened to
    float64 **as given**: the result depends on their scale (raw 0-255 pixels, as in PTD, give almost
    one-hot ``softmax(a_i)``; normalised pixels do not), so save the labels rather than regenerate them.
    ``W[c]`` is drawn one class at a time and rows are processed in chunks, so memory stays at
    ``O(chunk_size * d + d * C)`` (no ``(N, d, C)`` or float copy of all features); the chunk size does not
    change the result.

    Args:
        labels: ``(N,)`` int true labels in ``[0, C)``.
        features: ``(N, ...)`` inputs, e.g. ``(N, 32, 32, 3)`` uint8 images; flattened to ``d`` values.
        rate: mean flip rate ``r`` in ``[0, 1]``.
        num_classes: number of classes ``C`` (at least 2).
        seed: seed of ``numpy.random.Generator(PCG64(seed))``.
        chunk_size: rows per matrix product.

    Returns:
        :class:`NoisyLabels`; the realised rate is close to ``r``.

    Reference:
        Xia et al., "Part-dependent Label Noise: Towards Instance-dependent Label Noise", NeurIPS 2020.
    """
    rate = check_interval("rate", rate, low=0, high=1)
    if num_classes < 2:
        raise InputError(f"`num_classes` must be at least 2 for instance-dependent noise; got {num_classes}")
    if chunk_size < 1:
        raise InputError(f"`chunk_size` must be at least 1; got {chunk_size}")
    labels = validate_labels(labels, num_classes)
    features = _check_features(features, labels.size)
    rng = np.random.Generator(np.random.PCG64(seed))
    flip_rates = _truncated_normal(rate, 0.1, labels.size, rng)
    uniforms = rng.random(labels.size)
    noisy = labels.copy()
    dim = int(np.prod(features.shape[1:], dtype=np.int64))
    for true_class in range(num_classes):
        weights = rng.standard_normal((dim, num_classes))  # W[y] of Xia et al., one class at a time
        members = np.flatnonzero(labels == true_class)
        for start in range(0, members.size, chunk_size):
            rows = members[start : start + chunk_size]
            x = features[rows].reshape(rows.size, dim).astype(np.float64)
            probs = _flip_probabilities(x @ weights, true_class, flip_rates[rows])
            noisy[rows] = _categorical(probs, uniforms[rows])
    return noisy_labels_from(labels, noisy, num_classes)


def _check_features(features: np.ndarray, num_samples: int) -> np.ndarray:
    """``features`` as an array (no copy) of shape ``(N, ...)``, numeric and finite, or :class:`InputError`."""
    features = np.asarray(features)
    if not (np.issubdtype(features.dtype, np.number) or features.dtype == np.bool_):
        raise InputError(f"features must be numeric; got dtype {features.dtype}")
    if features.ndim < 2 or features.shape[0] != num_samples:
        raise InputError(f"features must have shape (N, ...) with N = {num_samples}; got {features.shape}")
    check_finite_rows(features, name="features")  # a NaN row would silently draw class 0
    return features


def _flip_probabilities(logits: np.ndarray, true_class: int, flip_rates: np.ndarray) -> np.ndarray:
    """``(n, C)`` rows ``q softmax(a)`` with ``a[y] = -inf``, plus ``1 - q`` on the true class ``y``."""
    logits = logits.copy()
    logits[:, true_class] = -np.inf
    logits -= logits.max(axis=1, keepdims=True)
    probs: np.ndarray = np.exp(logits)
    probs *= (flip_rates / probs.sum(axis=1))[:, None]
    probs[:, true_class] += 1.0 - flip_rates
    return probs


def _truncated_normal(mean: float, std: float, size: int, rng: np.random.Generator) -> np.ndarray:
    """``(size,)`` draws of ``N(mean, std)`` restricted to ``[0, 1]`` by rejection (acceptance >= ~50%)."""
    values: np.ndarray = rng.normal(mean, std, size)
    outside = np.flatnonzero((values < 0.0) | (values > 1.0))
    while outside.size:
        values[outside] = rng.normal(mean, std, outside.size)
        outside = outside[(values[outside] < 0.0) | (values[outside] > 1.0)]
    return values
