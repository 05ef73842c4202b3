"""LightningDataModules that yield :class:`~robustlabels.types.Batch` from in-memory arrays.

Every data module follows the same recipe, written once here:

1. load the full training split and the test split as arrays (decoded once, kept as uint8 tensors);
2. apply the noise model to the *full* training labels, once, seeded (so a ``labels.npy`` written by
   ``python -m robustlabels.inject`` for the same dataset lines up index by index);
3. carve a seeded, stratified validation split; its labels stay noisy unless ``clean_validation``. A dataset
   that ships its own validation split (:meth:`NoisyLabelDataModule.has_validation_split`) is served that
   split instead, with its labels as given (never noised);
4. serve whole batches by fancy indexing, and normalise / augment them on the training device.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any, Literal

import numpy as np
import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from robustlabels.data.augment import normalize, random_crop, random_hflip
from robustlabels.distributed import owned_positions, owned_rows, rank_positions
from robustlabels.errors import SEED_MAX, InputError, check_at_least, check_interval
from robustlabels.noise import NoiseModel, NoisyLabels, NoNoise
from robustlabels.types import Batch, MetaStream

Augment = Literal["default", "none", "crop", "crop_flip"]


class ArrayDataset(Dataset[Batch]):
    """Indexable by a list of positions, returning a whole :class:`Batch` at once."""

    def __init__(self, inputs: Tensor, targets: Tensor, clean_targets: Tensor) -> None:
        self.inputs, self.targets, self.clean_targets = inputs, targets, clean_targets

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, positions: list[int]) -> Batch:  # type: ignore[override]
        idx = torch.as_tensor(positions, dtype=torch.long)
        return Batch(self.inputs[idx], self.targets[idx], idx, self.clean_targets[idx])


class EpochBatchSampler(Sampler[list[int]]):
    """Yields lists of positions; the shuffle order is a pure function of ``(seed, epoch)``.

    Lightning calls :meth:`set_epoch` every epoch, so a run resumed from a checkpoint sees exactly the
    batches an uninterrupted run would. :meth:`set_order` replaces one epoch's order (a curriculum); the
    order is read when the epoch's first batch is drawn.
    """

    def __init__(self, size: int, batch_size: int, *, shuffle: bool, seed: int, drop_last: bool = False):
        self.size, self.batch_size, self.shuffle, self.seed = size, batch_size, shuffle, seed
        self.drop_last = drop_last
        self.epoch = 0
        self.orders: dict[int, list[int]] = {}  # epoch -> positions, set by a strategy's EpochPlan
        self.started = -1  # the epoch whose batches are being drawn
        self.skip: dict[int, int] = {}  # epoch -> batches already trained (a mid-epoch resume)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def set_order(self, epoch: int, order: Tensor) -> None:
        """Visit the positions ``order (N,)`` (a permutation of ``0..N−1``) in epoch ``epoch``."""
        if epoch == self.started:
            raise InputError(f"the sample order of epoch {epoch} arrived after its first batch was drawn "
                             "(with num_workers > 0 the first epoch's order cannot be changed)")  # fmt: skip
        if order.shape != (self.size,) or not torch.equal(order.sort().values.cpu(), torch.arange(self.size)):
            raise InputError(f"a sample order must be a permutation of the {self.size} training positions; "
                             f"got shape {tuple(order.shape)}")  # fmt: skip
        self.orders = {epoch: order.tolist()}

    def epoch_order(self) -> list[int]:
        """The positions this epoch visits, in order (all ranks' under DDP)."""
        if self.epoch in self.orders:
            return self.orders[self.epoch]
        if self.shuffle:
            gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            return torch.randperm(self.size, generator=gen).tolist()
        return list(range(self.size))

    def positions(self) -> list[int]:
        """The positions this sampler's batches hold this epoch, in order."""
        order = self.epoch_order()
        return order[: len(self) * self.batch_size] if self.drop_last else order

    def __iter__(self) -> Iterator[list[int]]:
        self.started = self.epoch
        positions = self.positions()
        # a mid-epoch resume continues after the batches its checkpoint had trained on (the datamodule's state)
        first = self.skip.pop(self.epoch, 0) * self.batch_size
        for start in range(first, len(positions), self.batch_size):
            yield positions[start : start + self.batch_size]

    def __len__(self) -> int:
        full, rest = divmod(self.num_positions(), self.batch_size)
        return full if (self.drop_last or rest == 0) else full + 1

    def num_positions(self) -> int:
        """How many positions an epoch visits before ``drop_last`` drops a short batch."""
        return self.size


class DistributedEpochBatchSampler(EpochBatchSampler, DistributedSampler):
    """This rank's share of :class:`EpochBatchSampler`'s epoch: the union of the ranks' ``j``-th batches is the
    ``j``-th batch of ``B·W`` a single process would see (:func:`robustlabels.distributed.rank_positions`), or,
    ``rank_affine``, each rank visits only the positions it owns (:func:`~robustlabels.distributed.owned_positions`).

    A ``DistributedSampler`` only so that Lightning does not wrap it: its ``DistributedSamplerWrapper`` would deal
    whole batches to ranks and shuffle them again, breaking a curriculum order and the global batches.
    """

    def __init__(self, size: int, batch_size: int, *, shuffle: bool, seed: int, drop_last: bool = False,
                 rank: int, world_size: int, rank_affine: bool = False) -> None:  # fmt: skip
        EpochBatchSampler.__init__(self, size, batch_size, shuffle=shuffle, seed=seed, drop_last=drop_last)
        self.rank, self.num_replicas, self.rank_affine = rank, world_size, rank_affine

    def positions(self) -> list[int]:
        order = self.epoch_order()
        if self.rank_affine:
            return owned_positions(order, rank=self.rank, world_size=self.num_replicas, size=self.size)
        return rank_positions(order, batch_size=self.batch_size, rank=self.rank, world_size=self.num_replicas,
                              drop_last=self.drop_last)  # fmt: skip

    def num_positions(self) -> int:
        if self.rank_affine:
            return owned_rows(self.size, self.num_replicas)
        step = self.batch_size * self.num_replicas
        total = self.size // step * step if self.drop_last else self.size
        return -(-total // self.num_replicas)


class MetaBatchSampler(Sampler[list[int]]):
    """``num_batches`` batches per epoch, each drawn uniformly without replacement from ``pool``.

    The draws are a pure function of ``(seed, epoch)``, like :class:`EpochBatchSampler`'s, so a resumed run
    draws the same meta batches.
    """

    def __init__(self, pool: Tensor, batch_size: int, *, num_batches: int, seed: int) -> None:
        self.pool, self.batch_size, self.num_batches, self.seed = pool.cpu(), batch_size, num_batches, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[list[int]]:
        gen = torch.Generator().manual_seed((self.seed * 100_003 + self.epoch) * 2 + 1)
        for _ in range(self.num_batches):
            yield self.pool[torch.randperm(len(self.pool), generator=gen)[: self.batch_size]].tolist()

    def __len__(self) -> int:
        return self.num_batches


def per_class_positions(clean_targets: Tensor, per_class: int, num_classes: int, *, seed: int) -> Tensor:
    """``(per_class · C,)`` sorted positions: ``per_class`` random samples of every true class (seeded).

    Raises:
        InputError: a class with fewer samples of known true label than ``per_class``.
    """
    gen = torch.Generator().manual_seed(seed * 100_003 + 7)
    chosen = []
    for c in range(num_classes):
        members = torch.nonzero(clean_targets == c).flatten()
        if len(members) < per_class:
            raise InputError(f"the clean meta set needs {per_class} samples of class {c} with a known true label; "
                             f"the training split has {len(members)}")  # fmt: skip
        chosen.append(members[torch.randperm(len(members), generator=gen)[:per_class]])
    return torch.cat(chosen).sort().values


def stratified_split(labels: np.ndarray, fraction: float, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split positions so each class keeps ``round(fraction · n_k)`` in the second part.

    Args:
        labels: ``(N,)`` int labels to stratify on.
    Returns:
        ``(kept, taken)`` sorted position arrays.
    """
    rng = np.random.default_rng(seed)
    taken = [
        rng.permutation(members)[: round(fraction * len(members))]
        for members in (np.flatnonzero(labels == c) for c in np.unique(labels))
    ]
    taken_all = np.sort(np.concatenate(taken)) if taken else np.zeros(0, dtype=np.int64)
    kept = np.setdiff1d(np.arange(len(labels)), taken_all)
    return kept, taken_all


def to_tensor_inputs(inputs: np.ndarray) -> Tensor:
    """uint8 images ``(N, H, W)`` / ``(N, H, W, C)`` → ``(N, C, H, W)``; float features stay ``(N, D)``."""
    if inputs.dtype == np.uint8:
        x = torch.from_numpy(np.ascontiguousarray(inputs))
        x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)
        return x.contiguous()
    return torch.from_numpy(np.ascontiguousarray(inputs, dtype=np.float32))


def given_split(inputs: np.ndarray, labels: np.ndarray, *true: np.ndarray) -> ArrayDataset:
    """A split served with its labels as given: ``labels (N,)`` are the targets, ``true`` (when given) the clean
    targets, else the given labels themselves."""
    clean = true[0] if true else labels
    targets, clean_targets = (torch.from_numpy(np.asarray(a, dtype=np.int64)) for a in (labels, clean))
    return ArrayDataset(to_tensor_inputs(inputs), targets, clean_targets)


def labels_sha256(labels: np.ndarray) -> str:
    """Hash of an int64 label array, stored in checkpoints to detect a change of noisy labels."""
    return hashlib.sha256(np.ascontiguousarray(labels, dtype=np.int64).tobytes()).hexdigest()


def inputs_sha256(inputs: np.ndarray, rows: int = 256) -> str:
    """Hash of the inputs' shape, dtype and ``rows`` evenly spaced samples: the dataset's identity, cheaply (a
    full hash of CIFAR-scale inputs would add seconds to every start)."""
    picked = np.linspace(0, len(inputs) - 1, min(len(inputs), rows)).astype(np.int64)
    digest = hashlib.sha256(f"{inputs.shape}{inputs.dtype}".encode())
    digest.update(np.ascontiguousarray(inputs[picked]).tobytes())
    return digest.hexdigest()


# The fingerprint entries that decide whether a checkpoint's per-sample state fits this run's data; the other
# entries only say what changed.
DECISIVE_DATA = ("inputs sha256", "labels sha256", "noisy labels sha256", "training positions sha256")


def describe_data_change(saved: dict[str, Any], current: dict[str, Any]) -> str | None:
    """``None`` when two :meth:`NoisyLabelDataModule.fingerprint` records describe the same training data, else
    what changed, e.g. ``noise rate 0.4 -> 0.2``."""
    differ = [key for key in DECISIVE_DATA if key in saved and saved[key] != current.get(key)]  # older: fewer
    if not differ:
        return None
    described = [key for key in saved if key in current and key not in DECISIVE_DATA]  # both sides known
    changes = [f"{key} {saved[key]!r} -> {current[key]!r}" for key in described if saved[key] != current[key]]
    return ", ".join(changes or [f"{key.removesuffix(' sha256')} differ" for key in differ])


class NoisyLabelDataModule(pl.LightningDataModule):
    """Base data module: subclasses give ``num_classes``, ``input_shape`` and :meth:`load_split`.

    Args:
        noise: the noise model applied once to the full training labels (``None``: labels as given).
        noise_seed: seed of the noise draw (independent of the training seed).
        val_fraction: stratified share of the training split held out for validation. Must be 0 for a
            dataset that ships its own validation split (:meth:`has_validation_split`).
        split_seed: seed of the validation split and of the data order.
        clean_validation: keep the validation labels clean (default: noised like training, as in ELR).
        train_subset: keep only this many training samples (stratified), for fast suites.
        batch_size: training batch size; ``eval_batch_size`` for validation and test.
        augment: ``default`` (the dataset's usual), ``none``, ``crop`` or ``crop_flip``.
        drop_last: drop the last, incomplete training batch (under DDP: the incomplete global batch).
        rank_affine: under DDP, each rank visits only the training samples it owns (``index % W == rank``), for
            per-sample state sharded over ranks (``ELR(shard_rows=True)``; docs/distributed.md).
        fake: replace the real data by a few random samples of the right shape (tests, dry runs).
    """

    num_classes: int
    input_shape: tuple[int, ...]
    default_augment: Augment = "none"
    crop_padding: int = 4

    def __init__(
        self,
        *,
        noise: NoiseModel | None = None,
        noise_seed: int = 0,
        val_fraction: float = 0.1,
        split_seed: int = 0,
        clean_validation: bool = False,
        train_subset: int | None = None,
        batch_size: int = 128,
        eval_batch_size: int = 1024,
        num_workers: int = 0,
        augment: Augment = "default",
        drop_last: bool = False,
        rank_affine: bool = False,
        fake: bool = False,
    ) -> None:
        super().__init__()
        check_interval("val_fraction", val_fraction, low=0.0, high=1.0, closed="left")
        for name, seed in (("noise_seed", noise_seed), ("split_seed", split_seed)):
            check_interval(name, seed, low=0, high=SEED_MAX)
        for name, size in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size)):
            check_at_least(name, size, 1)
        if train_subset is not None:
            check_at_least("train_subset", train_subset, 1, otherwise="or null for the whole split")
        check_at_least("num_workers", num_workers, 0)
        self.noise, self.noise_seed, self.val_fraction = noise, noise_seed, val_fraction
        self.split_seed, self.clean_validation, self.train_subset = split_seed, clean_validation, train_subset
        self.batch_size, self.eval_batch_size, self.num_workers = batch_size, eval_batch_size, num_workers
        self.augment = self.default_augment if augment == "default" else augment
        self.fake, self.drop_last, self.rank_affine = fake, drop_last, rank_affine
        self.resume_at: tuple[int, int] | None = None  # (epoch, batches trained): a mid-epoch checkpoint's
        self.noisy: NoisyLabels | None = None
        self.datasets: dict[str, ArrayDataset] = {}
        self.meta_stream: MetaStream | None = None
        self.meta_pool = torch.zeros(0, dtype=torch.long)

    # ---- what subclasses provide -------------------------------------------------------------------
    def load_split(self, split: Literal["train", "val", "test"]) -> tuple[np.ndarray, ...]:
        """Return ``(inputs, labels)`` or, for datasets with real label noise, ``(inputs, labels, true_labels)``.

        ``inputs`` are uint8 images ``(N, H, W[, C])`` or float features ``(N, D)``; labels are ``(N,)`` ints.
        ``"val"`` is asked for only when :meth:`has_validation_split` says so.
        """
        raise NotImplementedError

    def has_validation_split(self) -> bool:
        """Whether :meth:`load_split` serves a ``"val"`` split of its own (STORM's spam data, GLUE-style sets).

        Then nothing is carved from the training split, and the validation split keeps its given labels: the
        noise model touches the training labels only, as in the STORM protocol (model selection on a clean
        validation split). Such a data module must run with ``val_fraction: 0`` and ``clean_validation: true``;
        anything else is refused rather than ignored.
        """
        return False

    def fake_split(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """A few random samples with the real shapes, for tests and dry runs."""
        rng = np.random.default_rng(0 if split == "train" else 1)
        n = 96 if split == "train" else 48
        labels = np.arange(n) % self.num_classes
        if len(self.input_shape) == 1:
            return rng.normal(size=(n, *self.input_shape)).astype(np.float32), labels
        c, h, w = self.input_shape
        shape = (n, h, w) if c == 1 else (n, h, w, c)
        return rng.integers(0, 256, size=shape, dtype=np.uint8), labels

    # ---- the recipe ---------------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        load = self.fake_split if self.fake else self.load_split
        inputs, labels, *true = load("train")
        clean = true[0] if true else labels  # real-noise datasets ship their true labels
        test_inputs, test_labels, *test_true = load("test")
        test_labels = test_true[0] if test_true else test_labels  # evaluate against true labels
        self.noisy = self.apply_noise(inputs, labels)  # synthetic noise on top of the given labels
        given = self.noisy.noisy
        train_pos, val_pos = self.carve_validation(given)
        self.check_classes(given[train_pos])
        self.fingerprint = self.data_fingerprint(inputs, clean)
        x, x_test = to_tensor_inputs(inputs), to_tensor_inputs(test_inputs)
        y, y_clean = torch.from_numpy(given.astype(np.int64)), torch.from_numpy(clean.astype(np.int64))
        self.set_normalization(x[torch.from_numpy(train_pos)])
        val_targets = y_clean if self.clean_validation else y
        tp, vp = torch.from_numpy(train_pos), torch.from_numpy(val_pos)
        self.datasets = {
            "train": ArrayDataset(x[tp], y[tp], y_clean[tp]),
            "val": given_split(*load("val")) if self.has_validation_split()
                   else ArrayDataset(x[vp], val_targets[vp], y_clean[vp]),
            "test": ArrayDataset(x_test, torch.from_numpy(test_labels.astype(np.int64)),
                                 torch.from_numpy(test_labels.astype(np.int64))),
        }  # fmt: skip

    def carve_validation(self, given: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(train positions, validation positions)`` in the full training split, from its given labels ``(N,)``:
        the seeded stratified validation split, then the stratified ``train_subset``; sets :attr:`train_positions`."""
        if self.has_validation_split():
            self.check_given_validation()  # val_fraction is 0: the split below keeps every training sample
        train_pos, val_pos = stratified_split(given, self.val_fraction, seed=self.split_seed)
        if self.train_subset is not None and self.train_subset < len(train_pos):
            frac = 1.0 - self.train_subset / len(train_pos)
            keep, _ = stratified_split(given[train_pos], frac, seed=self.split_seed + 1)
            train_pos = train_pos[keep]
        self.train_positions = train_pos  # positions in the full training split
        return train_pos, val_pos

    def check_given_validation(self) -> None:
        """One-line error when the options ask to carve or noise a validation split the dataset ships itself."""
        if self.val_fraction > 0 or not self.clean_validation:
            raise InputError(f"{type(self).__name__} ships its own clean validation split: set val_fraction: 0 and "
                             f"clean_validation: true (got val_fraction {self.val_fraction!r}, clean_validation "
                             f"{self.clean_validation!r})")  # fmt: skip

    def check_classes(self, train_labels: np.ndarray) -> None:
        """One-line error when the training labels hold fewer than two classes: nothing to learn to tell apart."""
        classes = np.unique(train_labels)
        if len(classes) < 2:
            found = f"only class {int(classes[0])}" if len(classes) else "no labels"
            raise InputError(f"{type(self).__name__}: the training labels ({self.label_source()}) hold {found}; "
                             "a classifier needs at least two classes")  # fmt: skip

    def data_fingerprint(self, inputs: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
        """What training depends on in the data (saved in checkpoints, compared on resume): the dataset's
        identity, the noise and its draw, and the split. Hashes decide (:data:`DECISIVE_DATA`); the rest names
        what changed."""
        assert self.noisy is not None, "after apply_noise"
        noise = self.noise if self.noise is not None else NoNoise()
        record = {
            "dataset": type(self).__name__,
            "training samples": len(labels),
            "noise": type(noise).__name__,
            **{f"noise {key}": value for key, value in noise.params().items()},
            "noise_seed": self.noise_seed,
            "val_fraction": self.val_fraction,
            "split_seed": self.split_seed,
            "train_subset": self.train_subset,
            "inputs sha256": inputs_sha256(inputs),
            "labels sha256": labels_sha256(labels),
            "noisy labels sha256": labels_sha256(self.noisy.noisy),
            "training positions sha256": labels_sha256(self.train_positions),
        }
        # plain JSON types only: checkpoints are loaded with weights_only, which refuses numpy scalars
        plain: dict[str, Any] = json.loads(json.dumps(record, default=lambda value: getattr(value, "tolist", str)()))
        return plain

    def label_source(self) -> str:
        """Where the training labels come from, for messages: ``labels file 'x.npy'`` or the noise model."""
        path = getattr(self.noise, "path", None)
        if path is not None:
            return f"labels file {str(path)!r}"
        return repr(self.noise) if self.noise is not None else "as given by the dataset"

    def apply_noise(self, inputs: np.ndarray, clean: np.ndarray) -> NoisyLabels:
        """Draw the noisy training labels once (features for instance-dependent noise: raw inputs)."""
        noise = self.noise if self.noise is not None else NoNoise()
        features = inputs.reshape(len(inputs), -1)
        return noise.apply(clean.astype(np.int64), num_classes=self.num_classes, seed=self.noise_seed,
                           features=features)  # fmt: skip

    def set_normalization(self, train_inputs: Tensor) -> None:
        """Per-channel mean/std of the uint8 training images (identity for float features)."""
        if train_inputs.dtype != torch.uint8:
            self.mean = self.std = None
            return
        x = train_inputs.float().div_(255.0).transpose(0, 1).reshape(train_inputs.shape[1], -1)
        self.mean, self.std = x.mean(1), x.std(1).clamp_min(1e-3)

    @property
    def realized_noise_rate(self) -> float | None:
        """Fraction of *training* samples whose given label differs from the true one, among those whose true label
        is known (``None`` when none is: real noise without ground truth)."""
        train = self.datasets["train"]
        known = train.clean_targets >= 0
        if not bool(known.any()):
            return None
        return float((train.targets[known] != train.clean_targets[known]).float().mean())

    # ---- what a strategy may ask for ---------------------------------------------------------------
    def serve_meta_stream(self, stream: MetaStream) -> None:
        """Serve ``{"train": Batch, "meta": Batch}`` from now on, the meta batches drawn as ``stream`` says."""
        train = self.datasets["train"]
        pool = torch.arange(len(train)) if stream.positions is None else stream.positions.cpu().long()
        if stream.per_class is not None:
            pool = per_class_positions(train.clean_targets, stream.per_class, self.num_classes, seed=self.split_seed)
        if stream.batch_size < 1 or len(pool) == 0 or int(pool.min()) < 0 or int(pool.max()) >= len(train):
            raise InputError(f"a meta stream needs batch_size >= 1 and positions in [0, {len(train)}); got "
                             f"batch_size {stream.batch_size}, {len(pool)} positions")  # fmt: skip
        if stream.trusted and bool((train.clean_targets[pool] < 0).any()):
            raise InputError("a trusted meta stream needs the true labels of its positions, which this data lacks")
        self.meta_stream, self.meta_pool = stream, pool

    def set_sample_order(self, epoch: int, order: Tensor) -> None:
        """Visit the training positions in ``order (N,)`` during ``epoch`` (a strategy's curriculum)."""
        loader = self.trainer.train_dataloader if self.trainer is not None else None
        loader = loader["train"] if isinstance(loader, dict) else loader
        sampler = getattr(loader, "sampler", None)
        if not isinstance(sampler, EpochBatchSampler):
            raise InputError(f"{type(self).__name__} cannot set a sample order: its training sampler is "
                             f"{type(sampler).__name__}")  # fmt: skip
        sampler.set_order(epoch, order)

    # ---- loaders ------------------------------------------------------------------------------------
    def _loader(self, split: str, *, shuffle: bool) -> DataLoader[Batch]:
        dataset = self.datasets[split]
        size = self.batch_size if shuffle else self.eval_batch_size
        sampler = EpochBatchSampler(len(dataset), size, shuffle=shuffle, seed=self.split_seed)
        return self._wrap(dataset, sampler)

    def _train_sampler(self) -> EpochBatchSampler:
        """The training batches: this rank's share of every global batch under DDP (docs/distributed.md)."""
        trainer, size = self.trainer, len(self.datasets["train"])
        world_size = trainer.world_size if trainer is not None else 1
        if world_size == 1:
            sampler = EpochBatchSampler(size, self.batch_size, shuffle=True, seed=self.split_seed,
                                        drop_last=self.drop_last)  # fmt: skip
        else:
            sampler = DistributedEpochBatchSampler(size, self.batch_size, shuffle=True, seed=self.split_seed,
                                                   drop_last=self.drop_last, rank=trainer.global_rank,
                                                   world_size=world_size, rank_affine=self.rank_affine)  # fmt: skip
        if self.resume_at is not None:
            sampler.skip = {self.resume_at[0]: self.resume_at[1]}
            self.resume_at = None
        return sampler

    def _wrap(self, dataset: ArrayDataset, sampler: Sampler[list[int]]) -> DataLoader[Batch]:
        return DataLoader(dataset, sampler=sampler, batch_size=None, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0)  # fmt: skip

    def train_dataloader(self) -> DataLoader[Batch] | dict[str, DataLoader[Batch]]:
        train = self._wrap(self.datasets["train"], self._train_sampler())
        if self.meta_stream is None:
            return train
        source = self.datasets["train"]
        if self.meta_stream.trusted:  # the true labels of the designated clean subset are its targets
            source = ArrayDataset(source.inputs, source.clean_targets, source.clean_targets)
        size = min(self.meta_stream.batch_size, len(self.meta_pool))  # a small pool is served whole each step
        # under DDP Lightning deals the meta batches out to the ranks: W times as many, one per rank and step
        world_size = self.trainer.world_size if self.trainer is not None else 1
        sampler = MetaBatchSampler(self.meta_pool, size, num_batches=len(train) * world_size,
                                   seed=self.split_seed)  # fmt: skip
        return {"train": train, "meta": self._wrap(source, sampler)}

    def val_dataloader(self) -> list[DataLoader[Batch]]:
        """Validation (noisy labels) and test (clean labels), so both are logged every epoch."""
        return [self._loader("val", shuffle=False), self._loader("test", shuffle=False)]

    def test_dataloader(self) -> DataLoader[Batch]:
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader[Batch]:
        return self._loader("train", shuffle=False)

    def transform(self, batch: Batch, *, training: bool) -> Batch:
        """Normalise uint8 images, and augment them when ``training``, on the batch's device."""
        x = batch.inputs
        if x.dtype == torch.uint8:
            assert self.mean is not None and self.std is not None, "setup() sets the normalisation first"
            if training and self.augment in ("crop", "crop_flip"):
                x = random_crop(x, self.crop_padding)
            if training and self.augment == "crop_flip":
                x = random_hflip(x)
            x = normalize(x, self.mean.to(x.device), self.std.to(x.device))
        return batch._replace(inputs=x)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Batch | dict[str, Batch]:
        """:meth:`transform` every batch (training and meta batches alike) on the training device."""
        training = self.trainer is not None and self.trainer.training
        if isinstance(batch, dict):
            return {name: self.transform(part, training=training) for name, part in batch.items()}
        return self.transform(batch, training=training)

    # ---- checkpoints: the noisy labels are part of the run ------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        if self.noisy is None:
            return {}
        state = {"noisy_labels_sha256": labels_sha256(self.noisy.noisy), "fingerprint": self.fingerprint}
        trainer = self.trainer
        if trainer is not None and trainer.training:  # where in the epoch: a mid-epoch resume continues there
            state["train_batches_done"] = [trainer.current_epoch,
                                           trainer.fit_loop.epoch_loop.batch_progress.current.processed]  # fmt: skip
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Refuse a checkpoint of other training data (the fit CLI checks before loading; this is the backstop)."""
        if "train_batches_done" in state_dict:
            self.resume_at = tuple(state_dict["train_batches_done"])  # type: ignore[assignment]
        if self.noisy is None or "noisy_labels_sha256" not in state_dict:
            return
        saved = state_dict.get("fingerprint") or {"noisy labels sha256": state_dict["noisy_labels_sha256"]}
        change = describe_data_change(saved, self.fingerprint)
        if change is not None:
            raise InputError(f"the checkpoint was trained on other data ({change}); resume with the data and noise "
                             "it was trained on (its run folder's noisy_labels.npy, as noise: LabelsFile)")  # fmt: skip


class FeatureDataModule(NoisyLabelDataModule):
    """Base of the data modules whose inputs are feature vectors ``(N, D)`` and whose ``D`` and ``C`` come from the
    data: subclasses implement :meth:`read_splits`.

    The splits are read once, when the shape is first asked for (the fit CLI links ``input_shape`` and
    ``num_classes`` into the model before ``setup``), and released after ``setup``; ``fake=True`` serves
    :attr:`fake_shape` instead.
    """

    fake_shape: tuple[int, int]  # (D, C) served with fake=True

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._splits: dict[str, tuple[np.ndarray, ...]] | None = None
        self._shape: tuple[int, int] | None = None  # (D, C)

    def read_splits(self) -> tuple[dict[str, tuple[np.ndarray, ...]], int]:
        """``({split: (features (N, D) float32, labels (N,)[, true labels (N,)])}, C)``; ``val`` only for a
        dataset with a validation split of its own."""
        raise NotImplementedError

    def splits(self) -> dict[str, tuple[np.ndarray, ...]]:
        """The splits, read once (:meth:`read_splits`); the feature widths are checked to agree."""
        if self._splits is None:
            splits, num_classes = self.read_splits()
            width = splits["train"][0].shape[1]
            for split, (features, *_) in splits.items():
                if features.ndim != 2 or features.shape[1] != width:
                    raise InputError(f"{type(self).__name__}: {split} features have shape {features.shape}; the "
                                     f"training features have {width} columns")  # fmt: skip
            self._splits, self._shape = splits, (width, num_classes)
        return self._splits

    def _dims(self) -> tuple[int, int]:
        if self.fake:
            return self.fake_shape
        if self._shape is None:
            self.splits()
        assert self._shape is not None
        return self._shape

    @property
    def input_shape(self) -> tuple[int, ...]:  # type: ignore[override]  # read-only here, a class attribute elsewhere
        """``(D,)``: the feature width (reads the data the first time)."""
        return (self._dims()[0],)

    @property
    def num_classes(self) -> int:  # type: ignore[override]
        """``C`` (reads the data the first time)."""
        return self._dims()[1]

    def load_split(self, split: str) -> tuple[np.ndarray, ...]:  # type: ignore[override]
        return self.splits()[split]

    def setup(self, stage: str | None = None) -> None:
        super().setup(stage)
        self._splits = None  # the datasets' tensors hold the features from now on
