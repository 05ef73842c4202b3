"""Fixtures of the scale tests: clustered vectors with planted label noise, and probabilities."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest


def clustered(n: int, d: int, classes: int, *, seed: int = 0, rate: float = 0.2, intrinsic: int = 8
              ) -> tuple[np.ndarray, ...]:  # fmt: skip
    """``(N, D)`` float32 points around one centre per class, spread in a class's own ``intrinsic``-dimensional
    subspace plus a little isotropic noise (as embeddings are: low intrinsic dimension, which IVF relies on);
    the true labels, and labels with ``rate`` flipped to another class."""
    rng = np.random.default_rng(seed)
    centres = 2.0 * rng.standard_normal((classes, d))
    basis = rng.standard_normal((classes, intrinsic, d)) / np.sqrt(intrinsic)
    true = rng.integers(0, classes, n)
    spread = np.einsum("ni,nid->nd", rng.standard_normal((n, intrinsic)), basis[true])
    x = (centres[true] + 1.5 * spread + 0.1 * rng.standard_normal((n, d))).astype(np.float32)
    noisy = true.copy()
    flip = rng.random(n) < rate
    noisy[flip] = (true[flip] + rng.integers(1, classes, flip.sum())) % classes
    return x, true, noisy


def probabilities(true: np.ndarray, classes: int, *, seed: int = 0, dtype: type = np.float64) -> np.ndarray:
    """``(N, C)`` softmax rows that favour the true class (continuous: no two rows tie)."""
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((len(true), classes))
    logits[np.arange(len(true)), true] += 2.5
    p = np.exp(logits)
    return (p / p.sum(1, keepdims=True)).astype(dtype)


@pytest.fixture(scope="module")
def blobs() -> tuple[np.ndarray, ...]:
    return clustered(20_000, 64, 10)


class DiesOnce:
    """A model that kills its worker process the first time it sees a shard whose first value is ``victim``.

    It lives here because Ray's workers import the module that defines it: this one imports only numpy.
    """

    def __init__(self, marker: str, victim: float) -> None:
        self.marker, self.victim = marker, victim

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        if rows[0, 0] == self.victim and not os.path.exists(self.marker):
            Path(self.marker).touch()
            os._exit(1)  # the worker dies mid-shard, as a crash or an OOM kill would
        return 2.0 * rows
