"""``RobustModule``: the one LightningModule. It composes backbones, a Strategy and Regularizers.

Evaluation, metrics, logging and optimizer wiring are written once here, so that comparisons between
strategies stay fair: a strategy only decides how per-sample losses become the training loss.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.cli import LRSchedulerCallable, OptimizerCallable
from pytorch_lightning.trainer.states import TrainerFn
from pytorch_lightning.utilities import rank_zero_warn
from torch import Tensor, nn
from torchmetrics import MeanMetric

from robustlabels.errors import InputError
from robustlabels.metrics import memorization_counts
from robustlabels.nn.backbones import create_backbone
from robustlabels.nn.nested_dropout import NestedDropout, PrefixTally, select_k
from robustlabels.regularizers.base import Regularizer
from robustlabels.strategies.base import Strategy
from robustlabels.strategies.standard import CrossEntropy
from robustlabels.types import Batch, Forward, StepResult

EVAL_SPLITS = ("val", "test")  # validation dataloader 0 and 1


class RobustModule(pl.LightningModule):
    """Train one or more backbones with a pluggable strategy under label noise.

    Args:
        strategy: how per-sample losses become the loss (default :class:`CrossEntropy`).
        backbone: ``mlp``, ``small_cnn``, ``preact_resnet18`` or any timm model name.
        backbone_kwargs: options of the backbone (``hidden``, ``width``, ...).
        regularizers: additive terms (ELR, neighbour consistency), applied after the strategy loss.
        optimizer: e.g. ``{class_path: torch.optim.SGD, init_args: {lr: 0.1, momentum: 0.9}}``.
        lr_scheduler: optional, stepped once per epoch.
        num_classes: ``C``; linked from the data module by ``robustlabels.fit``.
        input_shape: one sample's shape, ``(C, H, W)`` or ``(D,)``; linked from the data module.
        channels_last: keep image batches and conv weights in NHWC layout. On CPU this makes the small CNN
            1.4× faster in fp32 and 3× faster under ``bf16-mixed`` (docs/benchmarks.md); it is also what
            tensor cores prefer on GPU.
        nested_dropout: e.g. ``{class_path: NestedDropout, init_args: {sigma: 10}}``: nested dropout between
            every network's ``forward_features`` and its head, which is re-created without bias. Validation
            during ``fit`` then scores every prefix ``K`` and logs the metrics at the selected ``K``
            (``val/nested_k``), which is saved in the checkpoint and used in eval mode. Pass it again to
            ``load_from_checkpoint``, like the strategy.
        gradient_clip_per_network: clip each network's gradient norm to this value separately (Lightning's
            global ``gradient_clip_val`` would couple two networks through their joint norm).
    """

    def __init__(
        self,
        strategy: Strategy | None = None,
        *,
        backbone: str = "mlp",
        backbone_kwargs: dict[str, Any] | None = None,
        regularizers: Sequence[Regularizer] = (),
        optimizer: OptimizerCallable = torch.optim.Adam,
        lr_scheduler: LRSchedulerCallable | None = None,
        num_classes: int = 0,
        input_shape: Sequence[int] = (),
        channels_last: bool = True,
        nested_dropout: NestedDropout | None = None,
        gradient_clip_per_network: float | None = None,
    ) -> None:
        super().__init__()
        if num_classes < 2 or not input_shape:
            raise InputError(f"RobustModule needs `num_classes` >= 2 and `input_shape`; got {num_classes}, "
                             f"{tuple(input_shape)}")  # fmt: skip
        if gradient_clip_per_network is not None and not gradient_clip_per_network > 0:
            raise InputError(f"`gradient_clip_per_network` must be > 0; got {gradient_clip_per_network!r}")
        self.save_hyperparameters(ignore=["strategy", "regularizers", "optimizer", "lr_scheduler", "nested_dropout"])
        self.strategy = strategy if strategy is not None else CrossEntropy()
        self.regularizers = nn.ModuleList(regularizers)
        self.nets = nn.ModuleList(
            create_backbone(backbone, input_shape=input_shape, num_classes=num_classes, **(backbone_kwargs or {}))
            for _ in range(self.strategy.num_networks)
        )
        self.nested_dropout = nested_dropout
        if nested_dropout is not None:
            for net in self.nets:
                net.remove_head_bias()
            if len(self.nets) > 1:
                nested_dropout.network_k = torch.zeros(len(self.nets), dtype=torch.long)
        self.gradient_clip_per_network = gradient_clip_per_network
        self._prefix_tallies: dict[str, PrefixTally] = {}
        self.channels_last = channels_last and len(input_shape) == 3
        if self.channels_last:
            self.nets.to(memory_format=torch.channels_last)
        self.strategy.bind(self)
        self.optimizer_factory, self.lr_scheduler_factory = optimizer, lr_scheduler
        self.num_classes = num_classes
        # Per-epoch training sums, one in-place add per step (torchmetrics objects cost ~0.1 ms per update):
        # [loss·B, B, correct, flipped, flipped predicted as true label, flipped predicted as noisy label]
        self.register_buffer("train_sums", torch.zeros(6, dtype=torch.float64), persistent=False)
        self.eval_metrics = nn.ModuleDict(
            {f"{split}_{name}": MeanMetric() for split in EVAL_SPLITS for name in ("acc", "acc_clean", "loss")}
        )
        self.history: list[dict[str, float]] = []

    # ---- state that depends on the data size --------------------------------------------------------
    def setup(self, stage: str) -> None:
        """Give the strategy and regularizers ``N`` and ``C`` before any checkpoint is restored."""
        datamodule = getattr(self.trainer, "datamodule", None)
        if stage == "fit" and datamodule is not None:
            train = datamodule.datasets["train"]
            for part in (self.strategy, *self.regularizers):
                part.setup(num_samples=len(train), num_classes=self.num_classes)
            self.strategy.setup_data(inputs=train.inputs, targets=train.targets, num_classes=self.num_classes)

    # ---- forward ------------------------------------------------------------------------------------
    def forward_all(self, inputs: Tensor | Sequence[Tensor]) -> Forward:
        """Features ``(B, D)`` and logits ``(B, C)`` of every network, on shared inputs or one tensor per network."""
        layout = torch.channels_last if self.channels_last else torch.contiguous_format
        if isinstance(inputs, Tensor):  # one layout conversion, shared
            inputs = [inputs.contiguous(memory_format=layout)] * len(self.nets)
        inputs = [x.contiguous(memory_format=layout) for x in inputs]
        features = tuple(net.forward_features(x) for net, x in zip(self.nets, inputs, strict=True))
        if self.nested_dropout is None:
            head_inputs = features
        elif getattr(self.strategy, "shared_nested_k", True):
            head_inputs = self.nested_dropout.apply_shared(features)
        else:  # one k per network (NestedCoTeaching's stage 1: independently trained networks)
            head_inputs = tuple(self.nested_dropout(f) for f in features)
        return Forward(features, tuple(net.forward_head(f) for net, f in zip(self.nets, head_inputs, strict=True)))

    @torch.no_grad()
    def eval_logits(self, inputs: Sequence[Tensor]) -> tuple[Tensor, ...]:
        """``(B_i, C)`` logits of network ``i`` on ``inputs[i]``, without gradients, in eval mode (nested dropout
        at the network's own validation-optimal ``K``); the training modes are restored afterwards."""
        parts = [*self.nets, *([self.nested_dropout] if self.nested_dropout is not None else [])]
        modes = [part.training for part in parts]
        try:
            for part in parts:
                part.eval()
            logits = []
            for i, (net, x) in enumerate(zip(self.nets, inputs, strict=True)):
                if self.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                features = net.forward_features(x)
                if self.nested_dropout is not None:
                    features = self.nested_dropout(features, self.nested_dropout.network_limit(i, features.shape[1]))
                logits.append(net.forward_head(features))
            return tuple(logits)
        finally:
            for part, mode in zip(parts, modes, strict=True):
                part.train(mode)

    def forward(self, inputs: Tensor) -> Tensor:
        """``(B, C)`` mean logits of the networks: the model's prediction."""
        return self.forward_all(inputs).mean_logits()

    # ---- training -----------------------------------------------------------------------------------
    def on_train_epoch_start(self) -> None:
        for part in (self.strategy, *self.regularizers):
            part.on_train_epoch_start(self.current_epoch)
        if getattr(self.strategy, "pending_optimizer_reset", False):  # NestedCoTeaching's stage switch
            self.strategy.pending_optimizer_reset = False
            self._reset_optimizers(getattr(self.strategy, "stage2_lr", None))

    def _reset_optimizers(self, lr: float | None) -> None:
        """Clear every optimizer's state (momentum, moments) and, if ``lr``, set every group's learning rate."""
        for optimizer in self.trainer.optimizers:
            optimizer.state.clear()
            for group in optimizer.param_groups:
                if lr is not None:
                    group["lr"] = lr

    def compute_loss(self, batch: Batch) -> tuple[Tensor, StepResult, Forward]:
        """The training loss of one batch: the strategy's loss, then each regularizer's term."""
        out = self.forward_all(self.strategy.network_inputs(batch))
        result = self.strategy.compute_loss(batch, out)
        loss = result.loss
        for reg in self.regularizers:
            loss = reg.base_loss_scale * loss + reg(batch, out)
        return loss, result, out

    def training_step(self, batch: Batch, batch_idx: int) -> dict[str, Tensor]:
        """The loss, and the detached ``(B, C)`` mean logits for callbacks (the audit's training dynamics)."""
        loss, result, out = self.compute_loss(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch.targets))
        for key, value in result.logs.items():
            self.log(f"train/{key}", value, batch_size=len(batch.targets))
        with torch.no_grad():
            logits = out.mean_logits().detach()
            preds = logits.argmax(1)
            size = torch.full((1,), float(len(batch.targets)), device=preds.device)
            correct = (preds == batch.targets).sum().view(1).float()
            memorization = memorization_counts(preds, batch.targets, batch.clean_targets)
            self.train_sums += torch.cat([loss.detach().float().view(1) * size, size, correct, memorization])
        return {"loss": loss, "logits": logits}

    def on_train_epoch_end(self) -> None:
        """Log the epoch's training metrics and append one row to :attr:`history`."""
        sums = self.trainer.strategy.reduce(self.train_sums.clone(), reduce_op="sum")  # over DDP ranks
        loss_sum, count, correct, flipped, true, noisy = sums.tolist()
        self.train_sums.zero_()
        row = {"epoch": float(self.current_epoch), "train/loss": loss_sum / max(count, 1.0),
               "train/acc": correct / max(count, 1.0)}  # fmt: skip
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None and hasattr(datamodule, "realized_noise_rate"):
            row["train/noise_rate"] = datamodule.realized_noise_rate
        if flipped > 0:
            row["train/mem_true"], row["train/mem_noisy"] = true / flipped, noisy / flipped
        self.log_dict({k: v for k, v in row.items() if k != "epoch" and k != "train/loss"})
        if self._validated_epoch == self.current_epoch:
            row.update({k: float(v) for k, v in self.trainer.callback_metrics.items() if k[:4] in ("val/", "test")})
        self.history.append(row)

    # ---- evaluation ---------------------------------------------------------------------------------
    _validated_epoch = -1  # the last epoch whose validation ran (not the sanity check)

    def validation_step(self, batch: Batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._evaluate(batch, EVAL_SPLITS[dataloader_idx])

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def on_validation_epoch_start(self) -> None:
        self._prefix_tallies = {}

    def on_validation_epoch_end(self) -> None:
        if not self.trainer.sanity_checking:
            self._validated_epoch = self.current_epoch
        if self._prefix_tallies:
            self._select_nested_k()

    def _scores_prefixes(self) -> bool:
        """Nested dropout during ``fit``: validation scores every prefix and selects ``best_k``."""
        fitting = self._trainer is not None and self.trainer.state.fn == TrainerFn.FITTING
        return self.nested_dropout is not None and fitting

    def _tally_prefixes(self, batch: Batch, split: str) -> None:
        inputs = batch.inputs
        if self.channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        features = [net.forward_features(inputs) for net in self.nets]
        weights = [net.linear_head().weight for net in self.nets]
        tally = self._prefix_tallies.setdefault(split, PrefixTally())
        tally.update(features, weights, batch.targets, batch.clean_targets)

    def _select_nested_k(self) -> None:
        """Pick ``argmax_K (val acc_K − penalty·K)``, keep it (not in the sanity check) and log at that K."""
        assert self.nested_dropout is not None
        for tally in self._prefix_tallies.values():
            tally.reduce(lambda t: self.trainer.strategy.reduce(t, reduce_op="sum"))
        val = self._prefix_tallies.get("val")
        if val is not None and val.sums is not None and val.counts is not None:
            k = select_k(val.sums[0], float(val.counts[0]), penalty=self.nested_dropout.penalty)
            own_k = [select_k(own, float(val.counts[0]), penalty=self.nested_dropout.penalty)
                     for own in val.sums[3:]] if len(self.nets) > 1 else []  # fmt: skip
            if not self.trainer.sanity_checking:
                self.nested_dropout.best_k.fill_(k)
                self.nested_dropout.network_k.copy_(torch.tensor(own_k, dtype=torch.long))
            for i, k_i in enumerate(own_k):
                self.log(f"val/nested_k_net{i}", float(k_i))
        else:  # no validation split: report the test split at the K in use
            sums = next((t.sums for t in self._prefix_tallies.values() if t.sums is not None), None)
            if sums is None:
                return
            k = int(self.nested_dropout.best_k) or sums.shape[1]
        self.log("val/nested_k", float(k))
        for split, tally in self._prefix_tallies.items():
            for name, value in tally.metrics(k, split=split).items():
                self.log(f"{split}/{name}", value, prog_bar=(split, name) == ("val", "acc"))

    def _evaluate(self, batch: Batch, split: str) -> None:
        """Accuracy against the given labels, and against the clean labels where they are known."""
        if self._scores_prefixes():
            self._tally_prefixes(batch, split)
            return
        out = self.forward_all(batch.inputs)
        net_logits, logits = out.logits, out.mean_logits()
        preds, size = logits.argmax(1), len(batch.targets)
        values = {"acc": ((preds == batch.targets).float(), 1)}
        if split == "val":  # the test labels are clean, so test/acc is already the clean accuracy
            values["loss"] = (F.cross_entropy(logits, batch.targets), size)
            known = batch.clean_targets >= 0
            if bool(known.any()):
                values["acc_clean"] = ((preds[known] == batch.clean_targets[known]).float(), 1)
        for name, (value, weight) in values.items():
            metric = self.eval_metrics[f"{split}_{name}"]
            metric.update(value, weight)
            self.log(f"{split}/{name}", metric, batch_size=size, add_dataloader_idx=False,
                     prog_bar=(split, name) == ("val", "acc"))  # fmt: skip
        for i, z in enumerate(net_logits if len(net_logits) > 1 else ()):
            acc = (z.argmax(1) == batch.targets).float().mean()
            self.log(f"{split}/acc_net{i}", acc, batch_size=size, add_dataloader_idx=False)

    # ---- optimisation and checkpoints ---------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self.nets.parameters())
        if self.lr_scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": self.lr_scheduler_factory(optimizer)}

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        super().optimizer_step(*args, **kwargs)
        self.strategy.after_optimizer_step()

    def configure_gradient_clipping(
        self, optimizer: Any, gradient_clip_val: float | None = None, gradient_clip_algorithm: str | None = None
    ) -> None:
        """Lightning's clipping (``Trainer(gradient_clip_val=...)``), then each network's norm on its own."""
        super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)
        if self.gradient_clip_per_network is not None:
            for net in self.nets:
                torch.nn.utils.clip_grad_norm_(net.parameters(), self.gradient_clip_per_network)

    def on_fit_start(self) -> None:
        if len(self.nets) > 1 and self.trainer.gradient_clip_val:
            rank_zero_warn("Trainer(gradient_clip_val=...) clips the joint norm of all networks, coupling them; "
                           "use RobustModule(gradient_clip_per_network=...) instead")  # fmt: skip

    def configure_callbacks(self) -> list[pl.Callback]:
        from robustlabels.callbacks import RunSummary

        return [RunSummary()]

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["robustlabels_history"] = self.history

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.history = list(checkpoint.get("robustlabels_history", []))
