"""``RobustModule``: the one LightningModule. It composes networks, a Strategy and Regularizers.

Evaluation, logging and optimizer wiring are written once here, so comparisons between strategies stay fair.
A strategy takes part only through the hooks of :class:`~robustlabels.strategies.Strategy`; the backbones run
only in :class:`~robustlabels.networks.Networks`. See docs/architecture.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.cli import LRSchedulerCallable, OptimizerCallable
from pytorch_lightning.trainer.states import TrainerFn
from pytorch_lightning.utilities import rank_zero_warn
from torch import Tensor

from robustlabels.callbacks import RunSummary
from robustlabels.checkpoints import resume_record
from robustlabels.checks import built
from robustlabels.distributed import ddp_exempt_names
from robustlabels.errors import InputError
from robustlabels.metrics import EvalMetrics, training_row, training_sums
from robustlabels.networks import Networks, check_input_fits
from robustlabels.nn.nested_dropout import NestedDropout, PrefixSelection
from robustlabels.regularizers.base import Regularizer, Regularizers
from robustlabels.strategies.base import EpochPlan, ManualStep, Strategy
from robustlabels.strategies.standard import CrossEntropy
from robustlabels.types import Batch, TrainData

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
        channels_last: NHWC layout for image batches and conv weights (faster on CPU, docs/benchmarks.md).
        nested_dropout: e.g. ``{class_path: NestedDropout, init_args: {sigma: 10}}`` between every network's
            features and its bias-free head; validation during ``fit`` then selects the prefix ``K``.
        gradient_clip_per_network: clip each network's gradient norm to this value separately (Lightning's
            global ``gradient_clip_val`` would couple two networks through their joint norm).
    """

    train_sums: Tensor

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
        if gradient_clip_per_network is not None and not gradient_clip_per_network > 0:
            raise InputError(f"`gradient_clip_per_network` must be > 0; got {gradient_clip_per_network!r}")
        self.save_hyperparameters(ignore=["strategy", "regularizers", "optimizer", "lr_scheduler", "nested_dropout"])
        self.strategy = strategy if strategy is not None else CrossEntropy()
        self.regularizers = Regularizers(regularizers)
        self.nets = Networks(backbone, count=self.strategy.num_networks, input_shape=input_shape,
                             num_classes=num_classes, backbone_kwargs=backbone_kwargs, channels_last=channels_last,
                             nested_dropout=nested_dropout)  # fmt: skip
        check_input_fits(self.nets, backbone, input_shape)
        self.strategy.setup_networks(self.nets)
        self.automatic_optimization = not self.strategy.manual_optimization
        self.optimizer_factory, self.lr_scheduler_factory = optimizer, lr_scheduler
        self.gradient_clip_per_network = gradient_clip_per_network
        self.num_classes = num_classes
        # the epoch's metrics.training_sums, one in-place add per step (a torchmetrics update costs ~0.1 ms)
        self.register_buffer("train_sums", torch.zeros(6, dtype=torch.float64), persistent=False)
        self.eval_metrics = EvalMetrics(EVAL_SPLITS)
        self.history: list[dict[str, float]] = []
        self._selection: PrefixSelection | None = None  # nested-dropout K selection of this validation epoch

    def setup(self, stage: str) -> None:
        """Show the strategy and regularizers the training data before any checkpoint is restored."""
        datamodule = getattr(self.trainer, "datamodule", None)
        if stage != "fit" or datamodule is None:
            return
        train = datamodule.datasets["train"]
        self._ddp_params_and_buffers_to_ignore = ddp_exempt_names(self)  # per-sample state: kept right by gathers
        self.strategy.setup(TrainData(len(train), self.num_classes, train.inputs, train.targets))
        batch_size = getattr(datamodule, "batch_size", None)
        self.regularizers.setup(num_samples=len(train), num_classes=self.num_classes,
                                batch_size=batch_size and batch_size * self.trainer.world_size)  # fmt: skip
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
            self.trainer.datamodule.set_sample_order(self.current_epoch, plan.sample_order)  # type: ignore[attr-defined]

    def training_step(self, batch: Batch | dict[str, Batch], batch_idx: int) -> dict[str, Tensor]:
        """The loss, and the detached ``(B, C)`` mean logits for callbacks (the audit's training dynamics)."""
        meta = batch.get("meta") if isinstance(batch, dict) else None
        batch = batch["train"] if isinstance(batch, dict) else batch
        if self.automatic_optimization:
            result = self.strategy.step(self.nets, batch, meta)
        else:
            result = self.strategy.manual_step(self.nets, batch, meta, self._manual_step())
        assert result.out is not None, f"{type(self.strategy).__name__} must return the networks' outputs"
        loss = (self.regularizers.combine(result.loss, batch, result.out) if self.automatic_optimization
                else result.loss.detach())  # fmt: skip
        if self._writes_step_logs():
            self.log("train/loss", loss, prog_bar=True, batch_size=len(batch.targets))
            for key, value in result.logs.items():
                self.log(f"train/{key}", value, batch_size=len(batch.targets))
        logits = result.out.mean_logits().detach()
        self.train_sums += training_sums(loss, logits, batch.targets, batch.clean_targets)
        return {"loss": loss, "logits": logits}

    def _writes_step_logs(self) -> bool:
        """Whether the loggers write step metrics after this batch (every ``log_every_n_steps``), the only steps
        that log them: one ``self.log`` costs 2-4 ms, a large share of a small model's step (STORM on Youtube)."""
        connector = getattr(self._trainer, "_logger_connector", None)  # Lightning's own test of the same rule
        return connector is None or bool(connector.should_update_logs or getattr(self.trainer, "fast_dev_run", False))

    def _manual_step(self) -> ManualStep:
        """The optimizer controls of one manual step (Lightning's own clipping and hooks do not run then)."""
        nets_optimizer, *own = as_list(self.optimizers())  # own optimizers step outside the step count
        return ManualStep(self.nets, nets_optimizer, [opt.optimizer for opt in own], backward=self.manual_backward,
                          after_step=self.strategy.after_optimizer_step, add_regularizers=self.regularizers.combine,
                          clip_norm=self.gradient_clip_per_network)  # fmt: skip

    def on_train_epoch_end(self) -> None:
        """Step the schedulers under manual optimisation; log the epoch's training metrics; extend :attr:`history`."""
        if not self.automatic_optimization:
            for scheduler in as_list(self.lr_schedulers()):
                scheduler.step()
        sums = self.trainer.strategy.reduce(self.train_sums.clone(), reduce_op="sum")  # over DDP ranks
        self.train_sums.zero_()
        row = training_row(sums.tolist(), self.current_epoch)
        row.update({f"train/{key}": value for key, value in self.strategy.on_train_epoch_end().items()})
        noise_rate = getattr(getattr(self.trainer, "datamodule", None), "realized_noise_rate", None)
        row.update({} if noise_rate is None else {"train/noise_rate": noise_rate})
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
        fitting = self._trainer is not None and self.trainer.state.fn == TrainerFn.FITTING
        self._selection = PrefixSelection(self.nets.nested_dropout) if self.nets.nested_dropout and fitting else None

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
        for key, value in self.eval_metrics.update(split, self.nets(batch.inputs), batch).items():
            self.log(key, value, batch_size=len(batch.targets), add_dataloader_idx=False, prog_bar=key == "val/acc")

    # ---- optimisation and checkpoints ---------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        """The networks' optimizer (and scheduler), then the strategy's own optimizers (manual mode only)."""
        optimizer = built("model.optimizer", self.optimizer_factory, self.nets.parameters())
        own = self.strategy.optimizers()
        if own and self.automatic_optimization:
            raise InputError(f"strategy {type(self.strategy).__name__} has its own optimizers, which needs "
                             "manual_optimization = True")  # fmt: skip
        first: dict[str, Any] = {"optimizer": optimizer}
        if self.lr_scheduler_factory is not None:
            first["lr_scheduler"] = built("model.lr_scheduler", self.lr_scheduler_factory, optimizer)
        return [first, *({"optimizer": o} for o in own)]

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        super().optimizer_step(*args, **kwargs)
        self.strategy.after_optimizer_step(self.nets)

    def configure_gradient_clipping(
        self, optimizer: Any, gradient_clip_val: float | None = None, gradient_clip_algorithm: str | None = None
    ) -> None:
        """Lightning's clipping (``Trainer(gradient_clip_val=...)``), then each network's norm on its own."""
        super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)
        self.nets.clip_grad_norms_(self.gradient_clip_per_network)

    def on_fit_start(self) -> None:
        if len(self.nets) > 1 and self.trainer.gradient_clip_val:
            rank_zero_warn("Trainer(gradient_clip_val=...) clips the joint norm of all networks, coupling them; "
                           "use RobustModule(gradient_clip_per_network=...) instead")  # fmt: skip

    def configure_callbacks(self) -> list[pl.Callback]:
        return [RunSummary()]

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["robustlabels_history"] = self.history
        checkpoint["robustlabels"] = resume_record(self)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.history = list(checkpoint.get("robustlabels_history", []))
