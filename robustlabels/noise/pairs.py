"""Noise on preference pairs: a swap of chosen and rejected is a flip of the pair's binary target.

Symmetric swaps need nothing new (``SymmetricNoise`` with two classes swaps each pair with probability ``rate``,
or exactly ``round(rate·n_k)`` per side with ``exact``). The models here depend on a per-pair covariate that the
pair data module passes as ``features``: their ``covariate`` attribute names it.

* :class:`DifficultySwapNoise`: a Bradley–Terry annotator, ``P(swap) = σ(−β·|Δ|)`` for the latent reward gap
  ``Δ``, with ``β`` calibrated so that the mean swap probability is ``rate``: ambiguous pairs are swapped most.
* :class:`SystematicAnnotatorNoise`: a fraction of the pairs is labelled by a heuristic ("the longer response
  wins"), whatever the truth; the manifest's realised rate is its disagreement with the truth.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np

from robustlabels.errors import InputError, check_choice, check_interval
from robustlabels.noise.sample import NoisyLabels, noisy_labels_from, validate_labels
from robustlabels.noise.spec import NoiseModel


def _pair_inputs(
    model: DifficultySwapNoise | SystematicAnnotatorNoise, labels: np.ndarray, num_classes: int,
    features: np.ndarray | None,
) -> np.ndarray:
    """Validated ``(N,)`` targets and the ``(N,)`` covariate of a pair noise model."""
    if num_classes != 2:
        raise InputError(f"{type(model).__name__} corrupts preference pairs (2 classes); got num_classes={num_classes}")
    validate_labels(labels, 2)
    if features is None:
        raise InputError(f"{type(model).__name__} needs the pairs' {model.covariate!r} (a pair data module gives it)")
    covariate = np.asarray(features, dtype=np.float64).reshape(-1)
    if covariate.shape != labels.shape or not np.isfinite(covariate).all():
        raise InputError(f"{type(model).__name__}: {model.covariate!r} must be {len(labels)} finite numbers; got "
                         f"shape {np.shape(features)}")  # fmt: skip
    return covariate


def calibrate_beta(gaps: np.ndarray, rate: float, *, iterations: int = 200) -> float:
    """``β ≥ 0`` with ``mean σ(−β·gaps) = rate`` for ``gaps ≥ 0`` (bisection on a decreasing function).

    Raises:
        InputError: ``rate`` is not reachable: above ``mean σ(0)`` = 0.5 or below the limit ``β → ∞``, which is
            half the share of zero gaps.
    """
    gaps = np.abs(gaps)
    floor = 0.5 * float((gaps == 0).mean())
    if not floor < rate <= 0.5:
        raise InputError(f"DifficultySwapNoise: a mean swap rate of {rate} is out of reach for these pairs "
                         f"(reachable: ({floor:.4g}, 0.5])")  # fmt: skip
    mean_rate = lambda beta: float((1.0 / (1.0 + np.exp(np.clip(beta * gaps, -700, 700)))).mean())  # noqa: E731
    low, high = 0.0, 1.0
    while mean_rate(high) > rate:
        high *= 2.0
    for _ in range(iterations):
        mid = 0.5 * (low + high)
        low, high = (mid, high) if mean_rate(mid) > rate else (low, mid)
    return 0.5 * (low + high)


class DifficultySwapNoise(NoiseModel):
    """Swap pair ``i`` with probability ``σ(−β·|Δ_i|)``, ``β`` calibrated to a mean swap rate ``rate``.

    A Bradley–Terry annotator who sees the latent reward gap ``Δ`` with noise: pairs with a small gap are
    swapped almost half the time, clear pairs rarely (docs/pairs.md). ``β`` is found by bisection on the data's
    gaps and recorded (``beta``) after :meth:`apply`.

    Args:
        rate: target mean swap probability, in (0, 0.5].
    """

    name = "difficulty_swap"
    covariate: ClassVar[str] = "reward_gap"

    def __init__(self, rate: float) -> None:
        self.rate = float(check_interval("rate", rate, low=0.0, high=0.5, closed="right"))
        self.beta: float | None = None

    def apply(self, labels: np.ndarray, *, num_classes: int, seed: int, features: np.ndarray | None = None
              ) -> NoisyLabels:  # fmt: skip
        gaps = _pair_inputs(self, labels, num_classes, features)
        self.beta = calibrate_beta(gaps, self.rate)
        p_swap = 1.0 / (1.0 + np.exp(np.clip(self.beta * np.abs(gaps), -700, 700)))
        swap = np.random.default_rng(seed).random(len(labels)) < p_swap
        return noisy_labels_from(labels, np.where(swap, 1 - labels, labels), 2)


class SystematicAnnotatorNoise(NoiseModel):
    """A heuristic annotator labels a ``fraction`` of the pairs (seeded), whatever the truth.

    ``rule="longer"``: the side with the longer response is preferred (the length bias of real reward models);
    ties keep the true label. The realised rate is the annotator's disagreement with the truth.

    Args:
        rule: the heuristic (``longer`` or ``shorter``).
        fraction: share of the pairs the annotator labels, in [0, 1].
    """

    name = "systematic_annotator"
    covariate: ClassVar[str] = "length_gap"

    def __init__(self, rule: Literal["longer", "shorter"] = "longer", fraction: float = 1.0) -> None:
        self.rule = check_choice("rule", rule, ("longer", "shorter"))
        self.fraction = float(check_interval("fraction", fraction, low=0.0, high=1.0))

    def apply(self, labels: np.ndarray, *, num_classes: int, seed: int, features: np.ndarray | None = None
              ) -> NoisyLabels:  # fmt: skip
        gap = _pair_inputs(self, labels, num_classes, features)  # side 0 minus side 1
        gap = gap if self.rule == "longer" else -gap
        heuristic = np.where(gap > 0, 0, np.where(gap < 0, 1, labels))
        annotated = np.random.default_rng(seed).random(len(labels)) < self.fraction
        return noisy_labels_from(labels, np.where(annotated, heuristic, labels), 2)
