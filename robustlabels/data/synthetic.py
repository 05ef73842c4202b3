"""Synthetic Gaussian classes: the fastest way to see noisy-label training work end to end."""

from __future__ import annotations

from typing import Any

import numpy as np

from robustlabels.data.datamodule import NoisyLabelDataModule
from robustlabels.errors import InputError


def make_blobs(
    num_samples: int, *, num_classes: int, dim: int, separation: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Isotropic unit-variance Gaussians around class centres at distance ``separation`` from the origin.

    Returns:
        ``(features (N, dim) float32, labels (N,) int64)`` with classes as balanced as ``N`` allows.
    """
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(num_classes, dim))
    centres *= separation / np.linalg.norm(centres, axis=1, keepdims=True)
    labels = rng.permutation(np.arange(num_samples) % num_classes)
    features = centres[labels] + rng.normal(size=(num_samples, dim))
    return features.astype(np.float32), labels.astype(np.int64)


class BlobsDataModule(NoisyLabelDataModule):
    """Gaussian blobs: ``num_samples`` training and ``test_samples`` test points in ``dim`` dimensions.

    The centres come from ``seed``, so the train and test draws share them.
    """

    def __init__(
        self,
        *,
        num_samples: int = 2000,
        test_samples: int = 1000,
        num_classes: int = 4,
        dim: int = 16,
        separation: float = 3.0,
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        if num_samples < 2 * num_classes or num_classes < 2:
            raise InputError(
                f"`num_samples` ({num_samples}) must be >= 2 * `num_classes` ({num_classes}) >= 4"
            )
        super().__init__(**kwargs)
        self.num_samples, self.test_samples, self.num_classes = num_samples, test_samples, num_classes
        self.dim, self.separation, self.seed = dim, separation, seed
        self.input_shape = (dim,)

    def load_split(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        total = self.num_samples + self.test_samples
        x, y = make_blobs(total, num_classes=self.num_classes, dim=self.dim, separation=self.separation,
                          seed=self.seed)  # fmt: skip
        part = slice(0, self.num_samples) if split == "train" else slice(self.num_samples, total)
        return x[part], y[part]
