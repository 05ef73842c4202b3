"""Train models for the audit with the normal ``fit`` pipeline: any backbone, strategy or regularizer.

A ``fit`` config (the YAML of ``python -m robustlabels.fit``) supplies the model, optimizer and trainer; its
``data`` section is replaced by an :class:`ArrayDataModule` over the audited arrays, without synthetic noise.
The audit uses this for K-fold out-of-sample probabilities (confident learning), one run's training dynamics,
and image features for the kNN audit.
"""

from __future__ import annotations

import copy
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
import yaml
from pytorch_lightning.callbacks import BasePredictionWriter
from torch import Tensor

from robustlabels.cli import config_file, packaged_config
from robustlabels.data.datamodule import NoisyLabelDataModule, to_tensor_inputs
from robustlabels.distributed import gather_unique_rows
from robustlabels.errors import InputError
from robustlabels.io import atomic_save_npy
from robustlabels.types import Batch

PORTABLE_DATA_KEYS = ("batch_size", "eval_batch_size", "augment", "num_workers")


class ArrayDataModule(NoisyLabelDataModule):
    """In-memory arrays: ``train`` = the rows ``train_rows``, ``test`` = the held-out rows; no noise, no val.

    Call :meth:`attach` before fitting. ``augment`` defaults to crop + flip for RGB images, none otherwise
    (what the library's CIFAR and MNIST-like modules do).
    """

    def __init__(self, *, num_classes: int, input_shape: Sequence[int], **kwargs: Any) -> None:
        kwargs["val_fraction"] = 0.0
        super().__init__(**kwargs)
        self.num_classes, self.input_shape = num_classes, tuple(input_shape)
        if kwargs.get("augment", "default") == "default":
            self.augment = "crop_flip" if len(self.input_shape) == 3 and self.input_shape[0] == 3 else "none"
        self.arrays: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None

    def attach(self, inputs: np.ndarray, labels: np.ndarray, train_rows: np.ndarray, heldout_rows: np.ndarray) -> None:
        self.arrays = (inputs, labels, train_rows, heldout_rows)

    def load_split(self, split: str) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[override]
        if self.arrays is None:
            raise RuntimeError("ArrayDataModule.attach(...) must be called before setup")
        inputs, labels, train_rows, heldout_rows = self.arrays
        rows = train_rows if split == "train" else heldout_rows
        return inputs[rows], labels[rows]


def input_shape(inputs: np.ndarray) -> tuple[int, ...]:
    """One sample's model shape: ``(1, H, W)`` grey, ``(3, H, W)`` RGB, ``(D,)`` features, ``(2, D)`` pairs."""
    if inputs.dtype == np.uint8 and inputs.ndim == 3:
        return (1, *inputs.shape[1:])
    if inputs.dtype == np.uint8 and inputs.ndim == 4:
        return (inputs.shape[3], *inputs.shape[1:3])
    return tuple(inputs.shape[1:])


def default_fit_config(inputs: np.ndarray, method: str) -> Path:
    """The bundled config for ``inputs`` (``robustlabels/configs/audit/``, package data): a small CNN for images
    (an MLP below 16 px, where its 5×5 convolutions do not fit), an MLP for features, a Bradley–Terry reward MLP
    for pairs ``(N, 2, D)``; with ELR for ``dynamics`` (not for pairs)."""
    kind = "cnn" if inputs.dtype == np.uint8 and min(inputs.shape[1:3]) >= 16 else "mlp"
    name = f"audit/{kind}_{'elr' if method == 'dynamics' else 'ce'}"
    if inputs.dtype != np.uint8 and inputs.ndim == 3:
        name = "audit/pairs_bt"
    path = packaged_config(name)
    if path is None:
        raise InputError(f"the bundled fit config {name!r} is missing from the installed package")
    return path


def load_fit_config(path: str | Path) -> dict[str, Any]:
    """Read a ``fit`` YAML (a file, or a bundled config's name) into a dict (one line naming the file when it is
    not a mapping)."""
    file = Path(config_file(str(Path(path).expanduser()), what="--fit-config"))
    try:
        config = yaml.safe_load(file.read_text())
    except yaml.YAMLError as err:
        raise InputError(f"--fit-config {str(file)!r} is not valid YAML: {str(err).splitlines()[0]}") from None
    if not isinstance(config, dict) or "model" not in config:
        raise InputError(f"--fit-config {str(file)!r} must be a fit config with a `model` section")
    return config


def build_run(
    config: dict[str, Any],
    *,
    inputs: np.ndarray,
    num_classes: int,
    seed: int,
    root_dir: str | Path,
    epochs: int | None = None,
    callbacks: Sequence[pl.Callback] = (),
    progress: bool = True,
) -> tuple[Any, pl.Trainer, ArrayDataModule]:
    """Instantiate ``(module, trainer, datamodule)`` from a fit ``config`` for the arrays ``inputs``.

    No logger, checkpoints or validation: the audit keeps what it needs in memory.
    """
    from robustlabels.cli import RobustCLI, one_line
    from robustlabels.module import RobustModule

    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric"):  # "GPU available", tips, seeds
        logging.getLogger(name).setLevel(logging.WARNING)
    config = copy.deepcopy(config)
    data_args = (config.get("data") or {}).get("init_args") or {}
    init_args = {k: v for k, v in data_args.items() if k in PORTABLE_DATA_KEYS}
    init_args.update(num_classes=num_classes, input_shape=list(input_shape(inputs)), split_seed=seed)
    config["data"] = {"class_path": f"{__name__}.ArrayDataModule", "init_args": init_args}
    config["seed_everything"] = seed
    trainer = config.setdefault("trainer", {})
    trainer.update(default_root_dir=str(root_dir), logger=False, enable_checkpointing=False, limit_val_batches=0,
                   num_sanity_val_steps=0, enable_model_summary=False, enable_progress_bar=progress)  # fmt: skip
    if epochs is not None:
        trainer["max_epochs"] = epochs
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(LightningCLI's args|isinstance\\(treespec|val_dataloader).*")
        try:
            cli = RobustCLI(RobustModule, NoisyLabelDataModule, subclass_mode_data=True, run=False, args=config,
                            save_config_callback=None, parser_kwargs={"exit_on_error": False})  # fmt: skip
        except Exception as err:  # jsonargparse: ArgumentError / ValueError("Does not validate ...")
            raise InputError(f"--fit-config: {one_line(err)}") from None
    for callback in callbacks:
        cli.trainer.callbacks.append(callback)  # type: ignore[attr-defined]  # set by Lightning's callback connector
    return cli.model, cli.trainer, cli.datamodule


def fit_arrays(
    config: dict[str, Any],
    inputs: np.ndarray,
    labels: np.ndarray,
    *,
    train_rows: np.ndarray,
    heldout_rows: np.ndarray,
    **run: Any,
) -> tuple[Any, pl.Trainer, ArrayDataModule]:
    """Train on ``inputs[train_rows]`` with ``labels[train_rows]``; return the fitted module, trainer, data.

    ``run``: the keyword options of :func:`build_run` (``num_classes``, ``seed``, ``root_dir``, ...).
    """
    module, trainer, datamodule = build_run(config, inputs=inputs, **run)
    datamodule.attach(inputs, labels, train_rows, heldout_rows)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(does not have many workers|val_dataloader|LeafSpec).*")
        trainer.fit(module, datamodule=datamodule)
    return module, trainer, datamodule


@torch.no_grad()
def predict(
    module: Any, datamodule: ArrayDataModule, inputs: np.ndarray, rows: np.ndarray, *, batch_size: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """``(probs (R, C), features (R, D))`` of the fitted model on ``inputs[rows]``: eval mode, no augmentation.

    Probabilities are the softmax of the networks' mean logits; features are network 0's pre-logits.
    """
    module.eval()
    device = module.device
    autocast = module.trainer is not None and "bf16" in str(module.trainer.precision)
    probs, feats = [], []
    for start in range(0, len(rows), batch_size):
        x = to_tensor_inputs(inputs[rows[start : start + batch_size]]).to(device)
        empty = torch.zeros(len(x), dtype=torch.long, device=device)
        x = datamodule.transform(Batch(x, empty, empty, empty), training=False).inputs
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            out = module.nets(x)
        probs.append(F.softmax(out.mean_logits(), dim=1).cpu())
        feats.append(out.features[0].float().flatten(1).cpu())
    return torch.cat(probs).numpy(), torch.cat(feats).numpy()


class ProbabilityPass(pl.LightningModule):
    """The prediction pass of a fitted module for ``trainer.predict``: ``(index (B,), probs (B, C))`` per batch.

    Under DDP Lightning hands ``predict`` an unrepeated sampler (every batch to exactly one rank, per-rank counts
    off by at most one), so with :class:`ProbabilityShards` every training index is written exactly once; the
    gathered outputs of ``validate`` or ``test`` would repeat samples instead (scale.md §3.2).
    """

    def __init__(self, module: pl.LightningModule) -> None:
        super().__init__()
        self.module = module

    def predict_step(self, batch: Batch, batch_idx: int) -> tuple[Tensor, Tensor]:
        return batch.index, F.softmax(self.module.nets(batch.inputs).mean_logits().float(), dim=1)


class ProbabilityShards(BasePredictionWriter):
    """Writes each rank's predictions as ``index_rank{r}.npy (R,)`` and ``probs_rank{r}.npy (R, C)`` in ``folder``
    (atomically) at the end of ``predict``; :func:`read_probability_shards` joins them by index."""

    def __init__(self, folder: str | Path) -> None:
        super().__init__(write_interval="epoch")
        self.folder = Path(folder)

    def write_on_epoch_end(self, trainer: pl.Trainer, pl_module: Any, predictions: Sequence[Any],
                           batch_indices: Sequence[Any]) -> None:  # fmt: skip
        index = torch.cat([i for i, _ in predictions]).cpu().numpy()
        probs = torch.cat([p for _, p in predictions]).cpu().numpy()
        atomic_save_npy(self.folder / f"index_rank{trainer.global_rank}.npy", index)
        atomic_save_npy(self.folder / f"probs_rank{trainer.global_rank}.npy", probs)


def read_probability_shards(folder: str | Path, num_samples: int) -> np.ndarray:
    """``(N, C)`` probabilities from :class:`ProbabilityShards`'s files; refuses a missing or repeated index."""
    folder = Path(folder)
    index = np.concatenate([np.load(f) for f in sorted(folder.glob("index_rank*.npy"))])
    probs = np.concatenate([np.load(f) for f in sorted(folder.glob("probs_rank*.npy"))])
    counts = np.bincount(index, minlength=num_samples)
    if len(counts) != num_samples or not np.all(counts == 1):
        raise InputError(f"prediction shards in {str(folder)!r}: {int(np.sum(counts == 0))} indices missing, "
                         f"{int(np.sum(counts > 1))} repeated (of {num_samples})")  # fmt: skip
    out = np.empty_like(probs)
    out[index] = probs
    return out


class HeldOutAtBestEpoch(pl.Callback):
    """Predictions on ``heldout_rows`` from the epoch whose accuracy on ``val_rows`` against their **given** labels
    is highest: early stopping with no clean label. Under class-conditional noise the accuracy on noisy labels
    peaks where the clean accuracy does (it is an affine function of it when the noise is uniform; Chen et al.,
    "Robustness of Accuracy Metric and its Inspirations in Learning with Noisy Labels", AAAI 2021).

    Training stops ``patience`` epochs after the best one. After fit: :attr:`probs` ``(R, C)`` for
    ``heldout_rows``, :attr:`best_epoch`, :attr:`best_accuracy`.
    """

    def __init__(
        self, inputs: np.ndarray, labels: np.ndarray, val_rows: np.ndarray, heldout_rows: np.ndarray, patience: int = 5
    ) -> None:
        self.inputs, self.val_labels, self.patience = inputs, labels[val_rows], patience
        self.rows = np.concatenate([val_rows, heldout_rows])
        self.best_accuracy, self.best_epoch = -1.0, -1
        self.probs = np.zeros((0, 0), dtype=np.float32)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        probs = predict(pl_module, trainer.datamodule, self.inputs, self.rows)[0]  # type: ignore[attr-defined]
        pl_module.train()  # predict() switched to eval mode; the next epoch trains
        accuracy = float(np.mean(probs[: len(self.val_labels)].argmax(1) == self.val_labels))
        if accuracy > self.best_accuracy:
            self.best_accuracy, self.best_epoch = accuracy, trainer.current_epoch
            self.probs = probs[len(self.val_labels) :]
        trainer.should_stop = trainer.should_stop or trainer.current_epoch - self.best_epoch >= self.patience


class TrainingDynamics(pl.Callback):
    """Per-sample statistics over a training run, from the logits ``training_step`` already computed.

    After fit: :attr:`margin` ``(N,)`` the area under the margin (mean over visits of the given label's logit
    minus the largest other logit; Pleiss et al., NeurIPS 2020), :attr:`loss` ``(N,)`` the mean cross-entropy
    against the given label, :attr:`probs` ``(N, C)`` the mean softmax after ``warmup_epochs``. Row ``i`` is
    training sample ``i`` (``Batch.index``); ranks are gathered under DDP.
    """

    def __init__(self, num_samples: int, num_classes: int, *, warmup_epochs: int = 1) -> None:
        self.warmup_epochs = warmup_epochs
        self.sums = torch.zeros(num_samples, 3 + num_classes, dtype=torch.float64)  # visits, margin, loss, probs
        self.late_visits = torch.zeros(num_samples, dtype=torch.float64)

    def on_train_start(self, trainer: pl.Trainer, pl_module: Any) -> None:
        self.warmup_epochs = min(self.warmup_epochs, max(int(trainer.max_epochs or 1) - 1, 0))  # a 1-epoch run

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: Any, outputs: Any, batch: Batch, batch_idx: int
    ) -> None:
        logits = outputs["logits"].float()
        given = logits.gather(1, batch.targets.view(-1, 1)).squeeze(1)
        others = logits.scatter(1, batch.targets.view(-1, 1), float("-inf")).amax(1)
        loss = F.cross_entropy(logits, batch.targets, reduction="none")
        late = float(trainer.current_epoch >= self.warmup_epochs)
        probs = F.softmax(logits, dim=1) * late
        rows = torch.cat([torch.ones_like(loss).view(-1, 1), (given - others).view(-1, 1), loss.view(-1, 1), probs], 1)
        index, rows = gather_unique_rows(batch.index, rows)  # a sample DDP repeats is one visit
        self.sums.index_add_(0, index.cpu(), rows.double().cpu())
        self.late_visits.index_add_(0, index.cpu(), torch.full((len(index),), late, dtype=torch.float64))

    @property
    def margin(self) -> np.ndarray:
        return (self.sums[:, 1] / self.sums[:, 0].clamp_min(1)).numpy()

    @property
    def loss(self) -> np.ndarray:
        return (self.sums[:, 2] / self.sums[:, 0].clamp_min(1)).numpy()

    @property
    def probs(self) -> np.ndarray:
        return (self.sums[:, 3:] / self.late_visits.clamp_min(1).unsqueeze(1)).numpy()
