"""Noise on preference pairs: difficulty-dependent swaps (β calibrated) and a systematic annotator."""

from __future__ import annotations

import numpy as np
import pytest

from robustlabels.errors import InputError
from robustlabels.noise import DifficultySwapNoise, SystematicAnnotatorNoise, calibrate_beta


@pytest.mark.parametrize("rate", [0.05, 0.2, 0.4])
def test_beta_is_calibrated_to_the_mean_swap_rate(rate: float) -> None:
    gaps = np.random.default_rng(0).integers(1, 10, 5000).astype(float)
    beta = calibrate_beta(gaps, rate)
    assert abs(float((1 / (1 + np.exp(beta * gaps))).mean()) - rate) < 1e-6


def test_unreachable_rates_are_refused() -> None:
    with pytest.raises(InputError, match=r"mean swap rate of 0.1 is out of reach .*\(0.25, 0.5\]"):
        calibrate_beta(np.array([0.0, 0.0, 1.0, 2.0]), 0.1)  # half the gaps are 0: at least 0.25 swap


def test_difficulty_swaps_hit_small_gaps_most_and_realise_the_rate() -> None:
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 40_000)
    gaps = rng.integers(1, 10, 40_000).astype(float) * np.where(labels == 0, 1, -1)  # side 0 minus side 1
    model = DifficultySwapNoise(0.2)
    result = model.apply(labels, num_classes=2, seed=3, features=gaps)
    assert abs(result.realized_rate - 0.2) < 0.01 and model.beta is not None and model.beta > 0
    small, large = np.abs(gaps) == 1, np.abs(gaps) == 9
    assert result.is_flipped[small].mean() > 3 * result.is_flipped[large].mean()
    again = DifficultySwapNoise(0.2).apply(labels, num_classes=2, seed=3, features=gaps)
    assert np.array_equal(result.noisy, again.noisy)


def test_length_annotator_prefers_the_longer_side() -> None:
    labels = np.array([0, 0, 1, 1, 0])
    length_gap = np.array([5.0, -5.0, 5.0, -5.0, 0.0])  # side 0 minus side 1; the last a tie
    noisy = SystematicAnnotatorNoise("longer").apply(labels, num_classes=2, seed=0, features=length_gap).noisy
    assert noisy.tolist() == [0, 1, 0, 1, 0]
    half = SystematicAnnotatorNoise("shorter", fraction=0.5).apply(
        np.zeros(10_000, np.int64), num_classes=2, seed=0, features=np.ones(10_000))  # fmt: skip
    assert abs(half.realized_rate - 0.5) < 0.02


def test_pair_noise_errors() -> None:
    with pytest.raises(InputError, match="corrupts preference pairs"):
        DifficultySwapNoise(0.2).apply(np.zeros(3, np.int64), num_classes=3, seed=0, features=np.ones(3))
    with pytest.raises(InputError, match="needs the pairs' 'length_gap'"):
        SystematicAnnotatorNoise().apply(np.zeros(3, np.int64), num_classes=2, seed=0)
    with pytest.raises(InputError, match="'reward_gap' must be 3 finite numbers"):
        DifficultySwapNoise(0.2).apply(np.zeros(3, np.int64), num_classes=2, seed=0, features=np.ones(4))
    with pytest.raises(InputError, match="`rate`"):
        DifficultySwapNoise(0.6)
