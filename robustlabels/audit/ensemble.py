"""Combine audit methods: rank-averaged scores and a majority vote. Also the small helpers they share."""

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


def ensemble(results: list[MethodResult], labels: np.ndarray, num_classes: int) -> MethodResult:
    """Rank-average the methods' scores; flag by majority vote; suggest the flagging methods' most common label.

    Ties in the vote (two methods disagreeing) flag the example when its averaged rank is in the top
    ``mean flagged fraction`` of the ranking.
    """
    start = time.perf_counter()
    scores = np.mean([normalized_rank(r.scores) for r in results], axis=0)
    votes = np.sum([r.flagged for r in results], axis=0)
    quota = round(float(np.mean([r.flagged.mean() for r in results]) * len(labels)))
    top = np.zeros(len(labels), dtype=bool)
    top[np.argsort(-scores, kind="stable")[:quota]] = True
    flagged = (2 * votes > len(results)) | ((2 * votes == len(results)) & top)
    counts = np.zeros((len(labels), num_classes), dtype=np.int64)
    for r in results:
        np.add.at(counts, (np.arange(len(labels)), r.suggested), 1 + r.flagged.astype(np.int64))
    suggested = counts.argmax(1)
    return MethodResult("ensemble", scores=scores, flagged=flagged, suggested=suggested,
                        joint=joint_from_decisions(labels, flagged, suggested, num_classes),
                        params={"methods": [r.method for r in results]},
                        seconds=time.perf_counter() - start)  # fmt: skip
