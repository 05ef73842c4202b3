"""SimiFeat's votes streamed per shard: each shard's rows voted on from their own neighbour lists.

The local method (:mod:`robustlabels.audit.simifeat`) searches all N points once for ``search_k`` neighbours and
then votes, round after round, on ``(N, search_k)`` arrays. Every quantity of rule ``mv`` is per row: a row's
kept neighbours in a round's subsample, its weights, score, winner and averaged vote need only its own list, the
round's subsample mask and the given labels of its neighbours. So a shard of rows ``[first, first + R)`` with its
``(R, search_k)`` lists, the ``(N,)`` labels and the rounds' masks (bit-packed, ``rounds · N / 8`` bytes) gives
exactly the local result for those rows: :class:`ShardRounds` is the local ``_Rounds`` with row ids shifted by
``first``, built from the same helpers. HOC's consensus counts are sums over rows, so shards add theirs
(:func:`shard_triplet_counts`) and the driver solves HOC once for the joint.

Rule ``rank`` flags by per-class percentiles over each round's whole subsample, a global quantity: the sharded
path refuses it (use the local executor). Tested in ``tests/scale/test_ray_audit.py`` against
:func:`robustlabels.audit.simifeat.simifeat`.
"""

from __future__ import annotations

import numpy as np

# The local method's private helpers, shared so that both paths compute the same votes bit for bit.
from robustlabels.audit.simifeat import (
    DENSE_TRIPLETS_UP_TO,
    _blocks,
    _restrict,
    _Rounds,
    _subsamples,
)
from robustlabels.errors import InputError


def packed_masks(n: int, size: int, rounds: int, seed: int) -> np.ndarray:
    """``(rounds, ⌈N/8⌉)`` uint8: the local method's subsample masks (same seed, same draws), bit-packed."""
    return np.stack([np.packbits(mask) for mask in _subsamples(n, size, rounds, seed)])


def unpack(packed: np.ndarray, n: int) -> list[np.ndarray]:
    """The ``(N,)`` bool masks of :func:`packed_masks`."""
    return [np.unpackbits(row, count=n).view(bool) for row in packed]


def check_classes(num_classes: int) -> None:
    """The sharded HOC counts are dense ``C³`` vectors: refuse a C past the local method's dense limit."""
    if num_classes**3 > DENSE_TRIPLETS_UP_TO:
        raise InputError(f"--executor ray counts HOC triplets densely, up to {round(DENSE_TRIPLETS_UP_TO ** (1 / 3))} "
                         f"classes; these labels have {num_classes}")  # fmt: skip


def shard_triplet_counts(sims: np.ndarray, idx: np.ndarray, first: int, labels: np.ndarray, masks: list[np.ndarray],
                         num_classes: int) -> np.ndarray:  # fmt: skip
    """``(C³,)`` int64 counts of (point, nearest, second-nearest sampled neighbour) label codes over the rounds,
    for the shard's rows (``(R, m)`` lists, first row ``first``); the sum over shards is the local count."""
    c = num_classes
    total = np.zeros(c**3, dtype=np.int64)
    for sampled in masks:
        local = np.flatnonzero(sampled[first : first + len(idx)])
        for rows in _blocks(local):
            kept = _restrict(idx[rows], sims[rows], sampled, 2)
            ok = kept.idx[:, 1] >= 0
            codes = (labels[rows[ok] + first] * c + labels[kept.idx[ok, 0]]) * c + labels[kept.idx[ok, 1]]
            total += np.bincount(codes, minlength=c**3)
    return total


class ShardRounds(_Rounds):
    """Rule ``mv`` rounds over one shard: the local ``_Rounds`` accumulators for rows ``[first, first + R)``."""

    def round(self, sampled: np.ndarray) -> None:  # type: ignore[override]
        """One round: every sampled row of the shard votes; ``mv`` flags a winner other than the given label."""
        local = np.flatnonzero(sampled[self.first : self.first + len(self.idx)])
        for rows in _blocks(local):
            score, winner = self.block(rows, sampled)
            self.score_sum[rows] += score
            self.times[rows] += 1
            self.flag_count[rows] += winner != self.labels[rows + self.first]

    def finish(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(R,)`` scores, flags and suggested labels, as the local method returns them for these rows."""
        unseen = np.flatnonzero(self.times == 0)
        if unseen.size:  # scored from the full list; (0 + 1) / (0 + 2) = 0.5 is never flagged
            everyone = np.ones(len(self.labels), dtype=bool)
            self.score_sum[unseen] = np.concatenate([self.block(b, everyone)[0] for b in _blocks(unseen)])
        noisy_avg = (self.flag_count + 1) / (self.times + 2)
        return self.score_sum / np.maximum(self.times, 1), noisy_avg > 0.5, self.suggested()


def shard_votes(sims: np.ndarray, idx: np.ndarray, first: int, labels: np.ndarray, masks: list[np.ndarray], *, k: int,
                num_classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """Rule ``mv`` over all rounds for one shard: ``(R,)`` scores, flags and suggested labels."""
    state = ShardRounds(sims, idx, labels, k=k, num_classes=num_classes, first=first)
    for sampled in masks:
        state.round(sampled)
    return state.finish()
