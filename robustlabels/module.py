"""``RobustModule``: the one LightningModule. It composes networks, a Strategy and Regularizers.

Evaluation, metrics, logging and optimizer wiring are written once here, so that comparisons between
strategies stay fair. A strategy takes part only through the hooks of :class:`~robustlabels.strategies.Strategy`;
the backbones run only in :class:`~robustlabels.networks.Networks`.
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
from robustlabels.networks import Networks
from robustlabels.nn.nested_dropout import NestedDropout, PrefixSelection
from robustlabels.regularizers.base import Regularizer, combine_losses
from robustlabels.strategies.base import EpochPlan, ManualStep, Strategy
from robustlabels.strategies.standard import CrossEntropy
from robustlabels.types import Batch, StepResult, TrainData

EVAL_SPLITS = ("val", "test")  # validation dataloader 0 and 1


def as_list(value: Any) -> list[Any]:
    """Lightning's ``optimizers()`` / ``lr_schedulers()`` answer: ``None``, one object or a list → a list."""
    return value if isinstance(value, list) else [] if value is None else [value]


class RobustModule(pl.LightningModule):
    """Train one or more backbones with a pluggable strategy under label noise.

    Args:
        strategy: how the networks learn from a batch (default :class:`CrossEntropy`).
        backbone: ``mlp``, ``small_cnn``, ``cnn9``, ``preact_resnet18`` or any timm model name.
        backbone_kwargs: options of the backbone (``hidden``, ``width``, ...).
        regularizers: additive terms (ELR, neighbour consistency): the strategy's loss, scaled by the product
            of their ``base_loss_scale``, plus their terms (independent of their order).
        optimizer: the networks' optimizer, e.g. ``{class_path: torch.optim.SGD, init_args: {lr: 0.1}}``.
        lr_scheduler: optional, stepped once per epoch (also under manual optimisation).
        num_classes: ``C``; linked from the data module by ``robustlabels.fit``.
        input_shape: one sample's shape, ``(C, H, W)`` or ``(D,)``; linked from the data module.
        channels_last: keep image batches and conv weights in NHWC layout: 1.4× faster in fp32 and 3× under
            ``bf16-mixed`` for the small CNN on CPU (docs/benchmarks.md); what GPU tensor cores prefer too.
        nested_dropout: e.g. ``{class_path: NestedDropout, init_args: {sigma: 10}}``: nested dropout between
            every network's features and its bias-free head. Validation during ``fit`` then scores every prefix
            ``K`` and logs the metrics at the selected ``K`` (``val/nested_k``), kept in the checkpoint.
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
        self.nets = Networks(backbone, count=self.strategy.num_networks, input_shape=input_shape,
                             num_classes=num_classes, backbone_kwargs=backbone_kwargs, channels_last=channels_last,
                             nested_dropout=nested_dropout)  # fmt: skip
        self.strategy.setup_networks(self.nets)
        self.automatic_optimization = not self.strategy.manual_optimization
        self.optimizer_factory, self.lr_scheduler_factory = optimizer, lr_scheduler
        self.gradient_clip_per_network = gradient_clip_per_network
        self.num_classes = num_classes
        # Per-epoch training sums, one in-place add per step (torchmetrics objects cost ~0.1 ms per update):
        # [loss·B, B, correct, flipped, flipped predicted as true label, flipped predicted as noisy label]
        self.register_buffer("train_sums", torch.zeros(6, dtype=torch.float64), persistent=False)
        self.eval_metrics = nn.ModuleDict(
            {f"{split}_{name}": MeanMetric() for split in EVAL_SPLITS for name in ("acc", "acc_clean", "loss")}
        )
        self.history: list[dict[str, float]] = []
        self._selection: PrefixSelection | None = None  # nested-dropout K selection of this validation epoch

    def setup(self, stage: str) -> None:
        """Show the strategy and regularizers the training data before any checkpoint is restored."""
        datamodule = getattr(self.trainer, "datamodule", None)
        if stage != "fit" or datamodule is None:
            return
        train = datamodule.datasets["train"]
        self.strategy.setup(TrainData(len(train), self.num_classes, train.inputs, train.targets))
        for reg in self.regularizers:
            reg.setup(num_samples=len(train), num_classes=self.num_classes)
        if self.strategy.meta_stream is not None:
            if not hasattr(datamodule, "serve_meta_stream"):
                raise InputError(f"strategy {type(self.strategy).__name__} needs a meta batch each step, which "
                                 f"{type(datamodule).__name__} cannot serve")  # fmt: skip
            datamodule.serve_meta_stream(self.strategy.meta_stream)

    def forward(self, inputs: Tensor) -> Tensor:
        """``(B, C)`` mean logits of the networks: the model's prediction."""
        return self.nets(inputs).mean_logits()

    # ---- training -----------------------------------------------------------------------------------
    def on_train_epoch_start(self) -> None:
        plan = self.strategy.on_train_epoch_start(self.current_epoch)
        for reg in self.regularizers:
            reg.on_train_epoch_start(self.current_epoch)
        if plan is not None:
            self._follow(plan)

    def _follow(self, plan: EpochPlan) -> None:
        """Apply a strategy's :class:`EpochPlan` to the networks' optimizer and the data order."""
        optimizer = self.trainer.optimizers[0]
        if plan.reset_optimizer_state:
            optimizer.state.clear()
        for group in optimizer.param_groups if plan.lr is not None else ():
            group["lr"] = plan.lr
        if plan.sample_order is not None:
            self.trainer.datamodule.set_sample_order(self.current_epoch, plan.sample_order)

    def training_step(self, batch: Batch | dict[str, Batch], batch_idx: int) -> dict[str, Tensor]:
        """The loss, and the detached ``(B, C)`` mean logits for callbacks (the audit's training dynamics)."""
        meta = batch.get("meta") if isinstance(batch, dict) else None
        batch = batch["train"] if isinstance(batch, dict) else batch
        if self.automatic_optimization:
            result = self.strategy.step(self.nets, batch, meta)
            assert result.out is not None, f"{type(self.strategy).__name__}.step must return the networks' outputs"
            loss = combine_losses(result.loss, self.regularizers, batch, result.out)
        else:
            result = self.strategy.manual_step(self.nets, batch, meta, self._manual_step())
            loss = result.loss.detach()
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch.targets))
        for key, value in result.logs.items():
            self.log(f"train/{key}", value, batch_size=len(batch.targets))
        return {"loss": loss, "logits": self._tally_training(batch, loss, result)}

    def _tally_training(self, batch: Batch, loss: Tensor, result: StepResult) -> Tensor:
        """Add the step to the epoch's training sums; return the detached ``(B, C)`` mean logits."""
        assert result.out is not None
        with torch.no_grad():
            logits = result.out.mean_logits().detach()
            preds = logits.argmax(1)
            size = torch.full((1,), float(len(batch.targets)), device=preds.device)
            correct = (preds == batch.targets).sum().view(1).float()
            memorization = memorization_counts(preds, batch.targets, batch.clean_targets)
            self.train_sums += torch.cat([loss.detach().float().view(1) * size, size, correct, memorization])
        return logits

    def _manual_step(self) -> ManualStep:
        """The optimizer controls of one manual step (Lightning's own clipping and hooks do not run then)."""
        nets_optimizer, *own = as_list(self.optimizers())

        def step_networks(loss: Tensor) -> None:
            nets_optimizer.zero_grad()
            self.manual_backward(loss)
            self._clip_per_network()
            nets_optimizer.step()  # the one counted step of this batch (trainer.global_step)
            self.strategy.after_optimizer_step(self.nets)

        return ManualStep(step_networks=step_networks, backward=self.manual_backward,
                          own_optimizers=[opt.optimizer for opt in own],
                          add_regularizers=lambda loss, batch, out: combine_losses(loss, self.regularizers, batch,
                                                                                   out))  # fmt: skip

    def on_train_epoch_end(self) -> None:
        """Step the schedulers under manual optimisation; log the epoch's training metrics; extend :attr:`history`."""
        if not self.automatic_optimization:
            for scheduler in as_list(self.lr_schedulers()):
                scheduler.step()
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
        nested = self.nets.nested_dropout
        fitting = self._trainer is not None and self.trainer.state.fn == TrainerFn.FITTING
        self._selection = PrefixSelection(nested) if nested is not None and fitting else None

    def on_validation_epoch_end(self) -> None:
        if not self.trainer.sanity_checking:
            self._validated_epoch = self.current_epoch
        selection, self._selection = self._selection, None
        if selection is not None:
            reduce_sum = lambda t: self.trainer.strategy.reduce(t, reduce_op="sum")  # noqa: E731
            for key, value in selection.finish(reduce_sum, keep=not self.trainer.sanity_checking).items():
                self.log(key, value, prog_bar=key == "val/acc")

    def _evaluate(self, batch: Batch, split: str) -> None:
        """Accuracy against the given labels, and against the clean labels where they are known."""
        if self._selection is not None:  # nested dropout: every prefix K at once, logged at epoch end
            self._selection.update(split, self.nets.features(batch.inputs), self.nets.head_weights(),
                                   batch.targets, batch.clean_targets)  # fmt: skip
            return
        out = self.nets(batch.inputs)
        logits = out.mean_logits()
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
        for i, z in enumerate(out.logits if len(out.logits) > 1 else ()):
            acc = (z.argmax(1) == batch.targets).float().mean()
            self.log(f"{split}/acc_net{i}", acc, batch_size=size, add_dataloader_idx=False)

    # ---- optimisation and checkpoints ---------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        """The networks' optimizer (and scheduler), then the strategy's own optimizers (manual mode only)."""
        optimizer = self.optimizer_factory(self.nets.parameters())
        own = self.strategy.optimizers()
        if own and self.automatic_optimization:
            raise InputError(f"strategy {type(self.strategy).__name__} has its own optimizers, which needs "
                             "manual_optimization = True")  # fmt: skip
        first: dict[str, Any] = {"optimizer": optimizer}
        if self.lr_scheduler_factory is not None:
            first["lr_scheduler"] = self.lr_scheduler_factory(optimizer)
        return [first, *({"optimizer": o} for o in own)]

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        super().optimizer_step(*args, **kwargs)
        self.strategy.after_optimizer_step(self.nets)

    def configure_gradient_clipping(
        self, optimizer: Any, gradient_clip_val: float | None = None, gradient_clip_algorithm: str | None = None
    ) -> None:
        """Lightning's clipping (``Trainer(gradient_clip_val=...)``), then each network's norm on its own."""
        super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)
        self._clip_per_network()

    def _clip_per_network(self) -> None:
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
