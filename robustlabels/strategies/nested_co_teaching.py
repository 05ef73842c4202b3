"""Nested Co-teaching: two nested-dropout networks, then co-teaching fine-tuning (docs/methods.md)."""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from robustlabels.errors import InputError, check_choice, check_interval
from robustlabels.networks import Networks
from robustlabels.strategies.base import STRATEGIES, EpochPlan, Strategy
from robustlabels.strategies.co_teaching import (
    co_teaching_select,
    forget_rate_schedule,
    kept_clean_fraction,
    num_remember,
)
from robustlabels.strategies.standard import masked_mean
from robustlabels.types import Batch, Forward, StepResult, TrainData

SUBSET_SEEDS = (123, 321)  # the official data/clothing1M_rand_subset.py seeds of the two networks


def class_balanced_subset(labels: np.ndarray, num_classes: int, *, seed: int) -> np.ndarray:
    """``(N,)`` bool mask: for every class, ``min_c count(c)`` of its samples drawn without replacement.

    Classes are the given (noisy) labels; a class with no sample gives an empty subset, as its minimum is 0.
    """
    counts = np.bincount(labels, minlength=num_classes)
    per_class, rng = int(counts.min()), np.random.default_rng(seed)
    mask = np.zeros(len(labels), dtype=bool)
    for c in range(num_classes):
        mask[rng.choice(np.flatnonzero(labels == c), per_class, replace=False)] = True
    return mask


@STRATEGIES.register("nested_co_teaching")
class NestedCoTeaching(Strategy):
    """The two stages of Nested Co-teaching in one run, switching at epoch ``stage1_epochs``.

    Use it with ``RobustModule(nested_dropout=NestedDropout(...))``.

    * **Stage 1** (epochs ``0 .. stage1_epochs − 1``): the two networks are trained independently, each with
      plain cross-entropy on the whole batch and its own nested-dropout ``k``; the loss is the sum of the two
      (no shared parameters, so each network gets exactly the gradient of its own CE). With
      ``stage1_subsets``, network ``i`` only learns from the samples of its own class-balanced random subset
      (:func:`class_balanced_subset`, seeds 123 and 321 as officially): its CE is averaged over the batch's
      members of that subset.
    * **Stage 2** (from epoch ``stage1_epochs``): co-teaching fine-tuning. Each batch of ``B`` is split in
      halves ``B1 = [0, ⌊B/2⌋)`` and ``B2 = [⌊B/2⌋, 2⌊B/2⌋)`` (an odd batch's last sample is left out, as the
      official ``narrow`` does). Without gradients and in eval mode, net 0 scores ``B1`` and net 1 scores
      ``B2`` (per-sample CE) at the nested prefix ``K`` of the last validation; each keeps its
      ``⌊(1 − τ_e)·|B/2|⌋`` smallest; net 0 is updated on net 1's selection from ``B2`` and net 1 on net 0's
      from ``B1``, from the training-mode forward with one fresh nested ``k`` shared by both. ``τ_e`` follows
      :func:`forget_rate_schedule` counted from the start of stage 2 (``num_gradual = 0``, the default of all
      the official fine-tune scripts, keeps it constant).
    * At the switch the optimizer state (momentum, Adam moments) is cleared and, if ``stage2_lr`` is given,
      every parameter group's learning rate is set to it (:class:`EpochPlan`): the official stage 2 starts a
      fresh optimizer from the stage-1 checkpoints with a smaller learning rate. The switch is recorded in the
      ``switched`` buffer, so a run resumed mid stage 2 does not reset again.
    * With ``freeze_bn`` (the default, as every official fine-tune script passes ``--freeze-bn``), stage 2
      keeps BatchNorm in eval mode (the running statistics of stage 1, not updated) and its affine parameters
      fixed. It takes effect only after a stage 1 (``stage1_epochs > 0``): random-initialisation statistics
      are not worth freezing.

    Each stage runs on its own: ``trainer.max_epochs == stage1_epochs`` runs stage 1 only; resuming its
    ``last.ckpt`` (``--ckpt_path``) with a larger ``max_epochs`` runs stage 2 only; ``stage1_epochs: 0`` runs
    co-teaching with nested dropout from random initialisation.

    Departures from the official code (``yingyichen-cyy/Nested-Co-teaching``):
        - stage 1 trains both networks in one run on the same batches (officially two separate runs); with
          ``stage1_subsets`` each network's loss is masked to its subset, so an epoch passes once over both
          subsets, with fewer samples per step;
        - stage 2 trains on the whole training set (the subsets are stage 1's only) and continues the two
          networks of the same run instead of loading two separately trained checkpoints;
        - the gradient step reuses the training-mode forward of the whole batch rather than a forward of the
          selected samples only; with ``freeze_bn`` this changes nothing (BatchNorm uses its running
          statistics), without it the batch statistics cover the whole batch;
        - with an ``lr_scheduler``, the scheduler keeps its own epoch count through the switch (the official
          stage 2 restarts its schedule); the shipped config uses none;
        - the official evaluation reads a selected ``K = 1`` as "all channels" (its index 0 is replaced by the
          full width); we keep ``K = 1`` as one channel, so a run selecting it differs;
        - a batch of one sample cannot be halved: its loss is the plain CE sum, as in stage 1.

    Args:
        stage1_epochs: epochs of stage 1 (0: stage 2 only).
        forget_rate: ``τ`` of stage 2 (0.2 for CIFAR / ANIMAL-10N, 0.3 for Clothing1M in the official scripts).
        num_gradual: epochs of the linear ramp of ``τ`` in stage 2 (0: constant, the official setting).
        stage2_lr: learning rate set at the switch (None: keep the current one).
        stage1_subsets: train each network of stage 1 on its own class-balanced random subset (per class, the
            smallest class's count of given labels), as the official Clothing1M runs do.
        k_selection: the nested prefix that scores stage 2's halves: ``shared`` (the official rule) is the one
            ``K`` validation selects for the model, the mean of both networks' logits; ``per_network`` gives
            each network its own validation-optimal ``K`` (``NestedDropout.network_k``).
        freeze_bn: freeze BatchNorm in stage 2 (see above).

    Logs ``stage`` and, in stage 2, ``keep_frac``, ``forget_rate`` and (clean labels known, evaluation only)
    ``kept_clean_frac``.

    Reference: Chen et al., "Boosting Co-teaching with Compression Regularization for Label Noise", CVPR
    Workshops (L2ID) 2021; code ``yingyichen-cyy/Nested-Co-teaching`` (``co_teaching_resnet/train.py``).
    """

    num_networks = 2
    switched: Tensor
    subsets: Tensor

    def __init__(
        self,
        *,
        stage1_epochs: int = 10,
        forget_rate: float = 0.2,
        num_gradual: int = 0,
        stage2_lr: float | None = None,
        stage1_subsets: bool = False,
        k_selection: Literal["shared", "per_network"] = "shared",
        freeze_bn: bool = True,
    ) -> None:
        super().__init__()
        if stage1_epochs < 0:
            raise InputError(f"`stage1_epochs` must be >= 0; got {stage1_epochs}")
        if num_gradual < 0:
            raise InputError(f"`num_gradual` must be >= 0; got {num_gradual}")
        if stage2_lr is not None and not stage2_lr > 0:
            raise InputError(f"`stage2_lr` must be > 0; got {stage2_lr!r}")
        self.forget_rate = check_interval("forget_rate", forget_rate, low=0.0, high=1.0, closed="left")
        self.k_selection = check_choice("k_selection", k_selection, ("shared", "per_network"))
        self.stage1_epochs, self.num_gradual, self.stage2_lr = stage1_epochs, num_gradual, stage2_lr
        self.stage1_subsets, self.freeze_bn = stage1_subsets, freeze_bn
        self.register_buffer("switched", torch.zeros((), dtype=torch.bool))
        self.register_buffer("subsets", torch.zeros(0, 0, dtype=torch.bool))  # (2, N) with stage1_subsets
        self.stage = 1 if stage1_epochs > 0 else 2
        self.rate = 0.0
        self._clean_known: bool | None = None

    @property
    def shared_nested_k(self) -> bool:  # type: ignore[override]
        """Whether both networks share one nested-dropout ``k`` per mini-batch: in stage 2 only."""
        return self.stage == 2

    def setup(self, data: TrainData) -> None:
        """Draw the two class-balanced subsets from the given labels (``stage1_subsets`` only)."""
        if self.stage1_subsets:
            labels = data.targets.cpu().numpy()
            masks = [class_balanced_subset(labels, data.num_classes, seed=seed) for seed in SUBSET_SEEDS]
            self.subsets = torch.from_numpy(np.stack(masks)).to(self.subsets.device)

    def on_train_epoch_start(self, epoch: int) -> EpochPlan | None:
        self.stage = 1 if epoch < self.stage1_epochs else 2
        self._clean_known = None
        if self.stage == 1:
            return None
        self.rate = forget_rate_schedule(epoch - self.stage1_epochs, forget_rate=self.forget_rate,
                                         num_gradual=self.num_gradual)  # fmt: skip
        if self.stage1_epochs == 0 or bool(self.switched):
            return None
        self.switched.fill_(True)
        return EpochPlan(reset_optimizer_state=True, lr=self.stage2_lr)

    def step(self, nets: Networks, batch: Batch, meta: Batch | None = None) -> StepResult:
        half = len(batch.targets) // 2
        if self.stage == 1 or half == 0:
            return super().step(nets, batch)
        x = batch.inputs
        score0, score1 = nets.eval_logits([x[:half], x[half : 2 * half]], own_k=self.k_selection == "per_network")
        if self.freeze_bn and self.stage1_epochs > 0:
            nets.freeze_batchnorm()
        out = nets(x, shared_k=True)
        return replace(self.stage2_loss(batch, out, (score0, score1)), out=out)

    def compute_loss(self, batch: Batch, out: Forward) -> StepResult:
        """Stage 1: each network's own cross-entropy (on its subset with ``stage1_subsets``), summed."""
        if not self.stage1_subsets or self.stage == 2:
            loss_a, loss_b = (F.cross_entropy(z.float(), batch.targets) for z in out.logits)
            return StepResult(loss_a + loss_b, {"stage": float(self.stage)})
        members = self.subsets.index_select(1, batch.index)  # (2, B)
        loss_a, loss_b = (masked_mean(F.cross_entropy(z.float(), batch.targets, reduction="none"), members[i])
                          for i, z in enumerate(out.logits))  # fmt: skip
        return StepResult(loss_a + loss_b, {"stage": 1.0, "subset_frac": members.float().mean()})

    def stage2_loss(self, batch: Batch, out: Forward, scores: tuple[Tensor, Tensor]) -> StepResult:
        """Co-teaching on the halves: ``scores`` are net 0's ``(B/2, C)`` eval logits on ``B1``, net 1's on ``B2``."""
        y, half = batch.targets, len(scores[0])
        score1 = F.cross_entropy(scores[0].float(), y[:half], reduction="none")
        score2 = F.cross_entropy(scores[1].float(), y[half : 2 * half], reduction="none")
        num_keep = num_remember(half, self.rate)
        by_net0, by_net1 = co_teaching_select(score1, score2, num_keep)
        kept_by_net0, kept_by_net1 = by_net0, by_net1 + half  # positions in the batch
        logits0, logits1 = out.logits
        loss = (F.cross_entropy(logits0[kept_by_net1].float(), y[kept_by_net1])
                + F.cross_entropy(logits1[kept_by_net0].float(), y[kept_by_net0]))  # fmt: skip
        logs: dict[str, Tensor | float] = {"stage": 2.0, "keep_frac": num_keep / half, "forget_rate": self.rate}
        if self._clean_known is None:
            self._clean_known = bool((batch.clean_targets >= 0).any())
        if self._clean_known:
            logs["kept_clean_frac"] = kept_clean_fraction(batch, torch.cat([kept_by_net0, kept_by_net1]))
        return StepResult(loss, logs)
