"""Combine audit methods: rank-averaged scores and a calibrated majority vote. Also the small helpers they share."""

from __future__ import annotations

import time

import numpy as np

from robustlabels.audit.types import MethodResult


def normalized_rank(scores: np.ndarray) -> np.ndarray:
    """``(N,)`` ranks scaled to [0, 1] (ties share their mean rank); higher score → higher rank."""
    from scipy.stats import rankdata

    n = len(scores)
    return (rankdata(scores) - 1) / max(n - 1, 1)


def joint_from_decisions(
    labels: np.ndarray, flagged: np.ndarray, suggested: np.ndarray, num_classes: int
) -> np.ndarray:
    """``(C, C)`` empirical joint ``P(y* = i, ỹ = j)``, taking ``y*`` = suggested where flagged, else given."""
    true = np.where(flagged, suggested, labels)
    joint = np.zeros((num_classes, num_classes))
    np.add.at(joint, (true, labels), 1.0)
    return joint / max(len(labels), 1)


def top_k_mask(scores: np.ndarray, k: int) -> np.ndarray:
    """``(N,)`` bool: the ``k`` highest ``scores`` (ties by index)."""
    mask = np.zeros(len(scores), dtype=bool)
    mask[np.argsort(-scores, kind="stable")[: max(0, k)]] = True
    return mask


def ensemble(results: list[MethodResult], labels: np.ndarray, num_classes: int) -> MethodResult:
    """Rank-average the methods' scores; flag by a majority vote at a common flag count; suggest the flagging
    methods' most common label.

    The vote is *calibrated*: every method votes for its own top ``k`` examples, ``k`` the median of the methods'
    flag counts, instead of for its own flags. Methods differ mostly in how many they flag (one training run's
    dynamics flagged 13k of CIFAR-10N ``worst``'s 20k wrong labels at 0.91 precision, kNN votes 20k at 0.76), and a
    plain vote inherits the most cautious count. Chosen over the plain vote, top-``k`` of the averaged ranks and
    ``k`` from confident learning's noise estimate on every data set of docs/results/audit.md ("How the ensemble
    flags"). A tie (an even number of methods) goes to the averaged ranking's top ``k``.
    """
    start = time.perf_counter()
    ranks = [normalized_rank(r.scores) for r in results]
    scores = np.mean(ranks, axis=0)
    quota = round(float(np.median([r.flagged.sum() for r in results])))
    votes = np.sum([top_k_mask(rank, quota) for rank in ranks], axis=0)
    flagged = (2 * votes > len(results)) | ((2 * votes == len(results)) & top_k_mask(scores, quota))
    counts = np.zeros((len(labels), num_classes), dtype=np.int64)
    for r in results:
        np.add.at(counts, (np.arange(len(labels)), r.suggested), 1 + r.flagged.astype(np.int64))
    suggested = counts.argmax(1)
    return MethodResult("ensemble", scores=scores, flagged=flagged, suggested=suggested,
                        joint=joint_from_decisions(labels, flagged, suggested, num_classes),
                        params={"methods": [r.method for r in results], "flag_count": quota,
                                "flag_rule": "majority of the methods' top flag_count (median of their counts)"},
                        seconds=time.perf_counter() - start)  # fmt: skip
