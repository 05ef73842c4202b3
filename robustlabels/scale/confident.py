"""Out-of-core confident learning: memory-mapped probabilities and labels in two passes, through cleanlab.

Confident learning's low-memory variant (Northcutt et al., JAIR 2021; cleanlab's ``find_label_issues_batched``,
which approximates ``filter_by="low_self_confidence"`` ranked by self-confidence) needs two passes over the
``(N, C)`` probabilities: the per-class confident thresholds ``t_j`` (mean ``p̂_j`` of the examples labelled ``j``),
then each example's self-confidence and the count of confident off-diagonal examples, which is the number of
issues. The issues are that many lowest-confidence examples, less those whose given label is the argmax.

Both passes run cleanlab's :class:`~cleanlab.experimental.label_issues_batched.LabelInspector` (AGPL: called,
never copied) on row blocks of a memory-mapped ``.npy``. cleanlab's own ``find_label_issues_batched`` ends with
a copy of the whole ``pred_probs`` (its ``_reduce_issues``); here that last step is done block by block, and the
selection of the lowest scores is a bounded running selection (:class:`~robustlabels.scale.shards.RunningTop`),
so memory stays at a few ``(N,)`` vectors plus one block.

The same pieces run per shard under Ray (:mod:`robustlabels.scale.executor`): pass 1 gives each shard's class
counts and thresholds, merged by their weighted mean (what the inspector computes batch by batch); pass 2 gives
each shard's scores and confident counts. Where our result departs from cleanlab's: ties at the cut between
flagged and kept scores go to the smaller index (cleanlab's ``argsort`` is not stable, so its choice among exactly
equal scores is arbitrary); the merged thresholds of several shards may differ from a single pass in the last bit.
Tested in ``tests/scale/test_out_of_core.py``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from robustlabels.errors import InputError
from robustlabels.scale.shards import RunningTop, row_blocks

BATCH_ROWS = 10_000  # rows per LabelInspector batch: cleanlab's default batch_size
SELECT_ROWS = 1 << 20  # scores per block of the final selection


@dataclass
class Thresholds:
    """Pass 1 of one shard (or of several, merged): ``counts`` ``(C,)`` examples per given class and their
    confident thresholds ``values`` ``(C,)``."""

    counts: np.ndarray
    values: np.ndarray

    @staticmethod
    def merge(parts: Iterable[Thresholds]) -> Thresholds:
        """The thresholds of the union of the parts: the count-weighted mean, as the inspector's running mean."""
        from cleanlab.internal.constants import CONFIDENT_THRESHOLDS_LOWER_BOUND

        parts = list(parts)
        counts = np.sum([p.counts for p in parts], axis=0)
        weighted = np.sum([p.counts * p.values for p in parts], axis=0)
        values = np.clip(weighted / np.clip(counts, 1, None), CONFIDENT_THRESHOLDS_LOWER_BOUND, None)
        return Thresholds(counts, values)


@dataclass
class ShardScores:
    """Pass 2 of one shard: ``quality`` ``(R,)`` self-confidence (lower = more suspicious), ``argmax_is_given``
    ``(R,)`` bool (never flagged, cleanlab's last step), ``suggested`` ``(R,)`` argmax, and ``confident_issues``,
    the shard's count of confidently off-diagonal examples."""

    quality: np.ndarray
    argmax_is_given: np.ndarray
    suggested: np.ndarray
    confident_issues: int


def _inspector(num_classes: int) -> Any:
    from cleanlab.experimental.label_issues_batched import LabelInspector

    return LabelInspector(num_class=num_classes, store_results=False, verbose=False, n_jobs=1)


def _batches(labels: Any, probs: Any, batch_rows: int) -> Iterable[tuple[np.ndarray, np.ndarray]]:
    for start, stop in row_blocks(len(labels), batch_rows):
        yield np.asarray(labels[start:stop], dtype=np.int64), np.asarray(probs[start:stop])


def check_pair(labels: Any, probs: Any, *, what: str = "--pred-probs") -> int:
    """C of ``(N, C)`` probabilities that match ``(N,)`` labels, or :class:`InputError` naming ``what``."""
    if len(probs.shape) != 2 or probs.shape[1] < 2:
        raise InputError(f"{what} must have shape (N, C) with C >= 2; got {tuple(probs.shape)}")
    if probs.shape[0] != len(labels):
        raise InputError(f"{what} has {probs.shape[0]} rows but the labels have {len(labels)}")
    return int(probs.shape[1])


def threshold_pass(labels: Any, probs: Any, *, num_classes: int, batch_rows: int = BATCH_ROWS) -> Thresholds:
    """Pass 1 over ``(R,)`` labels and ``(R, C)`` probabilities (arrays or memmaps), ``batch_rows`` at a time."""
    inspector = _inspector(num_classes)
    for batch_labels, batch_probs in _batches(labels, probs, batch_rows):
        inspector.update_confident_thresholds(batch_labels, batch_probs)
    return Thresholds(inspector.examples_per_class.copy(), inspector.get_confident_thresholds(silent=True).copy())


def _inspector_at(thresholds: Thresholds) -> Any:
    """A fresh inspector whose confident thresholds are ``thresholds.values``, set through its public API.

    One seeding batch holds one example per class ``j`` with ``p̂_jj = t_j`` (the rest of its row spread evenly),
    so the inspector's mean for class ``j`` is exactly ``t_j``. Scoring does not read the seeding counts.
    """
    c = len(thresholds.values)
    seed = np.repeat(((1.0 - thresholds.values) / (c - 1))[:, None], c, axis=1)
    np.fill_diagonal(seed, thresholds.values)
    inspector = _inspector(c)
    inspector.update_confident_thresholds(np.arange(c), seed)
    return inspector


def score_pass(labels: Any, probs: Any, thresholds: Thresholds, *, batch_rows: int = BATCH_ROWS) -> ShardScores:
    """Pass 2 over ``(R,)`` labels and ``(R, C)`` probabilities with the thresholds of all the data."""
    from cleanlab.internal.constants import FLOATING_POINT_COMPARISON

    inspector = _inspector_at(thresholds)
    n = len(labels)
    quality = np.empty(n, dtype=np.float64)
    argmax_is_given = np.empty(n, dtype=bool)
    suggested = np.empty(n, dtype=np.int64)
    blocks = zip(row_blocks(n, batch_rows), _batches(labels, probs, batch_rows), strict=True)
    for (start, stop), (batch_labels, batch_probs) in blocks:
        quality[start:stop] = inspector.score_label_quality(batch_labels, batch_probs)
        suggested[start:stop] = batch_probs.argmax(1)
        # cleanlab's final filter (count._reduce_issues), per batch instead of on a copy of all probabilities.
        nudged = batch_probs.astype(np.float64)
        nudged[np.arange(len(batch_labels)), batch_labels] += FLOATING_POINT_COMPARISON
        argmax_is_given[start:stop] = nudged.argmax(1) == batch_labels
    return ShardScores(quality, argmax_is_given, suggested, int(inspector.get_num_issues(silent=True)))


def lowest(blocks: Iterable[tuple[np.ndarray, np.ndarray]], count: int) -> np.ndarray:
    """Ids of the ``count`` lowest values among ``(ids, values)`` blocks, lowest first (ties: smaller id)."""
    top = RunningTop(count)
    for ids, values in blocks:
        top.add(ids, -np.asarray(values, dtype=np.float64))
    return top.result()[0]


@dataclass
class OutOfCoreResult:
    """What :func:`confident_learning_out_of_core` finds: ``(N,)`` ``scores`` (``1 − self-confidence``, higher =
    more suspicious), ``flagged``, ``suggested``, the merged ``thresholds`` and ``num_issues`` (cleanlab's
    estimate, before the argmax filter)."""

    scores: np.ndarray
    flagged: np.ndarray
    suggested: np.ndarray
    thresholds: np.ndarray
    num_issues: int


def flags_from(shard_quality: list[tuple[np.ndarray, np.ndarray]], argmax_is_given: np.ndarray, num_issues: int,
               n: int) -> np.ndarray:  # fmt: skip
    """``(N,)`` flags: the ``num_issues`` lowest-quality examples whose given label is not the argmax.

    ``shard_quality``: ``(ids, quality)`` per shard, in any order; ``argmax_is_given`` ``(N,)``.
    """
    flagged = np.zeros(n, dtype=bool)
    flagged[lowest(shard_quality, num_issues)] = True
    flagged &= ~argmax_is_given
    return flagged


def confident_learning_out_of_core(labels: Any, probs: Any, *, batch_rows: int = BATCH_ROWS) -> OutOfCoreResult:
    """Confident learning's low-memory flags from ``(N,)`` labels and ``(N, C)`` probabilities, memory-mapped.

    Equals ``cleanlab.experimental.label_issues_batched.find_label_issues_batched(labels, probs,
    batch_size=batch_rows, return_mask=True)`` (see the module docstring for ties) with memory ``O(N)`` plus
    one ``batch_rows × C`` block, where cleanlab's last step copies all of ``probs``.
    """
    c = check_pair(labels, probs)
    thresholds = threshold_pass(labels, probs, num_classes=c, batch_rows=batch_rows)
    part = score_pass(labels, probs, thresholds, batch_rows=batch_rows)
    n = len(labels)
    blocks = [(np.arange(s, e), part.quality[s:e]) for s, e in row_blocks(n, SELECT_ROWS)]
    flagged = flags_from(blocks, part.argmax_is_given, part.confident_issues, n)
    return OutOfCoreResult(1.0 - part.quality, flagged, part.suggested, thresholds.values, part.confident_issues)
