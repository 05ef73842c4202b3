"""Nested Co-teaching: two nested-dropout networks, then co-teaching fine-tuning (``methods.md`` §3)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from robustlabels.errors import InputError, check_interval
from robustlabels.strategies.base import STRATEGIES, Strategy
from robustlabels.strategies.co_teaching import (
    co_teaching_select,
    forget_rate_schedule,
    kept_clean_fraction,
    num_remember,
)
from robustlabels.strategies.standard import masked_mean
from robustlabels.types import Batch, Forward, StepResult

if TYPE_CHECKING:
    from robustlabels.module import RobustModule

EvalLogits = Callable[[Sequence[Tensor]], tuple[Tensor, ...]]
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
      plain cross-entropy on the whole batch; the loss is the sum of the two (no shared parameters, so each
      network gets exactly the gradient of its own CE). With ``stage1_subsets``, network ``i`` only learns
      from the samples of its own class-balanced random subset (:func:`class_balanced_subset`, seeds 123 and
      321 as officially): its CE is averaged over the batch's members of that subset.
    * **Stage 2** (from epoch ``stage1_epochs``): co-teaching fine-tuning. Each batch is split in halves
      ``B1`` (first half, net 0) and ``B2`` (second half, net 1). Without gradients, in eval mode and each
      with its own validation-optimal nested mask (``NestedDropout.network_k``), net 0 scores ``B1`` and net 1
      scores ``B2`` (per-sample CE); each keeps its ``⌊(1 − τ_e)·|B/2|⌋`` smallest; net 0 is updated on net
      1's selection from ``B2`` and net 1 on net 0's selection from ``B1``, from the ordinary training-mode
      forward pass with a freshly sampled nested mask. ``τ_e`` follows :func:`forget_rate_schedule` counted
      from the start of stage 2; ``num_gradual = 0`` (the default, as in all the official fine-tune scripts)
      keeps it constant.
    * At the switch the optimizer state (momentum, Adam moments) is cleared and, if ``stage2_lr`` is given,
      every parameter group's learning rate is set to it: the official stage 2 starts a fresh optimizer from
      the stage-1 checkpoints with a smaller learning rate. The switch is recorded in the ``switched`` buffer,
      so a run resumed mid stage 2 does not reset again.

    Each stage runs on its own: ``trainer.max_epochs == stage1_epochs`` runs stage 1 only; resuming its
    ``last.ckpt`` (``--ckpt_path``) with a larger ``max_epochs`` runs stage 2 only; ``stage1_epochs: 0`` runs
    co-teaching with nested dropout from random initialisation.

    Simplifications against the official code:
        - stage 1 trains both networks in one run on the same batches (officially two separate runs); with
          ``stage1_subsets`` each network's loss is masked to its subset, so an epoch passes once over both
          subsets, with fewer samples per step. Each network draws its own nested ``k`` per mini-batch in
          stage 1 (:attr:`shared_nested_k`), and both share one ``k`` in stage 2, as in the official code;
        - stage 2 trains on the whole training set (the subsets are stage 1's only);
        - stage 2 continues the two networks of the same run (one checkpoint holds both) instead of loading
          two separately trained checkpoints;
        - the gradient step reuses the training-mode forward of the whole batch (BatchNorm statistics over
          the full batch, not only over the selected samples, as the official code's forward of the selection
          computes), so no second forward pass is needed;
        - with an ``lr_scheduler``, the scheduler keeps its own epoch count through the switch (the official
          stage 2 restarts its schedule); the shipped config uses none;
        - a batch of one sample cannot be halved: its loss is the plain CE sum, as in stage 1.

    Without a bound module (``bind``, done by ``RobustModule``), stage 2 scores the halves with the detached
    training-mode logits instead.

    Args:
        stage1_epochs: epochs of stage 1 (0: stage 2 only).
        forget_rate: ``τ`` of stage 2 (0.2 for CIFAR / ANIMAL-10N, 0.3 for Clothing1M in the official scripts).
        num_gradual: epochs of the linear ramp of ``τ`` in stage 2 (0: constant, the official setting).
        stage2_lr: learning rate set at the switch (None: keep the current one).
        stage1_subsets: train each network of stage 1 on its own class-balanced random subset (per class, the
            smallest class's count of given labels), as the official Clothing1M runs do.

    Logs ``stage`` and, in stage 2, ``keep_frac``, ``forget_rate`` and (clean labels known, evaluation only)
    ``kept_clean_frac``.

    Reference: Chen et al., "Boosting Co-teaching with Compression Regularization for Label Noise", CVPR
    Workshops (L2ID) 2021; code ``yingyichen-cyy/Nested-Co-teaching``.
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
    ) -> None:
        super().__init__()
        if stage1_epochs < 0:
            raise InputError(f"`stage1_epochs` must be >= 0; got {stage1_epochs}")
        if num_gradual < 0:
            raise InputError(f"`num_gradual` must be >= 0; got {num_gradual}")
        if stage2_lr is not None and not stage2_lr > 0:
            raise InputError(f"`stage2_lr` must be > 0; got {stage2_lr!r}")
        self.forget_rate = check_interval("forget_rate", forget_rate, low=0.0, high=1.0, closed="left")
        self.stage1_epochs, self.num_gradual, self.stage2_lr = stage1_epochs, num_gradual, stage2_lr
        self.register_buffer("switched", torch.zeros((), dtype=torch.bool))
        self.stage1_subsets = stage1_subsets
        self.register_buffer("subsets", torch.zeros(0, 0, dtype=torch.bool))  # (2, N) with stage1_subsets
        self.stage = 1 if stage1_epochs > 0 else 2
        self.rate = 0.0
        self.pending_optimizer_reset = False  # read and cleared by RobustModule.on_train_epoch_start
        self._eval_logits: EvalLogits | None = None
        self._clean_known: bool | None = None

    @property
    def shared_nested_k(self) -> bool:
        """Whether both networks share one nested-dropout ``k`` per mini-batch: in stage 2 only."""
        return self.stage == 2

    def bind(self, module: RobustModule) -> None:
        """Keep ``module.eval_logits(inputs_per_net)``, which scores each network's own inputs without gradients,
        in eval mode, with the validation-optimal nested mask."""
        self._eval_logits = module.eval_logits

    def setup(self, *, num_samples: int, num_classes: int) -> None:
        if self.stage1_subsets and self.subsets.shape != (2, num_samples):
            self.subsets = torch.zeros(2, num_samples, dtype=torch.bool, device=self.subsets.device)

    def setup_data(self, *, inputs: Tensor, targets: Tensor, num_classes: int) -> None:
        """Draw the two class-balanced subsets from the given labels (``stage1_subsets`` only)."""
        if self.stage1_subsets:
            labels = targets.cpu().numpy()
            masks = [class_balanced_subset(labels, num_classes, seed=seed) for seed in SUBSET_SEEDS]
            self.subsets.copy_(torch.from_numpy(np.stack(masks)))

    def on_train_epoch_start(self, epoch: int) -> None:
        self.stage = 1 if epoch < self.stage1_epochs else 2
        if self.stage == 2:
            self.rate = forget_rate_schedule(epoch - self.stage1_epochs, forget_rate=self.forget_rate,
                                             num_gradual=self.num_gradual)  # fmt: skip
            if self.stage1_epochs > 0 and not bool(self.switched):
                self.switched.fill_(True)
                self.pending_optimizer_reset = True
        self._clean_known = None

    def compute_loss(self, batch: Batch, out: Forward) -> StepResult:
        if self.stage == 1:
            if not self.stage1_subsets:
                loss_a, loss_b = (F.cross_entropy(z.float(), batch.targets) for z in out.logits)
                return StepResult(loss_a + loss_b, {"stage": 1.0})
            members = self.subsets.index_select(1, batch.index)  # (2, B)
            loss_a, loss_b = (masked_mean(F.cross_entropy(z.float(), batch.targets, reduction="none"), members[i])
                              for i, z in enumerate(out.logits))  # fmt: skip
            return StepResult(loss_a + loss_b, {"stage": 1.0, "subset_frac": members.float().mean()})
        size = len(batch.targets)
        if size < 2:  # no halves to split: nothing to select from, plain CE as in stage 1
            loss_a, loss_b = (F.cross_entropy(z.float(), batch.targets) for z in out.logits)
            return StepResult(loss_a + loss_b, {"stage": 2.0, "keep_frac": 1.0, "forget_rate": self.rate})
        half = size // 2
        x, y = batch.inputs, batch.targets
        first, second = torch.arange(half, device=y.device), torch.arange(half, size, device=y.device)
        if self._eval_logits is not None:  # net 0 on B1, net 1 on B2: no grad, eval mode, best K
            z1, z2 = self._eval_logits([x[:half], x[half:]])
        else:  # not bound to a RobustModule (unit use): the detached training logits score the halves
            z1, z2 = out.logits[0][:half].detach(), out.logits[1][half:].detach()
        score1 = F.cross_entropy(z1.float(), y[:half], reduction="none")
        score2 = F.cross_entropy(z2.float(), y[half:], reduction="none")
        num_keep = num_remember(min(half, size - half), self.rate)
        by_net0, by_net1 = co_teaching_select(score1, score2, num_keep)
        kept_by_net0, kept_by_net1 = first[by_net0], second[by_net1]  # positions in the batch
        logits0, logits1 = out.logits
        loss = (F.cross_entropy(logits0[kept_by_net1].float(), y[kept_by_net1])
                + F.cross_entropy(logits1[kept_by_net0].float(), y[kept_by_net0]))  # fmt: skip
        logs: dict[str, Tensor | float] = {"stage": 2.0, "keep_frac": num_keep / max(half, 1),
                                           "forget_rate": self.rate}  # fmt: skip
        if self._clean_known is None:
            self._clean_known = bool((batch.clean_targets >= 0).any())
        if self._clean_known:
            logs["kept_clean_frac"] = kept_clean_fraction(batch, torch.cat([kept_by_net0, kept_by_net1]))
        return StepResult(loss, logs)
