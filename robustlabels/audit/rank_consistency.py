"""Rank consistency: audit preference pairs by the comparison graph [ours; docs/pairs.md, "Auditing pairs"].

When responses recur across pairs (several reviews of one movie, several completions of one prompt), the other
comparisons of a pair's two responses say which one should win, whatever their features. We fit a Bradley–Terry
ranking of the responses (Bradley & Terry, Biometrika 1952), one free score ``u_i`` per distinct response with an
L2 prior, by K-fold cross-fitting: a pair's margin ``u_first − u_second`` comes from the pairs of the other folds
only, so a swapped pair cannot vouch for itself. The margins become the out-of-sample probabilities
``P(first side preferred) = σ(margin)`` that cleanlab's confident learning thresholds (:mod:`.confident`).

On IMDB-Pref at 20 % symmetric swaps this finds the swaps with F1 0.63 where confident learning on a reward
MLP's 5-fold probabilities reaches 0.54 (docs/results/pairs-cpu). A response seen in one pair only has
score 0 (the prior), so pairs with no recurring response get ``σ(0) = 0.5`` and are never flagged.
"""

from __future__ import annotations

import time

import numpy as np

from robustlabels.audit.confident import confident_learning
from robustlabels.audit.types import MethodResult
from robustlabels.errors import InputError


def item_ids(keys: np.ndarray) -> np.ndarray:
    """``(N, 2)`` int64 ids of the distinct responses, from ``(N, 2)`` hashable keys or ``(N, 2, D)`` feature rows
    (identical rows = one response)."""
    keys = np.asarray(keys)
    if keys.ndim == 3:
        rows = np.ascontiguousarray(keys.reshape(-1, keys.shape[2]))
        keys = rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))).reshape(-1, 2)
    _, inverse = np.unique(keys.ravel(), return_inverse=True)
    return inverse.reshape(-1, 2).astype(np.int64)


def fit_item_scores(items: np.ndarray, labels: np.ndarray, *, num_items: int, l2: float) -> np.ndarray:
    """``(num_items,)`` Bradley–Terry scores maximising ``Σ log σ(±(u_first − u_second)) − l2/2·‖u‖²``.

    Args:
        items: ``(M, 2)`` response ids of the training pairs, in their side order.
        labels: ``(M,)`` 0 where the first side is preferred, 1 where the second is.

    The objective is strictly concave for ``l2 > 0``, so L-BFGS finds the one optimum (no seed involved).
    """
    from scipy.optimize import minimize
    from scipy.sparse import csr_matrix

    m = len(items)
    rows = np.repeat(np.arange(m), 2)
    difference = csr_matrix((np.tile([1.0, -1.0], m), (rows, items.ravel())), shape=(m, num_items))
    sign = 1.0 - 2.0 * np.asarray(labels, dtype=np.float64)  # +1: the first side won

    def objective(u: np.ndarray) -> tuple[float, np.ndarray]:
        z = sign * (difference @ u)
        gradient = difference.T @ (-sign / (1.0 + np.exp(z))) + l2 * u
        return float(np.logaddexp(0.0, -z).sum() + 0.5 * l2 * u @ u), gradient

    return minimize(objective, np.zeros(num_items), jac=True, method="L-BFGS-B").x


def cross_fitted_margins(items: np.ndarray, labels: np.ndarray, *, folds: int, l2: float, seed: int) -> np.ndarray:
    """``(N,)`` margins ``u_first − u_second``, each from scores fitted on the other folds' pairs.

    Folds are a seeded uniform draw of one fold per pair (``numpy`` PCG64 ``seed``).
    """
    num_items = int(items.max()) + 1
    fold_of = np.random.default_rng(seed).integers(0, folds, len(labels))
    margins = np.zeros(len(labels))
    for fold in range(folds):
        heldout = fold_of == fold
        scores = fit_item_scores(items[~heldout], labels[~heldout], num_items=num_items, l2=l2)
        margins[heldout] = scores[items[heldout, 0]] - scores[items[heldout, 1]]
    return margins


def rank_consistency(
    items: np.ndarray, labels: np.ndarray, *, folds: int = 10, l2: float = 3.0, seed: int = 0, source: str = "pairs"
) -> MethodResult:
    """Flag the pairs the rest of the comparison graph ranks the other way (module docstring).

    Args:
        items: ``(N, 2)`` response ids (:func:`item_ids`) in the pairs' side order.
        labels: ``(N,)`` the given preferred side (0 first, 1 second).
        folds: K of the cross-fitting (10: each fit sees 90 % of the graph's edges).
        l2: precision of the Gaussian prior on the scores (3 measured best of 0.1, 1, 3, 10 on IMDB-Pref).

    Raises:
        InputError: when no response occurs in more than one pair (the graph then says nothing).
    """
    start = time.perf_counter()
    occurrences = np.bincount(items.ravel())
    recurring = (occurrences[items] > 1).any(axis=1)
    if not recurring.any():
        raise InputError(f"--method rank_consistency: no response of the {len(labels)} pairs in {source} occurs "
                         "in another pair, so the comparison graph says nothing; use confident_learning")
    margins = cross_fitted_margins(items, labels, folds=folds, l2=l2, seed=seed)
    first = 1.0 / (1.0 + np.exp(-margins))
    result = confident_learning(labels, np.stack([first, 1.0 - first], axis=1))
    result.method = "rank_consistency"
    result.params.update(folds=folds, l2=l2, seed=seed, responses=len(occurrences),
                         pairs_with_a_recurring_response=float(recurring.mean()))  # fmt: skip
    result.seconds = time.perf_counter() - start
    return result
