"""The calibrated confident joint of given and true labels (Northcutt et al., JAIR 2021), from probabilities.

Used by the audit (:mod:`robustlabels.audit.confident`) and by strategies that need a noise-rate estimate
(:func:`robustlabels.strategies.co_teaching.estimate_forget_rate`); numpy only, so neither depends on the other.
"""

from __future__ import annotations

import numpy as np

BLOCK_ELEMENTS = 1 << 20  # pred_probs entries per block of estimate_joint: in cache, few Python steps


def estimate_joint(labels: np.ndarray, pred_probs: np.ndarray, *, predicted: np.ndarray | None = None) -> np.ndarray:
    """``(C, C)`` calibrated confident joint ``P(y* = i, ỹ = j)`` (rows **true**), as in docs/methods.md.

    Written from the spec, in row blocks (bounded memory, for cleanlab's batched path, which has no joint),
    and vectorised (cleanlab's ``estimate_joint`` re-validates its inputs in a Python loop). Equal to
    cleanlab's, transposed, up to its integer rounding (tested).

    Thresholds ``t_j = mean_{i: ỹ_i = j} p̂_ij``; example ``i`` counts towards true class ``j`` when ``j`` is
    its only class with ``p̂_ij ≥ t_j − 1e-6``, or the argmax of several; rows then scale to the given-label
    counts and the matrix to sum 1.

    Args:
        labels: ``(N,)`` given labels.
        pred_probs: ``(N, C)`` out-of-sample probabilities.
        predicted: ``(N,)`` ``pred_probs.argmax(1)`` when the caller already has it.
    """
    n, c = pred_probs.shape
    counts = np.bincount(labels, minlength=c).astype(np.float64)
    given_probs = np.bincount(labels, weights=pred_probs[np.arange(n), labels], minlength=c)
    thresholds = (np.maximum(given_probs / np.maximum(counts, 1), 2e-6) - 1e-6).astype(pred_probs.dtype)
    predicted = pred_probs.argmax(1) if predicted is None else predicted
    true = np.empty(n, dtype=np.int64)
    block = max(1, BLOCK_ELEMENTS // c)
    for start in range(0, n, block):  # row blocks: the (rows, C) comparison stays in cache
        rows = slice(start, start + block)
        above = pred_probs[rows] >= thresholds
        num_above = np.count_nonzero(above, axis=1)
        true[rows] = np.where(num_above == 1, above.argmax(1), predicted[rows])
        true[rows][num_above == 0] = -1  # no confident class: not counted
    keep = true >= 0
    joint = np.bincount(labels[keep] * c + true[keep], minlength=c * c).reshape(c, c).astype(np.float64)
    np.fill_diagonal(joint, np.maximum(np.diag(joint), 1.0))  # [given][true] while counting
    joint *= (counts / np.maximum(joint.sum(1), 1e-12))[:, None]
    return (joint / max(joint.sum(), 1e-12)).T
