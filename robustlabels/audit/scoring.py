"""How well an audit found the wrong labels, when the true labels are known; and the audit's ranking order.

All functions are numpy-only. ``scores`` follow the audit convention: higher = more likely mislabelled.
Undefined ratios (nothing flagged, no errors) are reported as ``0.0`` so that ``summary.json`` stays valid
JSON (no ``NaN``).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

DEFAULT_KS = (100, 500, 1000)


def ranking_order(scores: np.ndarray) -> np.ndarray:
    """Indices that sort examples from most to least suspicious.

    Args:
        scores: ``(N,)`` scores, higher = more suspicious.

    Returns:
        ``(N,)`` int64 indices. Ties keep index order (a stable sort); ``NaN`` scores come last.
    """
    values = np.asarray(scores, dtype=np.float64).reshape(-1)
    # Negating keeps the sort stable (a reversed ascending sort would reverse ties); NaN sorts last either way.
    return np.argsort(-values, kind="stable").astype(np.int64)


def flag_metrics(flagged: np.ndarray, is_error: np.ndarray) -> dict[str, float | int]:
    """Precision, recall and F1 of a set of flagged examples against the known errors.

    Args:
        flagged: ``(N,)`` bool, the audit's decision.
        is_error: ``(N,)`` bool, True where the given label is wrong.

    Returns:
        ``{"precision", "recall", "f1"}`` as floats (``0.0`` when undefined) and ``{"num_flagged",
        "num_errors"}`` as ints.
    """
    flagged, is_error = _pair(flagged, is_error)
    num_flagged, num_errors = int(flagged.sum()), int(is_error.sum())
    hits = int((flagged & is_error).sum())
    precision = hits / num_flagged if num_flagged else 0.0
    recall = hits / num_errors if num_errors else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "num_flagged": num_flagged, "num_errors": num_errors}


def precision_at_k(scores: np.ndarray, is_error: np.ndarray, ks: Iterable[int] | None = None) -> dict[int, float]:
    """Fraction of true errors among the ``k`` most suspicious examples, for each ``k``.

    Args:
        scores: ``(N,)`` scores, higher = more suspicious (ranked by :func:`ranking_order`, so ties go to
            the lower index).
        is_error: ``(N,)`` bool, True where the given label is wrong.
        ks: cut-offs; default ``(100, 500, 1000, num_errors)``. Each is clipped to ``N``; cut-offs ``<= 0``
            are dropped and duplicates (after clipping) kept once.

    Returns:
        ``{k: precision}`` in increasing ``k``.
    """
    scores, is_error = np.asarray(scores).reshape(-1), np.asarray(is_error, dtype=bool).reshape(-1)
    if scores.shape != is_error.shape:
        raise ValueError(f"shapes differ: scores {scores.shape}, is_error {is_error.shape}")
    n = scores.shape[0]
    wanted = (*DEFAULT_KS, int(is_error.sum())) if ks is None else tuple(int(k) for k in ks)
    clipped = sorted({min(k, n) for k in wanted if k > 0})
    hits = np.cumsum(is_error[ranking_order(scores)])  # hits[k - 1] = errors among the top k
    return {k: float(hits[k - 1]) / k for k in clipped}


def _pair(flagged: np.ndarray, is_error: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both as ``(N,)`` bool arrays of the same length, or ValueError."""
    a = np.asarray(flagged, dtype=bool).reshape(-1)
    b = np.asarray(is_error, dtype=bool).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} and {b.shape}")
    return a, b
