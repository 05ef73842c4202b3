"""HOC: the noise transition matrix ``T`` and the true-label prior ``p`` from label consensus among neighbours.

Reference: Zhu, Song, Liu, "Clusterability as an Alternative to Anchor Points When Learning with Noisy
Labels", ICML 2021; used by SimiFeat's ``rank`` rule (docs/methods.md). Re-implemented from the
equations; the reference code (``Docta-ai/docta``, ``UCSC-REAL/SimiFeat``) is CC BY-NC and is not copied.

Assumption (2-NN clusterability): a point and its two nearest neighbours share one true label ``y*``, and
their given labels are drawn independently from row ``y*`` of ``T`` (``T[i, j] = P(ỹ = j | y* = i)``). The
consensus statistics of given-label triplets ``(ỹ_x, ỹ_nn1, ỹ_nn2)`` are then

- first order  ``c1[j]       = Σ_i p_i T_ij``
- second order ``c2[j, l]    = Σ_i p_i T_ij T_il``
- third order  ``c3[j, l, m] = Σ_i p_i T_ij T_il T_im``

:func:`hoc_estimate` measures them from triplets and solves ``min Σ_o ||ĉ_o − c_o(T, p)||_F`` (plain, not
squared, Frobenius norms) over ``T = row-softmax(A)``, ``p = softmax(b)`` with Adam, as the reference does:
``A₀ = 5 I − 1``, ``b₀ = 1/C + U(0, 0.1)`` (seeded), learning rate 0.1, 1501 steps, keeping the iterate
with the lowest loss after step 5.

Efficiency: ``c3`` is never formed densely. ``||c3(T, p)||² = pᵀ (G∘G∘G) p`` with ``G = T Tᵀ``, and the cross
term ``⟨ĉ3, c3⟩`` runs over the distinct observed triplets only (a sparse product), so a step costs
``O(C³ + C · distinct triplets)`` time and ``O(C³)`` memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from robustlabels.errors import InputError
from robustlabels.neighbors.torch_index import torch_threads
from robustlabels.noise.sample import validate_labels

STEPS = 1501
LR = 0.1
SINGLE_THREAD_BELOW = 128  # classes; below this, thread start-up costs more than the tiny matrix products


@dataclass(frozen=True)
class Consensus:
    """Measured consensus statistics of given-label triplets ``(x, nn1, nn2)``, each summing to 1.

    Attributes:
        first: ``(C,)`` ``P(ỹ_x = j)``.
        second: ``(C, C)`` ``P(ỹ_x = j, ỹ_nn1 = l)``.
        triplets: ``(M, 3)`` int64 distinct observed triplets.
        freq: ``(M,)`` float64 their frequencies (the nonzero entries of the third-order statistic).
    """

    first: np.ndarray
    second: np.ndarray
    triplets: np.ndarray
    freq: np.ndarray

    @property
    def num_classes(self) -> int:
        """C."""
        return len(self.first)


@dataclass(frozen=True)
class HOCEstimate:
    """HOC's answer.

    Attributes:
        transition: ``(C, C)`` row-stochastic ``T[i, j] = P(ỹ = j | y* = i)``.
        prior: ``(C,)`` ``p_i = P(y* = i)``.
        loss: the consensus loss at the returned iterate.
    """

    transition: np.ndarray
    prior: np.ndarray
    loss: float

    @property
    def joint(self) -> np.ndarray:
        """``(C, C)`` ``P(y* = i, ỹ = j) = p_i T_ij`` (rows true, columns given), summing to 1."""
        return self.prior[:, None] * self.transition


def consensus_counts(triplets: np.ndarray, *, num_classes: int, weights: np.ndarray | None = None) -> Consensus:
    """Measure the consensus statistics of given-label triplets.

    Args:
        triplets: ``(M, 3)`` given labels of a point, its nearest and its second-nearest neighbour.
        num_classes: C.
        weights: optional ``(M,)`` non-negative counts of each row (for pre-aggregated triplets).
    """
    array = np.asarray(triplets)
    if array.ndim != 2 or array.shape[1] != 3 or array.shape[0] == 0:
        raise InputError(f"`triplets` must have shape (M, 3) with M >= 1; got shape {array.shape}")
    c = int(num_classes)
    flat = validate_labels(array.reshape(-1), c, name="triplet label").reshape(-1, 3)
    w = np.ones(len(flat)) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (len(flat),) or not np.all(np.isfinite(w)) or (w < 0).any() or w.sum() <= 0:
        raise InputError(f"`weights` must be {len(flat)} non-negative finite numbers with a positive sum")
    codes = (flat[:, 0] * c + flat[:, 1]) * c + flat[:, 2]
    unique, inverse = np.unique(codes, return_inverse=True)
    freq = np.bincount(inverse.reshape(-1), weights=w) / w.sum()
    first_second, third = np.divmod(unique, c)
    first = np.bincount(first_second // c, weights=freq, minlength=c)
    second = np.bincount(first_second, weights=freq, minlength=c * c).reshape(c, c)
    triplets_unique = np.stack([first_second // c, first_second % c, third], axis=1)
    keep = freq > 0
    return Consensus(first, second, triplets_unique[keep], freq[keep])


def expected_consensus(transition: np.ndarray, prior: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dense ``(c1, c2, c3)`` implied by ``T`` and ``p`` (``c3`` is ``(C, C, C)``: for small C and tests)."""
    t, p = np.asarray(transition, dtype=np.float64), np.asarray(prior, dtype=np.float64)
    return p @ t, np.einsum("i,ij,il->jl", p, t, t), np.einsum("i,ij,il,im->jlm", p, t, t, t)


class _ConsensusLoss:
    """``Σ_o ||ĉ_o − c_o(T, p)||_F`` as a function of ``(T, p)`` tensors, without a dense ``c3``."""

    def __init__(self, consensus: Consensus) -> None:
        c = consensus.num_classes
        self.first = torch.as_tensor(consensus.first, dtype=torch.float64)
        self.second = torch.as_tensor(consensus.second, dtype=torch.float64)
        trip = torch.as_tensor(consensus.triplets, dtype=torch.int64)
        freq = torch.as_tensor(consensus.freq, dtype=torch.float64)
        # F[(j, l), m] = ĉ3[j, l, m] as a sparse (C², C) matrix, so Σ_m F[(j,l), m] T[i, m] is one sparse product.
        self.third = torch.sparse_coo_tensor(
            torch.stack([trip[:, 0] * c + trip[:, 1], trip[:, 2]]), freq, (c * c, c), check_invariants=True
        ).coalesce()
        self.third_sq = float((freq * freq).sum())

    def __call__(self, transition: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
        t, p = transition, prior
        c = t.shape[0]
        loss1 = torch.linalg.vector_norm(self.first - p @ t)
        loss2 = torch.linalg.vector_norm(self.second - t.T @ (p[:, None] * t))
        gram = t @ t.T
        model_sq = p @ (gram**3) @ p  # ||c3||² = Σ_{i,i'} p_i p_i' (T Tᵀ)_{ii'}³
        contracted = torch.sparse.mm(self.third, t.T)  # [(j, l), i] = Σ_m ĉ3[j, l, m] T[i, m]
        pairs = (t.T[:, None, :] * t.T[None, :, :]).reshape(c * c, c)  # [(j, l), i] = T[i, j] T[i, l]
        cross = ((pairs * contracted).sum(0) * p).sum()
        loss3 = torch.sqrt(torch.clamp(self.third_sq - 2 * cross + model_sq, min=0.0) + 1e-30)
        return loss1 + loss2 + loss3


def hoc_estimate(
    triplets: np.ndarray,
    *,
    num_classes: int,
    weights: np.ndarray | None = None,
    steps: int = STEPS,
    lr: float = LR,
    seed: int = 0,
) -> HOCEstimate:
    """Estimate ``T`` and ``p`` from given-label triplets ``(x, nn1, nn2)`` by HOC's consensus equations.

    Args:
        triplets: ``(M, 3)`` given labels of a point and of its two nearest neighbours.
        num_classes: C.
        weights: optional ``(M,)`` counts of each triplet row.
        steps: Adam steps (the reference uses 1501).
        lr: Adam learning rate (0.1 in the reference).
        seed: seeds the random part of the prior's initialisation.

    Returns:
        :class:`HOCEstimate` with ``transition`` ``(C, C)`` (rows true, columns given), ``prior`` ``(C,)`` and
        ``joint``. Cost: ``O(steps · (C³ + C · distinct triplets))``, fine for C up to a few hundred.
    """
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise InputError(f"`steps` must be a positive integer; got {steps!r}")
    consensus = consensus_counts(triplets, num_classes=num_classes, weights=weights)
    with torch_threads(1 if consensus.num_classes < SINGLE_THREAD_BELOW else None):
        transition, prior, loss = _solve(_ConsensusLoss(consensus), consensus.num_classes, steps, lr, seed)
    return HOCEstimate(transition=transition, prior=prior, loss=loss)


def _solve(loss_fn: _ConsensusLoss, c: int, steps: int, lr: float, seed: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Adam on the softmax parameters; returns the best ``(T, p, loss)`` after step 5 (the reference's rule)."""
    gen = torch.Generator().manual_seed(int(seed))
    logits_t = (5 * torch.eye(c, dtype=torch.float64) - 1).requires_grad_()
    logits_p = (1.0 / c + 0.1 * torch.rand(c, generator=gen, dtype=torch.float64)).requires_grad_()
    optimizer = torch.optim.Adam([logits_t, logits_p], lr=lr)
    best, best_t, best_p = float("inf"), logits_t.detach().clone(), logits_p.detach().clone()
    for step in range(int(steps)):
        loss = loss_fn(torch.softmax(logits_t, dim=1), torch.softmax(logits_p, dim=0))
        if (step > 5 or step == steps - 1) and loss.item() < best:
            best, best_t, best_p = loss.item(), logits_t.detach().clone(), logits_p.detach().clone()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return torch.softmax(best_t, dim=1).numpy(), torch.softmax(best_p, dim=0).numpy(), best
