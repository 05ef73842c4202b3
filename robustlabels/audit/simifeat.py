"""SimiFeat (Zhu, Dong, Liu, ICML 2022): find wrong labels by weighted kNN votes on frozen features, no training.

Re-implemented from the paper (docs/methods.md, "Audit methods"); the reference code (``UCSC-REAL/SimiFeat``,
``Docta-ai/docta``) is CC BY-NC and is not copied. Per round, on a random subsample of the data:

1. each sampled point's ``k`` nearest sampled points by cosine, **itself first**; its own distance is
   replaced by ``2 d_1 − d_2`` (``d = 1 − cos``, ``d_1, d_2`` its two nearest other points) so that the
   point's own label counts about as much as its nearest neighbour's;
2. vote ``c_i[l] = Σ_nbrs (1 − d) 1[ỹ_nbr = l]``, L2-normalised; score ``s_i = −log(c_i[ỹ_i] + 1e-8)``;
3. rule ``mv`` flags ``argmax c_i ≠ ỹ_i``; rule ``rank`` flags, within each given class ``l``, the scores at or
   above the ``100 (1 − r_l)``-th percentile, where ``r_l = 1 − T_ll p_l / p̃_l`` (clipped to [0.05, 0.95])
   comes from HOC's ``T`` and ``p`` (:mod:`robustlabels.audit.hoc`) and ``p̃`` is the given-label frequency.

After all rounds ``noisy_avg = (#flagged + 1) / (#sampled + 2)`` and a point is flagged when it exceeds 0.5.

**Our departure from docta (efficiency).** docta searches the subsample afresh every round (and caps it at
35,000 points). We search the **full** set once for ``search_k`` neighbours (self excluded) and, each round,
keep each sampled point's first ``k − 1`` neighbours that lie in that round's subsample. Wherever at least
``k − 1`` of the ``search_k`` neighbours were sampled this equals a search within the subsample (a
point left with fewer uses what remains); ``search_k`` defaults to the smallest width for which that fails
with probability ≤ 1e-6 per point. Rounds are then vectorised numpy work on ``(N, search_k)`` arrays, no
``N × N`` matrix is formed, and the subsample is not capped (``subsample`` of all ``N`` points). HOC's
consensus triplets come from the same lists (the two nearest sampled neighbours of each sampled point, over
the same ``rounds`` subsamples; docta draws 50 separate ones).

Other details: the class noise rates are clipped to [0.05, 0.95] as the spec says (docta only replaces rates
of exactly 0 or 1); a vote below 0 (neighbours with negative cosine) scores as 0 rather than NaN; a point
with one sampled neighbour gives itself that neighbour's weight, with none weight 1. Cost: one neighbour
search, then ``O(rounds · N · search_k)`` vectorised numpy in blocks of :data:`BLOCK_ROWS` rows; extra memory
``O(N · search_k)`` (about 0.5 GB at N = 1M, k = 10), independent of the number of classes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np

from robustlabels.audit.hoc import STEPS, HOCEstimate, hoc_estimate
from robustlabels.audit.types import MethodResult
from robustlabels.errors import InputError, check_choice, check_interval
from robustlabels.neighbors.policy import choose_index
from robustlabels.noise.sample import validate_labels

RULES = ("mv", "rank")
SUBSAMPLE = 0.9  # fraction of the points in each round's subsample (docta's)
BLOCK_ROWS = 65_536  # rows per vectorised block: bounds every temporary to O(BLOCK_ROWS · search_k)
SHORTFALL_PROB = 1e-6  # default search_k: P(fewer than k − 1 of a point's neighbours sampled) at most this
UNIT_NORM_TOL = 1e-4
DENSE_TRIPLETS_UP_TO = 2**22  # C³ up to this: count triplet codes with one bincount
EPS = 1e-8


# ----------------------------------------------------------------------------------------------------- votes
def _first_two(valid: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Column of each row's first and second True in ``valid`` (``(R, m)``), and whether they exist."""
    count = np.cumsum(valid, axis=1, dtype=np.int32)
    has1, has2 = count[:, -1] >= 1, count[:, -1] >= 2
    return np.argmax(count >= 1, axis=1), np.argmax(count >= 2, axis=1), has1, has2


def _vote_weights(sims: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``(R, k)`` vote weights ``1 − d = cos`` of a self-first neighbour list; entries with index < 0 weigh 0.

    Column 0 (self) gets ``1 − (2 d_1 − d_2) = 2 cos_1 − cos_2`` from the first two valid other columns;
    with only one other neighbour ``cos_1``, with none ``1``.
    """
    valid = idx >= 0
    weights = np.where(valid, sims, 0).astype(np.float32)
    if sims.shape[1] > 1:
        pos1, pos2, has1, has2 = _first_two(valid[:, 1:])
        rows = np.arange(len(sims))
        s1, s2 = sims[rows, 1 + pos1], sims[rows, 1 + pos2]
        weights[:, 0] = np.where(has2, 2 * s1 - s2, np.where(has1, s1, 1.0))
    else:
        weights[:, 0] = 1.0
    weights[:, 0] *= valid[:, 0]
    return weights


def _check_neighbors(neighbor_sims: Any, neighbor_idx: Any) -> tuple[np.ndarray, np.ndarray]:
    sims = np.asarray(neighbor_sims, dtype=np.float32)
    idx = np.asarray(neighbor_idx)
    if sims.ndim != 2 or sims.shape != idx.shape or sims.shape[1] < 1:
        raise InputError(f"`neighbor_sims` and `neighbor_idx` must share a shape (N, k); got {sims.shape}, {idx.shape}")
    if not np.issubdtype(idx.dtype, np.integer):
        raise InputError(f"`neighbor_idx` must be integers; got dtype {idx.dtype}")
    return sims, idx.astype(np.int64, copy=False)


def knn_votes(neighbor_sims: Any, neighbor_idx: Any, labels: Any, *, num_classes: int) -> np.ndarray:
    """SimiFeat's L2-normalised label votes from self-first cosine neighbour lists.

    Row ``i`` of the inputs lists point ``i`` itself at column 0 and then its neighbours, nearest first (what
    ``build(features, metric="cosine").search(None, k)`` returns). Column 0's distance is replaced by
    ``2 d_1 − d_2`` (``d = 1 − cos`` of the first two other valid neighbours); each listed point votes for its
    label with weight ``1 − d``; rows are L2-normalised. Entries with index ``-1`` (padding) are ignored.
    Rows are independent, so the function can be applied block by block.

    Args:
        neighbor_sims: ``(N, k)`` cosine similarities.
        neighbor_idx: ``(N, k)`` int indices into ``labels`` (column 0: the point itself).
        labels: ``(M,)`` given labels of the indexed points.
        num_classes: C.

    Returns:
        ``(N, C)`` float32 votes ``c_i`` with unit L2 norm (all-zero rows stay zero).
    """
    sims, idx = _check_neighbors(neighbor_sims, neighbor_idx)
    labels = validate_labels(labels, num_classes)
    if idx.size and idx.max() >= len(labels):
        raise InputError(f"`neighbor_idx` holds {idx.max()}, but there are only {len(labels)} labels")
    weights = _vote_weights(sims, idx)
    n, c = len(idx), int(num_classes)
    slots = np.arange(n)[:, None] * c + np.where(idx >= 0, labels[np.maximum(idx, 0)], 0)
    votes = np.bincount(slots.ravel(), weights=weights.ravel(), minlength=n * c).reshape(n, c)
    norms = np.linalg.norm(votes, axis=1, keepdims=True)
    return (votes / np.maximum(norms, 1e-12)).astype(np.float32)


def _aggregate(weights: np.ndarray, slot_labels: np.ndarray) -> np.ndarray:
    """``agg[r, j] = Σ_j' weights[r, j'] 1[slot_labels[r, j'] == slot_labels[r, j]]``: the vote of slot j's label.

    The sparse counterpart of a dense ``(R, C)`` vote: ``O(R · m)`` memory for ``m`` slots, independent of C
    (a loop over the few slots, not over samples).
    """
    agg = np.empty_like(weights)
    for j in range(weights.shape[1]):
        agg[:, j] = np.einsum("rj,rj->r", weights, slot_labels == slot_labels[:, j : j + 1])
    return agg


def _winner(agg: np.ndarray, slot_labels: np.ndarray, usable: np.ndarray, num_classes: int) -> np.ndarray:
    """Label with the largest vote among usable slots; ties go to the smallest label (``np.argmax``'s rule)."""
    agg = np.where(usable, agg, -np.inf)
    best = agg.max(axis=1, keepdims=True)
    return np.where(usable & (agg == best), slot_labels, num_classes).min(axis=1)


# ---------------------------------------------------------------------------------------------- restriction
class _Kept(NamedTuple):
    """Each row's first ``keep`` sampled neighbours: compact lists plus where every kept entry came from."""

    idx: np.ndarray  # (R, keep) int64 indices, -1-padded
    sims: np.ndarray  # (R, keep) float32 similarities, 0 where padded
    rows: np.ndarray  # (E,) row (within the block) of each kept entry
    cols: np.ndarray  # (E,) its column in the full list
    slots: np.ndarray  # (E,) its position in the compact list


def _restrict(cand_idx: np.ndarray, cand_sims: np.ndarray, sampled: np.ndarray, keep: int) -> _Kept:
    """Keep each row's first ``keep`` entries of ``cand_idx`` (``(R, m)``, ``-1`` = padding) that are sampled."""
    r, m = cand_idx.shape
    ok = sampled[cand_idx]
    ok &= cand_idx >= 0  # -1 read sampled[-1] above; mask it out
    count: np.ndarray = np.cumsum(ok, axis=1, dtype=np.int16 if m < 2**15 else np.int32)
    rows, cols = np.nonzero(ok & (count <= keep))  # row-major: a row's kept entries are consecutive
    per_row = np.minimum(count[:, -1], keep).astype(np.int64)
    slots = np.arange(len(rows)) - np.repeat(np.cumsum(per_row) - per_row, per_row)
    src, dst = rows * m + cols, rows * keep + slots
    idx = np.full((r, keep), -1, dtype=np.int64)
    sims = np.zeros((r, keep), dtype=np.float32)
    idx.reshape(-1)[dst] = cand_idx.reshape(-1)[src]
    sims.reshape(-1)[dst] = cand_sims.reshape(-1)[src]
    return _Kept(idx, sims, rows, cols, slots)


def _self_first(rows: np.ndarray, kept: _Kept) -> tuple[np.ndarray, np.ndarray]:
    """Prepend each row itself (similarity 1): the ``(R, 1 + keep)`` lists :func:`knn_votes` takes."""
    return (np.concatenate([np.ones((len(rows), 1), np.float32), kept.sims], axis=1),
            np.concatenate([rows[:, None], kept.idx], axis=1))  # fmt: skip


def restrict_neighbors(
    neighbor_sims: Any, neighbor_idx: Any, sampled: Any, *, k: int, rows: Any = None
) -> tuple[np.ndarray, np.ndarray]:
    """Self-first ``k``-lists within a subsample, cut from neighbour lists searched on the full set.

    Args:
        neighbor_sims: ``(N, m)`` similarities of each point's ``m`` nearest **other** points (search with
            ``exclude_self=True``), nearest first.
        neighbor_idx: ``(N, m)`` their indices (``-1`` = padding).
        sampled: ``(N,)`` bool, the subsample.
        k: list length, self included.
        rows: points to return lists for (default: every sampled point, ascending).

    Returns:
        ``(R, k)`` similarities and indices: column 0 is the point itself (similarity 1), then its first
        ``k − 1`` sampled neighbours in order, padded with index ``-1`` where fewer than ``k − 1`` were sampled.
        Equals a search within the subsample whenever no row is padded.
    """
    sims, idx = _check_neighbors(neighbor_sims, neighbor_idx)
    mask = np.asarray(sampled, dtype=bool)
    if mask.shape != (len(idx),):
        raise InputError(f"`sampled` must be a bool array of length {len(idx)}; got shape {mask.shape}")
    rows = np.flatnonzero(mask) if rows is None else np.asarray(rows, dtype=np.int64)
    return _self_first(rows, _restrict(idx[rows], sims[rows], mask, int(k) - 1))


# ----------------------------------------------------------------------------------------------- the method
def default_search_k(k: int, subsample: float, n: int) -> int:
    """Smallest width ``m ≥ k − 1`` with ``P(Binomial(m, subsample) < k − 1) ≤ 1e-6``, at most ``n − 1``."""
    need, f = k - 1, subsample
    if f >= 1.0:
        return min(need, n - 1)
    for m in range(need, n):
        log_terms = [math.lgamma(m + 1) - math.lgamma(j + 1) - math.lgamma(m - j + 1)
                     + j * math.log(f) + (m - j) * math.log1p(-f) for j in range(need)]  # fmt: skip
        if sum(math.exp(t) for t in log_terms) <= SHORTFALL_PROB:
            return m
    return n - 1


def _subsamples(n: int, size: int, rounds: int, seed: int) -> Iterator[np.ndarray]:
    """The rounds' subsample masks; the same ``seed`` gives the same sequence."""
    rng = np.random.default_rng(seed)
    for _ in range(rounds):
        mask = np.zeros(n, dtype=bool)
        mask[rng.choice(n, size=size, replace=False)] = True
        yield mask


def _blocks(rows: np.ndarray) -> Iterator[np.ndarray]:
    for start in range(0, len(rows), BLOCK_ROWS):
        yield rows[start : start + BLOCK_ROWS]


def _is_unit_rows(features: Any) -> bool:
    """True for a float32 numpy array whose rows all have L2 norm 1 (then ``ip`` search equals cosine)."""
    if not isinstance(features, np.ndarray) or features.dtype != np.float32 or not features.flags.c_contiguous:
        return False
    for start in range(0, len(features), BLOCK_ROWS):
        block = features[start : start + BLOCK_ROWS]
        if np.abs(np.einsum("nd,nd->n", block, block) - 1).max(initial=0) > UNIT_NORM_TOL:
            return False
    return True


PROGRESS_ABOVE = 50_000  # points; a progress bar for the neighbour search (it takes minutes at 1M)


def _search(features: Any, width: int, **options: Any) -> tuple[np.ndarray, np.ndarray, str]:
    """One search of the full set: ``(N, width)`` cosine similarities and indices, self excluded."""
    from robustlabels.neighbors import build

    # Unit-norm float32 features go in as they are (metric "ip" = cosine there): no normalised copy.
    metric = "ip" if _is_unit_rows(features) else "cosine"
    index = build(features, metric=metric, **options)
    sims, idx = index.search(None, width, exclude_self=True, progress=features.shape[0] >= PROGRESS_ABOVE)
    return sims, idx, str(getattr(index, "factory", options.get("index")))


def _consensus_triplets(
    sims: np.ndarray, idx: np.ndarray, labels: np.ndarray, masks: Iterator[np.ndarray], num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Distinct label triplets (point, nearest, second-nearest sampled neighbour) over all rounds, with counts."""
    c = num_classes
    dense = c**3 <= DENSE_TRIPLETS_UP_TO  # count codes in a dense vector; else sort each round's codes
    total, uniques, counts = np.zeros(c**3 if dense else 0, dtype=np.int64), [], []
    for sampled in masks:
        for rows in _blocks(np.flatnonzero(sampled)):
            kept = _restrict(idx[rows], sims[rows], sampled, 2)
            ok = kept.idx[:, 1] >= 0
            codes = (labels[rows[ok]] * c + labels[kept.idx[ok, 0]]) * c + labels[kept.idx[ok, 1]]
            if dense:
                total += np.bincount(codes, minlength=c**3)
            else:
                u, n = np.unique(codes, return_counts=True)
                uniques.append(u)
                counts.append(n)
    if not (total.any() or any(len(x) for x in uniques)):
        raise InputError("no sampled point has two sampled neighbours within `search_k`; raise `search_k`")
    if dense:
        u = np.flatnonzero(total)
        weights: np.ndarray = total[u].astype(np.float64)
    else:
        u, inverse = np.unique(np.concatenate(uniques), return_inverse=True)
        weights = np.bincount(inverse.reshape(-1), weights=np.concatenate(counts).astype(np.float64))
    return np.stack([u // (c * c), (u // c) % c, u % c], axis=1), weights


def _class_noise_rates(hoc: HOCEstimate, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """``r_l = 1 − T_ll p_l / p̃_l`` clipped to [0.05, 0.95] (``p̃``: given-label frequencies)."""
    given = np.bincount(labels, minlength=num_classes) / len(labels)
    clean = np.diag(hoc.transition) * hoc.prior / np.maximum(given, 1e-12)
    return np.clip(1.0 - clean, 0.05, 0.95)


def _rank_flags(scores: np.ndarray, given: np.ndarray, noise_rates: np.ndarray) -> np.ndarray:
    """Within each given class ``l``: ``score ≥ percentile(scores of class l, 100 (1 − r_l))`` (linear)."""
    c = len(noise_rates)
    # Scores lie in (-1e-7, -log(1e-8)] ⊂ (-1, 31), so one float64 key orders by class, then score.
    ordered = scores[np.argsort(given * 32.0 + scores)].astype(np.float64)
    counts = np.bincount(given, minlength=c)
    starts = np.cumsum(counts) - counts
    pos = (1.0 - noise_rates) * np.maximum(counts - 1, 0)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, np.maximum(counts - 1, 0))
    at = np.minimum(starts + lo, len(ordered) - 1), np.minimum(starts + hi, len(ordered) - 1)
    threshold = ordered[at[0]] + (ordered[at[1]] - ordered[at[0]]) * (pos - lo)
    return scores >= threshold[given]


class _Rounds:
    """Accumulators of the detection rounds, all ``O(N · search_k)``.

    ``vote_sum[i, 0]`` sums point ``i``'s normalised self-vote over rounds and ``vote_sum[i, 1 + j]`` the vote of
    its ``j``-th full-set neighbour: every round's neighbours come from the same list, so the votes averaged
    over rounds live on these ``1 + search_k`` slots whatever the number of classes. ``idx`` may hold the lists of
    rows ``[first, first + R)`` only (a shard of the sharded audit, robustlabels.scale): the accumulators are then
    per local row and ``labels`` stays indexed by global row.
    """

    def __init__(self, sims: np.ndarray, idx: np.ndarray, labels: np.ndarray, *, k: int, num_classes: int,
                 first: int = 0) -> None:  # fmt: skip
        self.sims, self.idx, self.labels, self.k, self.c, self.first = sims, idx, labels, k, num_classes, first
        n, width = idx.shape
        self.vote_sum = np.zeros((n, 1 + width), dtype=np.float32)
        self.used = np.zeros((n, 1 + width), dtype=bool)
        self.score_sum = np.zeros(n)
        self.times = np.zeros(n, dtype=np.int64)
        self.flag_count = np.zeros(n, dtype=np.int64)

    def _slot_labels(self, idx: np.ndarray) -> np.ndarray:
        return np.where(idx >= 0, self.labels[idx], -1)

    def block(self, rows: np.ndarray, sampled: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Votes for local ``rows`` within ``sampled``; returns their scores and winning labels."""
        kept = _restrict(self.idx[rows], self.sims[rows], sampled, self.k - 1)
        sims, idx = _self_first(rows + self.first, kept)
        weights = _vote_weights(sims, idx)
        slot_labels = self._slot_labels(idx)
        agg = _aggregate(weights, slot_labels)
        norm = np.maximum(np.sqrt(np.maximum(np.einsum("rj,rj->r", weights, agg), 0)), 1e-12)
        own = np.einsum("rj,rj->r", weights, slot_labels == self.labels[rows + self.first][:, None]) / norm
        scores = -np.log(np.maximum(own, 0) + EPS)
        winner = _winner(agg, slot_labels, idx >= 0, self.c)
        normalised = weights / norm[:, None]
        stride = self.vote_sum.shape[1]
        flat_sum, flat_used = self.vote_sum.reshape(-1), self.used.reshape(-1)
        targets = np.concatenate([rows * stride, rows[kept.rows] * stride + 1 + kept.cols])
        neighbour_votes = normalised.reshape(-1)[kept.rows * self.k + 1 + kept.slots]
        flat_sum[targets] += np.concatenate([normalised[:, 0], neighbour_votes])
        flat_used[targets] = True
        return scores, winner

    def round(self, sampled: np.ndarray, rows: np.ndarray, rule: str, noise_rates: np.ndarray) -> None:
        scores, winners = zip(*(self.block(b, sampled) for b in _blocks(rows)), strict=True)
        score, winner = np.concatenate(scores), np.concatenate(winners)
        given = self.labels[rows]
        flags = winner != given if rule == "mv" else _rank_flags(score, given, noise_rates)
        self.score_sum[rows] += score
        self.times[rows] += 1
        self.flag_count[rows] += flags

    def suggested(self) -> np.ndarray:
        """Label with the largest averaged vote (``argmax`` over the votes summed across rounds)."""
        out = np.empty(len(self.idx), dtype=np.int64)
        for rows in _blocks(np.arange(len(self.idx))):
            slot_labels = self._slot_labels(np.concatenate([(rows + self.first)[:, None], self.idx[rows]], axis=1))
            out[rows] = _winner(_aggregate(self.vote_sum[rows], slot_labels), slot_labels, self.used[rows], self.c)
        return out


def _check_inputs(features: Any, labels: Any, num_classes: Any, k: Any, rule: str, rounds: Any,
                  subsample: Any) -> tuple[Any, np.ndarray, int]:  # fmt: skip
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
        raise InputError(f"`num_classes` must be an integer >= 2; got {num_classes!r}")
    labels = validate_labels(labels, int(num_classes))
    if not hasattr(features, "shape"):
        features = np.asarray(features, dtype=np.float32)
    if len(features.shape) != 2:
        raise InputError(f"`features` must have shape (N, D); got shape {tuple(features.shape)}")
    if features.shape[0] != len(labels):
        raise InputError(f"`features` has {features.shape[0]} rows but `labels` has {len(labels)} entries")
    check_choice("rule", rule, RULES)
    for name, value in (("k", k), ("rounds", rounds)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise InputError(f"`{name}` must be a positive integer; got {value!r}")
    check_interval("subsample", subsample, low=0.0, high=1.0, closed="right")
    size = int(len(labels) * subsample)
    if k < 3 or k > size:
        raise InputError(f"`k` must be in [3, {size}] (self + 2 neighbours, at most the subsample size); got {k}")
    return features, labels, size


def simifeat(
    features: Any,
    labels: Any,
    *,
    num_classes: int,
    k: int = 10,
    rule: str = "mv",
    rounds: int = 21,
    subsample: float = SUBSAMPLE,
    seed: int = 0,
    index: str = "auto",
    backend: str = "auto",
    nprobe: int | None = None,
    threads: int | None = None,
    search_k: int | None = None,
    hoc_steps: int = STEPS,
) -> MethodResult:
    """Flag wrong labels with SimiFeat's kNN votes (see the module docstring for the algorithm).

    Args:
        features: ``(N, D)`` features from an encoder **not** trained on these labels (array or tensor).
        labels: ``(N,)`` given labels in ``[0, num_classes)``.
        num_classes: C.
        k: neighbours per vote, self included (SimiFeat: 10).
        rule: ``"mv"`` (majority vote disagrees with the label) or ``"rank"`` (per-class score percentiles at
            HOC's estimated noise rates).
        rounds: random subsamples (SimiFeat: 21).
        subsample: fraction of the points in each round's subsample (docta: 0.9, capped at 35k; no cap here).
        seed: seeds the subsamples, HOC's initialisation and the index training.
        index: neighbour index passed to :func:`robustlabels.neighbors.build` (a faiss factory string,
            ``"IVF{n}"`` for the torch backend, or ``"auto"``): chosen by
            :func:`robustlabels.neighbors.policy.choose_index` (``"auto"``: exact FAISS below 100k points,
            above the torch backend's IVF with ``√N`` lists and ``nprobe = 6``).
        backend: ``"faiss"``, ``"torch"``, ``"sklearn"`` or ``"auto"`` (the same policy).
        nprobe: IVF lists visited per query (``None``: the policy's or the index's default).
        threads: search threads (``None``: the library's default).
        search_k: neighbours searched once on the full set (self excluded); ``None``: :func:`default_search_k`.
        hoc_steps: Adam steps of the HOC solver.

    Returns:
        :class:`MethodResult` ``method="knn"``: ``scores`` the per-round ``−log(c_i[ỹ_i] + 1e-8)`` averaged over
        the rounds that sampled ``i``; ``flagged`` ``noisy_avg > 0.5``; ``suggested`` the argmax of the averaged
        votes; ``joint`` ``p_i T_ij`` from HOC (both rules). A point no round sampled (only possible for tiny
        ``rounds · subsample``) is scored from its full-set list and not flagged.
    """
    start = time.perf_counter()
    features, labels, size = _check_inputs(features, labels, num_classes, k, rule, rounds, subsample)
    n, c = len(labels), int(num_classes)
    width = default_search_k(k, subsample, n) if search_k is None else search_k
    if isinstance(width, bool) or not isinstance(width, (int, np.integer)) or not k - 1 <= width <= n - 1:
        raise InputError(f"`search_k` must be an integer in [{k - 1}, {n - 1}]; got {search_k!r}")
    backend, index, nprobe = choose_index(n, backend=backend, index=index, nprobe=nprobe)
    sims, idx, factory = _search(features, int(width), index=index, backend=backend, threads=threads, seed=seed,
                                 **({"nprobe": nprobe} if nprobe else {}))  # fmt: skip

    triplets, counts = _consensus_triplets(sims, idx, labels, _subsamples(n, size, rounds, seed), c)
    hoc = hoc_estimate(triplets, num_classes=c, weights=counts, steps=hoc_steps, seed=seed)
    noise_rates = _class_noise_rates(hoc, labels, c)

    state = _Rounds(sims, idx, labels, k=k, num_classes=c)
    for sampled in _subsamples(n, size, rounds, seed):
        state.round(sampled, np.flatnonzero(sampled), rule, noise_rates)
    unseen = np.flatnonzero(state.times == 0)
    if unseen.size:  # score from the full-set list; (0 + 1) / (0 + 2) = 0.5 is never flagged
        everyone = np.ones(n, dtype=bool)
        state.score_sum[unseen] = np.concatenate([state.block(b, everyone)[0] for b in _blocks(unseen)])
    noisy_avg = (state.flag_count + 1) / (state.times + 2)
    params: dict[str, Any] = {
        "k": k, "rule": rule, "rounds": rounds, "subsample": subsample, "seed": seed, "index": index,
        "index_used": factory, "backend": backend, "nprobe": nprobe, "threads": threads, "search_k": int(width),
        "hoc_steps": hoc_steps, "metric": "cosine", "joint": "hoc",
        "class_noise_rates": [round(float(r), 4) for r in noise_rates],
    }  # fmt: skip
    return MethodResult(
        "knn", scores=state.score_sum / np.maximum(state.times, 1), flagged=noisy_avg > 0.5,
        suggested=state.suggested(), joint=hoc.joint, params=params, seconds=time.perf_counter() - start,
    )  # fmt: skip
