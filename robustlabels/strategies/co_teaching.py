"""Co-teaching: two networks, each updated on the small-loss samples its peer selects (docs/methods.md)."""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pytorch_lightning.utilities import rank_zero_info
from torch import Tensor

from robustlabels.distributed import broadcast_from_rank0
from robustlabels.errors import InputError, check_interval
from robustlabels.strategies.base import STRATEGIES, Strategy
from robustlabels.types import Batch, Forward, StepResult, TrainData


def forget_rate_schedule(epoch: int, *, forget_rate: float, num_gradual: int, exponent: float = 1.0) -> float:
    """``R`` at ``epoch``: the official ``rate_schedule[epoch]``.

    ``rate = [τ] * E; rate[:T_k] = linspace(0, τ^c, T_k)``: 0 at epoch 0, rising linearly to ``τ^c`` at epoch
    ``T_k − 1``, then ``τ`` (``num_gradual = 0``: ``τ`` throughout, as in Nested Co-teaching's fine-tuning).
    """
    if epoch >= num_gradual:
        return forget_rate
    return forget_rate**exponent * epoch / (num_gradual - 1) if num_gradual > 1 else 0.0


def num_remember(batch_size: int, forget_rate: float) -> int:
    """``⌊(1 − R)·B⌋`` as the official code rounds it (``int``), but at least 1 so a loss always exists."""
    return max(1, int((1.0 - forget_rate) * batch_size))


def co_teaching_select(loss_a: Tensor, loss_b: Tensor, num_keep: int) -> tuple[Tensor, Tensor]:
    """Indices ``(num_keep,)`` of the smallest per-sample losses ``(B,)`` of each network: ``(by_a, by_b)``."""
    return loss_a.topk(num_keep, largest=False).indices, loss_b.topk(num_keep, largest=False).indices


def estimate_forget_rate(
    inputs: np.ndarray, labels: np.ndarray, *, num_classes: int, max_samples: int = 10_000, seed: int = 0
) -> float:
    """Noise rate ``1 − trace(Q)`` of the confident joint ``Q`` from quick out-of-fold probabilities.

    A 2-fold (stratified where possible) PCA(50) + standardised logistic regression on the flattened
    ``(N, ...)`` inputs of at most ``max_samples`` random rows, then
    :func:`robustlabels.noise.joint.estimate_joint`. On MNIST (10k) with 20% / 38% symmetric noise it
    gave 0.23 / 0.43 in about 10 s on 2 cores: a slight overestimate, as a weak model's own errors count
    as noise.
    """
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import KFold, StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from robustlabels.noise.joint import estimate_joint

    x, y = inputs.reshape(len(inputs), -1).astype(np.float32), labels.astype(np.int64)
    if len(y) > max_samples:
        rows = np.sort(np.random.default_rng(seed).choice(len(y), max_samples, replace=False))
        x, y = x[rows], y[rows]
    stratify = np.bincount(y).min() >= 2
    splitter = (StratifiedKFold if stratify else KFold)(n_splits=2, shuffle=True, random_state=seed)
    probs = np.zeros((len(y), num_classes))
    for train, heldout in splitter.split(x, y):
        components = min(50, x.shape[1], len(train) - 1)
        model = make_pipeline(PCA(components, random_state=seed), StandardScaler(), LogisticRegression(max_iter=100))
        model.fit(x[train], y[train])
        probs[np.ix_(heldout, model.classes_)] = model.predict_proba(x[heldout])
    return float(1.0 - np.trace(estimate_joint(y, probs)))


@STRATEGIES.register("co_teaching")
class CoTeaching(Strategy):
    """Each of two networks keeps its ``⌊(1 − R(t))·B⌋`` smallest-CE samples; its peer is updated on them.

    Both networks see the same batch. ``R`` follows the official per-epoch schedule
    (:func:`forget_rate_schedule`). The official loop trains its epochs 1..E−1 (epoch 0 only evaluates the
    random weights) and indexes the schedule by that number, so our 0-based epoch ``t`` uses
    ``rate[t + 1]``: ``R(t) = τ^c·min(1, (t + 1)/(T_k − 1))`` before ``τ`` is reached (``τ/9`` in the first
    epoch for ``T_k = 10``), not the often-quoted ``τ·t/T_k``.

    Each network's loss is the mean CE over its peer's selection (the official code divides that mean by
    ``num_remember`` once more, a 1/``num_remember`` scale that Adam ignores but SGD would not; we use the
    mean, the "sum / num_remember" the paper intends; with SGD, divide a learning rate tuned for the official
    code by ``num_remember`` ≈ ``(1 − τ)·B`` to train alike). The two losses are summed: the networks share no
    parameters and the selection is made on detached losses, so one backward pass gives each network
    exactly the gradient of its own co-teaching loss.

    Args:
        forget_rate: ``τ``, the noise-rate prior (official default: the noise rate, 0.2), or ``"estimate"``:
            estimated once at ``setup`` from the training data (:func:`estimate_forget_rate`), logged, and
            saved in checkpoints.
        num_gradual: ``T_k``, the epochs of the linear ramp (10 in the paper and code).
        exponent: ``c``; the ramp ends at ``τ^c`` (official quirk: it then jumps to ``τ``).
        estimate_samples: at most this many training samples are used by ``"estimate"``.

    Logs ``keep_frac``, ``forget_rate`` and, where the clean labels are known (for evaluation only; they never
    reach the loss), ``kept_clean_frac``: the fraction of both selections whose given label is correct.

    Reference: Han et al., "Co-teaching: Robust Training of Deep Neural Networks with Extremely Noisy Labels",
    NeurIPS 2018; code ``bhanML/Co-teaching``.
    """

    num_networks = 2
    estimated_forget_rate: Tensor

    def __init__(
        self,
        *,
        forget_rate: float | Literal["estimate"] = 0.2,
        num_gradual: int = 10,
        exponent: float = 1.0,
        estimate_samples: int = 10_000,
    ) -> None:
        super().__init__()
        if forget_rate != "estimate":
            check_interval("forget_rate", forget_rate, low=0.0, high=1.0, closed="left")
        if num_gradual < 0:
            raise InputError(f"`num_gradual` must be >= 0; got {num_gradual}")
        self.exponent = check_interval("exponent", exponent, low=0.0, high=math.inf, closed="neither")
        self.forget_rate, self.num_gradual, self.estimate_samples = forget_rate, num_gradual, estimate_samples
        self.register_buffer("estimated_forget_rate", torch.tensor(math.nan, dtype=torch.float64))
        self.rate = 0.0  # R(t) of the current epoch
        self._tau = math.nan if forget_rate == "estimate" else float(forget_rate)
        self._clean_known: bool | None = None  # whether this epoch's batches carry clean labels

    @property
    def prior(self) -> float:
        """``τ``: the given forget rate, or the estimate (NaN before :meth:`setup`)."""
        return float(self.estimated_forget_rate) if self.forget_rate == "estimate" else float(self.forget_rate)

    def setup(self, data: TrainData) -> None:
        """Estimate ``τ`` from the noisy training set when ``forget_rate="estimate"`` (once per run)."""
        if self.forget_rate != "estimate" or not math.isnan(self.prior):
            return
        rate = estimate_forget_rate(data.inputs.cpu().numpy(), data.targets.cpu().numpy(),
                                    num_classes=data.num_classes, max_samples=self.estimate_samples)  # fmt: skip
        # rank 0's estimate for every rank (a BLAS or scikit-learn build may round differently on each machine)
        self.estimated_forget_rate.copy_(broadcast_from_rank0(torch.tensor(min(rate, 0.99), dtype=torch.float64)))
        rank_zero_info(f"CoTeaching: forget_rate estimated by confident learning: {self.prior:.4f}")

    def on_train_epoch_start(self, epoch: int) -> None:
        self._tau = self.prior  # one host read per epoch
        if math.isnan(self._tau):
            raise InputError("CoTeaching(forget_rate='estimate') needs the training set: fit with a data module")
        self.rate = forget_rate_schedule(epoch + 1, forget_rate=self._tau, num_gradual=self.num_gradual,
                                         exponent=self.exponent)  # fmt: skip
        self._clean_known = None

    def compute_loss(self, batch: Batch, out: Forward) -> StepResult:
        loss_a, loss_b = (F.cross_entropy(z.float(), batch.targets, reduction="none") for z in out.logits)
        num_keep = num_remember(len(batch.targets), self.rate)
        by_a, by_b = co_teaching_select(loss_a.detach(), loss_b.detach(), num_keep)
        # No shared parameters and detached selections: d(sum)/dθ_a = d(loss_a[by_b].mean())/dθ_a exactly.
        loss = loss_a[by_b].mean() + loss_b[by_a].mean()
        logs: dict[str, Tensor | float] = {"keep_frac": num_keep / len(batch.targets), "forget_rate": self.rate}
        if self._clean_known is None:  # one host sync per epoch, not per step
            self._clean_known = bool((batch.clean_targets >= 0).any())
        if self._clean_known:
            logs["kept_clean_frac"] = kept_clean_fraction(batch, torch.cat([by_a, by_b]))
        if self.forget_rate == "estimate":
            logs["forget_rate_estimate"] = self._tau
        return StepResult(loss, logs)


def kept_clean_fraction(batch: Batch, kept: Tensor) -> Tensor:
    """Fraction of the ``kept`` indices whose given label is the true one, among those with a known label."""
    known = batch.clean_targets[kept] >= 0
    clean = (batch.targets[kept] == batch.clean_targets[kept]) & known
    return clean.sum().float() / known.sum().clamp_min(1).float()
