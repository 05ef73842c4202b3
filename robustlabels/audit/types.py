"""What the audit's methods take and return: :class:`AuditData` in, :class:`MethodResult` out.

Conventions (every method, every file the audit writes):

- ``scores``: higher = more likely mislabelled (cleanlab's quality scores are negated at the boundary).
- ``joint``: ``(C, C)`` estimated joint distribution with rows = **true** label, columns = **given** label,
  ``joint[i, j] = P(y* = i, ỹ = j)``, summing to 1. This is our noise-matrix orientation
  (``T[i, j] = P(ỹ = j | y* = i)`` = ``joint`` row-normalised); cleanlab's ``confident_joint`` is indexed
  ``[given][true]``, so it is transposed where it enters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class AuditData:
    """A labelled dataset to audit. Exactly what the input side (files, datasets) hands to the methods.

    Attributes:
        labels: ``(N,)`` int64 given labels in ``[0, num_classes)``.
        num_classes: C.
        class_names: C display names.
        images: ``(N, H, W)`` or ``(N, H, W, 3)`` uint8, for image data (thumbnails, training).
        texts: N strings, for text data (snippets, the sentence encoder).
        features: ``(N, D)`` float32 features, when given or computed.
        pred_probs: ``(N, C)`` out-of-sample predicted probabilities, when given.
        clean_labels: ``(N,)`` true labels, for scoring only (never used by a method).
        pair_items: ``(N, 2)`` int64 ids of the two responses of each preference pair, in the features' side
            order (the same id where a response recurs), for ``rank_consistency``.
        source: a short description of where the data came from (shown in the report).
        hashes: ``{file path: sha256}`` of every input file read.
    """

    labels: np.ndarray
    num_classes: int
    class_names: list[str]
    images: np.ndarray | None = None
    texts: list[str] | None = None
    features: np.ndarray | None = None
    pred_probs: np.ndarray | None = None
    clean_labels: np.ndarray | None = None
    pair_items: np.ndarray | None = None
    source: str = ""
    hashes: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class MethodResult:
    """One audit method's verdict on every example.

    Attributes:
        method: the method's name (``confident_learning``, ``knn``, ``dynamics``, ``ensemble``).
        scores: ``(N,)`` float, higher = more likely mislabelled.
        flagged: ``(N,)`` bool, the method's own decision.
        suggested: ``(N,)`` int64 the label the method would give instead.
        joint: ``(C, C)`` estimated ``P(y* = i, ỹ = j)`` (rows true, columns given), or ``None``.
        params: the method's parameters, as written to ``summary.json``.
        seconds: wall time of the method.
    """

    method: str
    scores: np.ndarray
    flagged: np.ndarray
    suggested: np.ndarray
    joint: np.ndarray | None = None
    params: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def noise_rate(self) -> float:
        """Estimated fraction of wrong labels: the joint's off-diagonal mass, else the flagged fraction."""
        if self.joint is not None:
            return float(1.0 - np.trace(self.joint))
        return float(self.flagged.mean())
