"""How well a strategy's per-sample weights separate clean from flipped samples (evaluation only).

The true labels never reach a loss here: they only score the weights a strategy has already used.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch import Tensor

from robustlabels.strategies.base import Strategy
from robustlabels.types import Batch

HISTOGRAM_BINS = 20


class WeightTally:
    """The weights of one epoch's samples whose true label is known, split by whether their label is right."""

    def __init__(self) -> None:
        self.weights: list[Tensor] = []
        self.clean: list[Tensor] = []

    def add(self, weights: Tensor, batch: Batch) -> None:
        """Record ``weights (B,)`` of ``batch`` (the rows with a known true label)."""
        known = batch.clean_targets >= 0
        self.weights.append(weights.detach()[known].float().cpu())
        self.clean.append((batch.targets == batch.clean_targets)[known].cpu())

    def close_epoch(self) -> tuple[dict[str, float], dict[str, list[float]]]:
        """Scalars to log (``weight_auc``: the probability that a clean sample outweighs a flipped one,
        ``weight_mean_clean``, ``weight_mean_flipped``) and a histogram of both groups; both empty unless the
        epoch saw clean and flipped samples. Starts the next epoch's tally."""
        weights = torch.cat(self.weights).numpy() if self.weights else np.zeros(0)
        clean = torch.cat(self.clean).numpy() if self.clean else np.zeros(0, dtype=bool)
        self.weights, self.clean = [], []
        finite = np.isfinite(weights)  # a diverged step (NaN weights) is left out, not allowed to end the run
        weights, clean = weights[finite], clean[finite]
        if clean.all() or not clean.any():
            return {}, {}
        edges = np.linspace(0.0, max(1.0, float(weights.max())), HISTOGRAM_BINS + 1)
        histogram = {"edges": edges.tolist(), "clean": np.histogram(weights[clean], edges)[0].tolist(),
                     "flipped": np.histogram(weights[~clean], edges)[0].tolist()}  # fmt: skip
        scalars = {"weight_auc": float(roc_auc_score(clean, weights)),
                   "weight_mean_clean": float(weights[clean].mean()),
                   "weight_mean_flipped": float(weights[~clean].mean())}  # fmt: skip
        return scalars, histogram


class WeightingStrategy(Strategy):
    """A strategy that weighs each sample's loss: each epoch it reports how well its weights separate clean from
    flipped samples (:class:`WeightTally`), and it keeps the histograms for ``diagnostics.json``."""

    def __init__(self) -> None:
        super().__init__()
        self.tally, self.histograms, self.epoch = WeightTally(), list[dict[str, Any]](), 0

    def on_train_epoch_start(self, epoch: int) -> None:
        self.epoch = epoch

    def record(self, weights: Tensor, batch: Batch) -> dict[str, Tensor | float]:
        """Tally the step's ``weights (B,)``; return the step's logs (the mean weight)."""
        self.tally.add(weights, batch)
        return {"weight_mean": weights.detach().float().mean()}

    def on_train_epoch_end(self) -> dict[str, float]:
        scalars, histogram = self.tally.close_epoch()
        if histogram:
            self.histograms.append({"epoch": self.epoch, **histogram})
        return scalars

    def diagnostics(self) -> dict[str, Any]:
        return {"weight_histograms": self.histograms} if self.histograms else {}
