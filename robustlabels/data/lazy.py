"""Image datasets read from their files batch by batch: the seam for the real-noise sets that do not fit in memory.

Clothing1M (1M images), WebVision (2.4M), Food-101N (310k) and the other web-label sets are far too large to hold
as uint8 arrays. Here a split is an :class:`ImageList` (file paths, given labels, true labels where known), served
by :class:`LazyImages`, which decodes the files of one batch with Pillow when the batch is drawn, and by
:class:`LazyImageDataset`, an :class:`~robustlabels.data.datamodule.ArrayDataset` over it. Batches are the same
:class:`~robustlabels.types.Batch` as every other data module's, so noise, strategies, meta streams and evaluation
run unchanged; ``num_workers > 0`` decodes batches in parallel.

Decoding (torchvision's ``Resize(decode_size)`` then a central square): the shorter side is resized to
``decode_size`` (bilinear) and the central ``decode_size²`` square kept, uint8 RGB. On the training device, a
training batch is randomly cropped to ``image_size`` (and flipped), an evaluation batch centre-cropped, then
normalised: for ``decode_size 256, image_size 224`` this is the ``Resize(256) + RandomCrop(224) / CenterCrop(224)``
of the ELR and DivideMix loaders, except that training crops come from the central square of the resized image.

``cache_dir`` keeps the decoded squares in a memory-mapped ``.u8`` file per split (keyed by the file list and
``decode_size``), filled as images are first drawn; later epochs and runs read it instead of the JPEGs
(1M × 256² × 3 bytes = 197 GB for Clothing1M: pick the folder, and the size, accordingly).
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Sampler

from robustlabels.data.augment import center_crop, normalize, random_crop_to, random_hflip
from robustlabels.data.datamodule import ArrayDataset, EpochBatchSampler, NoisyLabelDataModule
from robustlabels.errors import InputError
from robustlabels.noise import NoisyLabels, NoNoise
from robustlabels.types import Batch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DATA_ENV_VAR = "ROBUSTLABELS_DATA"


# ------------------------------------------------------------------------------------------------ one split
@dataclass(frozen=True)
class ImageList:
    """One split of a file-based dataset.

    Attributes:
        files: ``(N,)`` object array of image paths.
        labels: ``(N,)`` int64 given labels (the noisy ones of a training split).
        true: ``(N,)`` int64 true labels, ``-1`` where unknown.
        verified: ``(N,)`` int8: ``1`` the given label is known to be right, ``0`` known to be wrong (its true class
            unknown: Food-101N's verification labels, a Red mini-ImageNet web image), ``-1`` unknown.
    """

    files: np.ndarray
    labels: np.ndarray
    true: np.ndarray
    verified: np.ndarray

    @classmethod
    def of(cls, files: Sequence[str], labels: Sequence[int] | np.ndarray, *, true: np.ndarray | None = None,
           verified: np.ndarray | None = None) -> ImageList:  # fmt: skip
        """A split whose true labels are ``true`` (default: unknown); ``verified`` defaults to what ``true`` says."""
        given = np.asarray(labels, dtype=np.int64)
        truth = np.full(len(given), -1, np.int64) if true is None else np.asarray(true, dtype=np.int64)
        flags = np.where(truth >= 0, (truth == given).astype(np.int8), -1).astype(np.int8)
        if verified is not None:
            flags = np.where(truth >= 0, flags, np.asarray(verified, dtype=np.int8))
        return cls(np.array(list(files), dtype=object), given, truth, flags)

    @classmethod
    def clean(cls, files: Sequence[str], labels: Sequence[int] | np.ndarray) -> ImageList:
        """A split whose labels are the true ones (a test set)."""
        return cls.of(files, labels, true=np.asarray(labels, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, positions: np.ndarray) -> ImageList:
        """The sub-list at ``positions`` (in that order)."""
        return ImageList(self.files[positions], self.labels[positions], self.true[positions], self.verified[positions])


# ------------------------------------------------------------------------------------------------ decoding
def decode_image(path: str, size: int) -> np.ndarray:
    """``(size, size, 3)`` uint8: the file's shorter side resized to ``size`` (bilinear), the central square kept.

    Raises:
        InputError: the file is missing or not a readable image (its path named).
    """
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.draft("RGB", (size, size))  # JPEG: let libjpeg decode at the smallest scale still >= size
            rgb = img.convert("RGB")
    except FileNotFoundError:
        raise InputError(f"image file not found: {path!r}") from None
    except (OSError, ValueError) as err:
        raise InputError(f"image {path!r} is not readable: {err}") from None
    w, h = rgb.size
    scale = size / min(w, h)
    new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
    if (new_w, new_h) != (w, h):
        rgb = rgb.resize((new_w, new_h), Image.Resampling.BILINEAR)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    return np.asarray(rgb.crop((left, top, left + size, top + size)), dtype=np.uint8)


class DecodeCache:
    """Decoded ``(N, S, S, 3)`` uint8 images in a memory-mapped file under ``folder``, keyed by the file list and
    ``S``: ``<key>.u8`` (the images) and ``<key>.done`` (``(N,)`` uint8, 1 once a row is written). Rows are written
    the first time they are decoded, by whichever process decodes them (distinct rows, so workers never clash)."""

    def __init__(self, folder: str | Path, files: np.ndarray, size: int) -> None:
        digest = hashlib.sha256(f"robustlabels-decode/{size}\n".encode())
        for name in files:
            digest.update(str(name).encode() + b"\n")
        self.folder, self.size, self.count = Path(folder).expanduser(), size, len(files)
        key = digest.hexdigest()[:32]
        self.images_path, self.done_path = self.folder / f"{key}.u8", self.folder / f"{key}.done"
        self._images: np.memmap | None = None
        self._done: np.memmap | None = None
        self._create()

    def _create(self) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            for path, nbytes in ((self.images_path, self.count * self.size * self.size * 3),
                                 (self.done_path, self.count)):  # fmt: skip
                with open(path, "ab") as f:  # sparse until written; never truncates a finished cache
                    if f.tell() < nbytes:
                        f.truncate(nbytes)
        except OSError as err:
            raise InputError(f"`cache_dir` {str(self.folder)!r} is not writable: {err}") from None

    def _open(self) -> tuple[np.memmap, np.memmap]:
        if self._images is None or self._done is None:  # once per process (DataLoader workers open their own)
            shape = (self.count, self.size, self.size, 3)
            self._images = np.memmap(self.images_path, np.uint8, mode="r+", shape=shape)
            self._done = np.memmap(self.done_path, np.uint8, mode="r+", shape=(self.count,))
        return self._images, self._done

    def fetch(self, rows: np.ndarray, files: np.ndarray) -> np.ndarray:
        """``(B, S, S, 3)`` uint8 of ``rows``: read when cached, else decoded from ``files (B,)`` and stored."""
        images, done = self._open()
        out = np.empty((len(rows), self.size, self.size, 3), np.uint8)
        for i, (row, path) in enumerate(zip(rows.tolist(), files, strict=True)):
            if done[row]:
                out[i] = images[row]
            else:
                out[i] = images[row] = decode_image(str(path), self.size)
                done[row] = 1
        return out

    def __getstate__(self) -> dict[str, Any]:  # memmaps are reopened after pickling (spawned workers)
        return {**self.__dict__, "_images": None, "_done": None}


class LazyImages:
    """``N`` image files that index like the ``(N, 3, S, S)`` uint8 tensor they stand for: ``images[idx]`` decodes
    the files at ``idx`` (a ``(B,)`` tensor of positions) into a ``(B, 3, S, S)`` uint8 tensor."""

    dtype = torch.uint8

    def __init__(self, files: np.ndarray, size: int, *, cache: DecodeCache | None = None,
                 rows: np.ndarray | None = None) -> None:  # fmt: skip
        self.files, self.size, self.cache = files, size, cache
        self.rows = np.arange(len(files)) if rows is None else rows  # positions in ``files`` (and the cache)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self), 3, self.size, self.size)

    def subset(self, positions: np.ndarray) -> LazyImages:
        """The images at ``positions``, sharing the files and the cache."""
        return LazyImages(self.files, self.size, cache=self.cache, rows=self.rows[positions])

    def __getitem__(self, idx: Tensor | np.ndarray | Sequence[int]) -> Tensor:
        rows = self.rows[np.asarray(idx.cpu() if isinstance(idx, Tensor) else idx, dtype=np.int64)]
        files = self.files[rows]
        if self.cache is not None:
            batch = self.cache.fetch(rows, files)
        else:
            batch = np.empty((len(rows), self.size, self.size, 3), np.uint8)
            for i, path in enumerate(files):
                batch[i] = decode_image(str(path), self.size)
        return torch.from_numpy(batch).permute(0, 3, 1, 2).contiguous()

    def cpu(self) -> Tensor:
        raise InputError(f"these {len(self)} images are decoded batch by batch and cannot be held in memory at once "
                         "(e.g. CoTeaching's forget_rate: estimate); give the rate as a number")  # fmt: skip


class LazyImageDataset(ArrayDataset):
    """An :class:`ArrayDataset` whose inputs are :class:`LazyImages`: ``dataset[positions]`` decodes one batch."""

    def __init__(self, images: LazyImages, targets: Tensor, clean_targets: Tensor) -> None:
        super().__init__(images, targets, clean_targets)  # type: ignore[arg-type]  # indexes like a uint8 tensor


# ------------------------------------------------------------------------------------------------ sampling
def class_balanced_draw(labels: np.ndarray, num_classes: int, num_samples: int, rng: np.random.Generator) -> np.ndarray:
    """Positions of one class-balanced draw (the ELR+ / DivideMix Clothing1M scheme), in random order.

    Walk the positions in a random order and keep one while its class has fewer than ``num_samples / C`` kept and
    fewer than ``num_samples`` are kept in all: at most ``⌈num_samples / C⌉`` per class (by the given labels).
    """
    order = rng.permutation(len(labels))
    ordered = labels[order]
    rank = np.empty(len(labels), np.int64)
    for c in range(num_classes):
        members = np.flatnonzero(ordered == c)
        rank[members] = np.arange(len(members))
    kept = order[rank < num_samples / num_classes][:num_samples]
    return rng.permutation(kept)


class ClassBalancedSampler(Sampler[list[int]]):
    """Batches of a class-balanced draw of ``num_samples`` training positions per epoch (:func:`class_balanced_draw`).

    ``redraw``: a fresh draw every epoch (DivideMix: ``loader.run('warmup' | 'eval_train')`` rebuilds its dataset
    each epoch), or one draw for the whole run (ELR+: the dataset is built once). Draws are a pure function of
    ``(seed, epoch)``, so a resumed run sees the same batches.
    """

    def __init__(self, labels: np.ndarray, num_classes: int, num_samples: int, batch_size: int, *, seed: int,
                 redraw: bool = True) -> None:  # fmt: skip
        self.labels, self.num_classes, self.num_samples = np.asarray(labels), num_classes, num_samples
        self.batch_size, self.seed, self.redraw, self.epoch = batch_size, seed, redraw, 0
        counts = np.bincount(self.labels, minlength=num_classes)
        self.size = min(num_samples, int(np.minimum(counts, math.ceil(num_samples / num_classes)).sum()))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch if self.redraw else 0, 7])
        kept = class_balanced_draw(self.labels, self.num_classes, self.num_samples, rng).tolist()
        for start in range(0, len(kept), self.batch_size):
            yield kept[start : start + self.batch_size]

    def __len__(self) -> int:
        return math.ceil(self.size / self.batch_size)


# ------------------------------------------------------------------------------------------------ checks
def require(path: Path, *, dataset: str, source: str) -> Path:
    """``path``, or a one-line :class:`InputError` naming it and where to get the dataset."""
    if not path.exists():
        raise InputError(f"{dataset}: {str(path)!r} not found; {source}")
    return path


def read_lines(path: Path, *, dataset: str, source: str) -> list[str]:
    """The non-blank lines of a text file, stripped (missing file: one line naming it and ``source``)."""
    require(path, dataset=dataset, source=source)
    try:
        with open(path, encoding="utf-8") as f:
            return [line.strip() for line in f if line.strip()]
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"{dataset}: {str(path)!r} is not readable text ({err})") from None


def split_fields(line: str, path: Path, lineno: int, count: int, *, sep: str | None = None) -> list[str]:
    """The ``count`` whitespace- (or ``sep``-) separated fields of one line, or an error naming file and line."""
    fields = line.split(sep)
    if len(fields) != count:
        raise InputError(f"{str(path)!r} line {lineno}: expected {count} fields; got {line!r}")
    return fields


def parse_label(value: str, path: Path, lineno: int, num_classes: int) -> int:
    """An integer label in ``[0, C)`` from a list file, or an error naming file, line and value."""
    try:
        label = int(value)
    except ValueError:
        raise InputError(f"{str(path)!r} line {lineno}: label {value!r} is not an integer") from None
    if not 0 <= label < num_classes:
        raise InputError(f"{str(path)!r} line {lineno}: label {label} outside [0, {num_classes})")
    return label


# ------------------------------------------------------------------------------------------------ the module
class LazyImageDataModule(NoisyLabelDataModule):
    """Base of the data modules over image files in an upstream layout: subclasses give :meth:`read_lists`.

    Args:
        root: the dataset's folder (default: ``$ROBUSTLABELS_DATA/<data_name>``, then ``./data/<data_name>``).
        image_size: side of the crops the network sees; ``decode_size``: side of the decoded squares (module doc).
        cache_dir: folder of the decode cache (``None``: decode every time).
        strict: check the image counts of each split against the full release's (:attr:`known_counts`, updated by
            ``expected_counts``); ``false`` accepts a partial copy. Missing files are always named.
        expected_counts: ``{split: N}`` to check instead of (or besides) the release's counts.
        val_fraction, clean_validation: default ``0`` and ``true`` for a dataset that ships a validation split, else
            ``0.1`` and ``false``.
        **kwargs: see :class:`~robustlabels.data.datamodule.NoisyLabelDataModule`.
    """

    data_name: str  # the folder name under data/
    title: str  # the dataset's name in messages
    source: str  # where to get it, said with every missing file
    known_counts: dict[str, int] = {}  # noqa: RUF012  # split (as read_lists names it) -> images in the full release
    default_image_size: int = 224
    default_decode_size: int = 256
    channel_mean: tuple[float, float, float] = IMAGENET_MEAN
    channel_std: tuple[float, float, float] = IMAGENET_STD
    default_augment = "crop_flip"

    def __init__(self, *, root: str | None = None, image_size: int | None = None, decode_size: int | None = None,
                 cache_dir: str | None = None, strict: bool = True, expected_counts: dict[str, int] | None = None,
                 val_fraction: float | None = None, clean_validation: bool | None = None,
                 **kwargs: Any) -> None:  # fmt: skip
        shipped = self.has_validation_split()  # a shipped validation split is served as given
        default_fraction = 0.0 if shipped else 0.1
        super().__init__(val_fraction=default_fraction if val_fraction is None else val_fraction,
                         clean_validation=shipped if clean_validation is None else clean_validation,
                         **kwargs)  # fmt: skip
        self.root, self.cache_dir, self.strict = root, cache_dir, strict
        if self.fake:
            self.num_workers = 0  # a few in-memory arrays: workers would only add their start-up time
        self.image_size = image_size or self.default_image_size
        self.decode_size = max(decode_size or self.default_decode_size, self.image_size)
        self.expected_counts = {**self.known_counts, **(expected_counts or {})}
        self.label_status = torch.zeros(0, dtype=torch.int8)  # training samples: 1 right, 0 wrong, -1 unknown

    @property
    def input_shape(self) -> tuple[int, ...]:  # type: ignore[override]  # read-only here, a class attribute elsewhere
        return (3, self.image_size, self.image_size)

    # ---- what subclasses provide -------------------------------------------------------------------
    def read_lists(self, root: Path) -> dict[str, ImageList]:
        """``{"train": ..., "test": ...[, "val": ...]}`` read from ``root``; the test lists' labels are true."""
        raise NotImplementedError

    def fake_split(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """A few random images of the real shape (8 training, 4 otherwise: these networks are large)."""
        rng = np.random.default_rng(0 if split == "train" else 1)
        n = 8 if split == "train" else 4
        return rng.integers(0, 256, size=(n, self.image_size, self.image_size, 3), dtype=np.uint8), np.arange(n) % 4

    # ---- reading and checking ----------------------------------------------------------------------
    def resolve_root(self) -> Path:
        """``root``, else the first of ``$ROBUSTLABELS_DATA/<data_name>`` and ``./data/<data_name>`` that exists."""
        if self.root is not None:
            return require(Path(self.root).expanduser(), dataset=self.title, source=self.source)
        env = os.environ.get(DATA_ENV_VAR)
        searched = ([Path(env).expanduser() / self.data_name] if env else []) + [Path.cwd() / "data" / self.data_name]
        for folder in searched:
            if folder.is_dir():
                return folder
        raise InputError(f"{self.title}: no copy found (searched {', '.join(map(str, searched))}); {self.source}, "
                         f"and put it in data/{self.data_name} or pass root=")  # fmt: skip

    def checked_lists(self) -> dict[str, ImageList]:
        """:meth:`read_lists`, each split's count checked (``strict``) and its first missing image named."""
        lists = self.read_lists(self.resolve_root())
        for split, images in lists.items():
            expected = self.expected_counts.get(split)
            if self.strict and expected is not None and len(images) != expected:
                raise InputError(f"{self.title}: the {split} split lists {len(images)} images; the full release has "
                                 f"{expected} (a partial copy? set strict: false to use it)")  # fmt: skip
            missing = [str(f) for f in images.files if not os.path.isfile(f)]
            if missing:
                raise InputError(f"{self.title}: image file not found: {missing[0]!r} ({len(missing)} of the "
                                 f"{len(images)} {split} images are missing); {self.source}")  # fmt: skip
        return lists

    def lazy(self, images: ImageList) -> LazyImages:
        cache = DecodeCache(self.cache_dir, images.files, self.decode_size) if self.cache_dir is not None else None
        return LazyImages(images.files, self.decode_size, cache=cache)

    # ---- the recipe, on file lists ------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        if self.fake:  # fake arrays of the real shape, through the in-memory path
            super().setup(stage)
            return
        lists = self.checked_lists()
        train, test = lists["train"], lists["test"]
        self.noisy = self.apply_noise(np.zeros((len(train), 0)), train.labels)
        given = self.noisy.noisy
        train_pos, val_pos = self.carve_validation(given)
        self.check_classes(given[train_pos])
        file_list = np.frombuffer("\n".join(map(str, train.files)).encode(), dtype=np.uint8)  # the pixels' stand-in
        self.fingerprint = self.data_fingerprint(file_list, train.labels)
        images = self.lazy(train)
        y, y_true = torch.from_numpy(given.astype(np.int64)), torch.from_numpy(train.true)
        status = np.where(train.true >= 0, (given == train.true).astype(np.int8),
                          np.where(self.noisy.is_flipped, -1, train.verified))  # fmt: skip
        self.label_status = torch.from_numpy(status.astype(np.int8))[torch.from_numpy(train_pos)]
        if self.clean_validation and not self.has_validation_split() and bool((train.true[val_pos] < 0).any()):
            raise InputError(f"clean_validation needs the true labels of the validation samples, which {self.title}'s "
                             "training split does not have; keep clean_validation: false")  # fmt: skip
        val_targets = y_true if self.clean_validation else y
        self.mean, self.std = torch.tensor(self.channel_mean), torch.tensor(self.channel_std)
        tp, vp = torch.from_numpy(train_pos), torch.from_numpy(val_pos)
        self.datasets = {"train": LazyImageDataset(images.subset(train_pos), y[tp], y_true[tp]),
                         "val": self.given_split(lists["val"]) if self.has_validation_split()
                                else LazyImageDataset(images.subset(val_pos), val_targets[vp], y_true[vp]),
                         "test": self.given_split(test)}  # fmt: skip

    def given_split(self, images: ImageList) -> LazyImageDataset:
        """A split served with its labels as given (true labels where known)."""
        return LazyImageDataset(self.lazy(images), torch.from_numpy(images.labels), torch.from_numpy(images.true))

    def apply_noise(self, inputs: np.ndarray, clean: np.ndarray) -> NoisyLabels:
        """Synthetic noise on top of the given labels (no raw inputs: instance-dependent noise is refused)."""
        noise = self.noise if self.noise is not None else NoNoise()
        return noise.apply(clean.astype(np.int64), num_classes=self.num_classes, seed=self.noise_seed,
                           features=inputs if inputs.size else None)  # fmt: skip

    @property
    def realized_noise_rate(self) -> float | None:
        """Share of wrong training labels among those known right or wrong (true labels, verification flags)."""
        if self.fake or not len(self.label_status):
            return super().realized_noise_rate
        known = self.label_status >= 0
        return float((self.label_status[known] == 0).float().mean()) if bool(known.any()) else None

    # ---- batches ------------------------------------------------------------------------------------
    def training_sampler(self, size: int) -> Sampler[list[int]]:
        """The training batches' sampler (a subclass may balance classes)."""
        return EpochBatchSampler(size, self.batch_size, shuffle=True, seed=self.split_seed)

    def _loader(self, split: str, *, shuffle: bool) -> DataLoader[Batch]:
        if split == "train" and shuffle and not self.fake:
            return self._wrap(self.datasets["train"], self.training_sampler(len(self.datasets["train"])))
        return super()._loader(split, shuffle=shuffle)

    def transform(self, batch: Batch, *, training: bool) -> Batch:
        """Decoded squares: a random (training) or central crop to ``image_size``, a flip, then normalisation."""
        x = batch.inputs
        if x.dtype != torch.uint8 or x.shape[-1] == self.image_size:
            return super().transform(batch, training=training)  # fake data, or decoded at the crop size
        assert self.mean is not None and self.std is not None
        cropping = training and self.augment in ("crop", "crop_flip")
        x = random_crop_to(x, self.image_size) if cropping else center_crop(x, self.image_size)
        if training and self.augment == "crop_flip":
            x = random_hflip(x)
        return batch._replace(inputs=normalize(x, self.mean.to(x.device), self.std.to(x.device)))
