"""Web-crawled real-noise datasets, read lazily from their upstream layouts: Clothing1M, WebVision 1.0 (and
mini-WebVision), Food-101N. Nothing is downloaded; each module checks the user's copy and names the first missing
file and where to get the set (:class:`~robustlabels.data.lazy.LazyImageDataModule`).

References: Xiao et al., "Learning from Massive Noisy Labeled Data for Image Classification", CVPR 2015
(Clothing1M); Li et al., "WebVision Database: Visual Learning and Understanding from Web Data", arXiv 1708.02862;
Lee et al., "CleanNet: Transfer Learning for Scalable Image Classifier Training with Label Noise", CVPR 2018
(Food-101N); Bossard et al., "Food-101", ECCV 2014.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
from torch.utils.data import Sampler

from robustlabels.data.lazy import (
    ClassBalancedSampler,
    ImageList,
    LazyImageDataModule,
    parse_label,
    read_lines,
    require,
    split_fields,
)
from robustlabels.errors import InputError, check_choice

# ------------------------------------------------------------------------------------------------ Clothing1M
CLOTHING1M_CLASSES = ("T-shirt", "Shirt", "Knitwear", "Chiffon", "Sweater", "Hoodie", "Windbreaker", "Jacket",
                      "Down Coat", "Suit", "Shawl", "Dress", "Vest", "Underwear")  # fmt: skip
CLOTHING1M_SOURCE = ("Clothing1M comes from its authors (ask tong.xiao.work[at]gmail[dot]com for the link, see "
                     "github.com/Cysu/noisy_label); untar images/ and unzip the annotations into one folder")
CLOTHING1M_MEAN, CLOTHING1M_STD = (0.6959, 0.6537, 0.6371), (0.3113, 0.3192, 0.3214)  # the ELR/DivideMix loaders'


def read_key_labels(path: Path, *, source: str, num_classes: int) -> dict[str, int]:
    """``{key: label}`` from a Clothing1M ``*_label_kv.txt`` (lines ``images/0/00/123.jpg 3``)."""
    table = {}
    for lineno, line in enumerate(read_lines(path, dataset="Clothing1M", source=source), start=1):
        key, label = split_fields(line, path, lineno, 2)
        table[key] = parse_label(label, path, lineno, num_classes)
    return table


def read_clothing1m(root: Path, train: Literal["noisy", "clean"] = "noisy") -> dict[str, ImageList]:
    """Clothing1M's splits from ``root`` (Xiao et al.'s release: ``images/``, ``noisy_label_kv.txt``,
    ``clean_label_kv.txt``, ``noisy_train_key_list.txt``, ``clean_{train,val,test}_key_list.txt``).

    Returns:
        ``{"train", "val", "test"}``: ``train`` the noisy training keys with their noisy labels (true labels from
        ``clean_label_kv.txt`` where an image has both) or, for ``train="clean"``, the clean training keys with their
        clean labels; ``val`` and ``test`` the clean validation and test keys with their clean labels.
    """
    src, c = CLOTHING1M_SOURCE, len(CLOTHING1M_CLASSES)
    clean = read_key_labels(root / "clean_label_kv.txt", source=src, num_classes=c)
    noisy = read_key_labels(root / "noisy_label_kv.txt", source=src, num_classes=c) if train == "noisy" else {}

    def keys(name: str) -> list[str]:
        return read_lines(root / name, dataset="Clothing1M", source=src)

    def labelled(name: str, table: dict[str, int], kind: str) -> list[int]:
        listed = keys(name)
        absent = [k for k in listed if k not in table]
        if absent:
            raise InputError(f"Clothing1M: {absent[0]!r} of {name} has no {kind} label ({len(absent)} keys lack one)")
        return [table[k] for k in listed]

    def clean_split(name: str) -> ImageList:
        return ImageList.clean([str(root / k) for k in keys(name)], labelled(name, clean, "clean"))

    if train == "noisy":
        train_keys = keys("noisy_train_key_list.txt")
        truth = np.array([clean.get(k, -1) for k in train_keys], np.int64)
        train_list = ImageList.of([str(root / k) for k in train_keys],
                                  labelled("noisy_train_key_list.txt", noisy, "noisy"), true=truth)  # fmt: skip
    else:
        train_list = clean_split("clean_train_key_list.txt")
    return {"train": train_list, "val": clean_split("clean_val_key_list.txt"),
            "test": clean_split("clean_test_key_list.txt")}  # fmt: skip


class Clothing1MDataModule(LazyImageDataModule):
    """Clothing1M (14 clothing classes from shopping websites, noisy labels from the surrounding text; about 38 %
    wrong), from Xiao et al.'s release under ``root`` (module doc).

    Splits: training = the 1M noisy training images (``train_split: noisy``) or the 47,570 clean ones (``clean``);
    validation = the 14,313 clean validation images; test = the 10,526 clean test images. The 72k images with a
    clean label carry it as their true label (``clean_targets``), the rest ``-1``. Decoding: ``Resize(256)``, crops of
    224, Clothing1M's channel statistics (those of the ELR and DivideMix loaders).

    Args:
        balanced_samples: draw this many training images per epoch, class-balanced by their noisy labels
            (:func:`~robustlabels.data.lazy.class_balanced_draw`: at most ``⌈n/14⌉`` per class). ELR+ uses
            ``num_batches · batch_size = 3000 · 64 = 192,000``, drawn once for the run (``balanced_redraw: false``);
            DivideMix ``1000 · 32 · 2 = 64,000`` for its warm-up and ``1000 · 32 = 32,000`` for its eval pass, drawn
            again every epoch (``balanced_redraw: true``). ``None``: every training image, every epoch.
        train_split: ``noisy`` (the usual) or ``clean``.
        **kwargs: see :class:`~robustlabels.data.lazy.LazyImageDataModule`.
    """

    data_name, title, source = "clothing1m", "Clothing1M", CLOTHING1M_SOURCE
    num_classes = len(CLOTHING1M_CLASSES)
    class_names = CLOTHING1M_CLASSES
    known_counts = {"train": 1_000_000, "val": 14_313, "test": 10_526}  # noqa: RUF012  # Xiao et al. 2015
    channel_mean, channel_std = CLOTHING1M_MEAN, CLOTHING1M_STD

    def __init__(self, *, train_split: Literal["noisy", "clean"] = "noisy", balanced_samples: int | None = None,
                 balanced_redraw: bool = True, **kwargs: Any) -> None:  # fmt: skip
        check_choice("train_split", train_split, ("noisy", "clean"))
        if train_split == "clean":
            kwargs["expected_counts"] = {"train": 47_570, **(kwargs.get("expected_counts") or {})}
        super().__init__(**kwargs)
        if balanced_samples is not None and balanced_samples < 1:
            raise InputError(f"`balanced_samples` must be >= 1 or null; got {balanced_samples}")
        self.train_split, self.balanced_samples, self.balanced_redraw = train_split, balanced_samples, balanced_redraw

    def has_validation_split(self) -> bool:
        return True

    def read_lists(self, root: Path) -> dict[str, ImageList]:
        return read_clothing1m(root, self.train_split)

    def training_sampler(self, size: int) -> Sampler[list[int]]:
        if self.balanced_samples is None:
            return super().training_sampler(size)
        labels = self.datasets["train"].targets.numpy()
        return ClassBalancedSampler(labels, self.num_classes, self.balanced_samples, self.batch_size,
                                    seed=self.split_seed, redraw=self.balanced_redraw)  # fmt: skip


# ------------------------------------------------------------------------------------------------ WebVision
WEBVISION_SOURCE = ("WebVision 1.0 is at data.vision.ee.ethz.ch/cvl/webvision/download.html (the resized images and "
                    "info/); the ImageNet (ILSVRC 2012) validation images at image-net.org")  # fmt: skip
WEBVISION_VAL_FOLDERS = ("val_images_256", "val_images_resized", "val_images")


def read_file_list(path: Path, folder: Path, *, num_classes: int, source: str) -> ImageList:
    """The images of a WebVision list (lines ``<relative path> <label>``) with labels below ``num_classes``."""
    files, labels = [], []
    for lineno, line in enumerate(read_lines(path, dataset="WebVision", source=source), start=1):
        name, label = split_fields(line, path, lineno, 2)
        value = parse_label(label, path, lineno, 1000)
        if value < num_classes:
            files.append(str(folder / name))
            labels.append(value)
    return ImageList.of(files, labels)


def read_imagenet_val(root: Path, num_classes: int, synsets: list[str]) -> ImageList | None:
    """The ILSVRC 2012 validation images of WebVision's first ``num_classes`` classes, under ``root/imagenet``.

    Layouts: ``imagenet/val/<label>/<image>`` (DivideMix's loader), ``imagenet/val/<wnid>/<image>`` (torchvision's
    ImageFolder, the label from ``info/synsets.txt``), or ``imagenet/imagenet_val.txt`` (lines ``<image> <label>``)
    with ``imagenet/val/<image>`` (ELR's loader). ``None`` when ``root/imagenet/val`` is absent.
    """
    folder = root / "imagenet" / "val"
    if not folder.is_dir():
        return None
    listing = root / "imagenet" / "imagenet_val.txt"
    if listing.is_file():
        val = read_file_list(listing, folder, num_classes=num_classes, source=WEBVISION_SOURCE)
        return ImageList.clean(list(val.files), val.labels)
    index = {wnid: c for c, wnid in enumerate(synsets)}
    files, labels = [], []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        label = int(sub.name) if sub.name.isdigit() else index.get(sub.name, -1)
        if 0 <= label < num_classes:
            images = sorted(f for f in sub.iterdir() if f.is_file() and not f.name.startswith("."))
            files += [str(f) for f in images]
            labels += [label] * len(images)
    if not files:
        raise InputError(f"WebVision: {str(folder)!r} holds no class folders of the first {num_classes} classes "
                         "(val/<label>/ or val/<wnid>/ with info/synsets.txt), nor is there imagenet_val.txt")
    return ImageList.clean(files, labels)


def read_synsets(root: Path) -> list[str]:
    """WebVision's class order: the first word of each line of ``info/synsets.txt`` (empty when absent)."""
    path = root / "info" / "synsets.txt"
    return [line.split()[0] for line in read_lines(path, dataset="WebVision", source="")] if path.is_file() else []


class WebVisionDataModule(LazyImageDataModule):
    """WebVision 1.0 (web images of the 1,000 ILSVRC 2012 classes, labelled by their search query), or its first
    ``num_classes`` classes: ``num_classes: 50`` with the Google images is mini-WebVision, the setting of ELR,
    DivideMix and NCR (:class:`MiniWebVisionDataModule`).

    Layout under ``root`` (WebVision's release): ``info/train_filelist_google.txt`` (and ``train_filelist_flickr.txt``
    for ``sources: all``; lines ``google/q0001/xxx.jpg <label>``) with the images at those paths,
    ``info/val_filelist.txt`` with the images in ``val_images_256/`` (or ``val_images_resized/``, ``val_images/``),
    and the ImageNet validation images in ``imagenet/`` (:func:`read_imagenet_val`).

    Splits: training = the web images (no true labels); validation = WebVision's human-checked validation images of
    those classes (50 per class); test = the ILSVRC 2012 validation images of the same classes (50 per class), so that
    every epoch logs both numbers the papers report (``val/acc_clean``: WebVision, ``test/acc``: ImageNet). Without
    ``imagenet/`` (``imagenet: false``), WebVision's validation set is the test set too.
    Decoding: ``Resize(256)``, crops of 227 (ELR+'s ``RandomCrop(227)`` on the 256-pixel images), ImageNet statistics.

    Args:
        num_classes: the first ``C`` classes (1000: all of WebVision 1.0).
        sources: ``google`` (the usual) or ``all`` (Google and Flickr).
        imagenet: test on the ImageNet validation images (required unless ``false``).
    """

    data_name, title, source = "webvision", "WebVision", WEBVISION_SOURCE
    default_image_size = 227

    def __init__(self, *, num_classes: int = 1000, sources: Literal["google", "all"] = "google",
                 imagenet: bool = True, **kwargs: Any) -> None:  # fmt: skip
        if not 1 <= num_classes <= 1000:
            raise InputError(f"`num_classes` must be in [1, 1000]; got {num_classes}")
        check_choice("sources", sources, ("google", "all"))
        self.num_classes, self.sources, self.imagenet = num_classes, sources, imagenet
        self.known_counts = {"val": 50 * num_classes, **({"test": 50 * num_classes} if imagenet else {})}
        super().__init__(**kwargs)

    def has_validation_split(self) -> bool:
        return True

    def read_lists(self, root: Path) -> dict[str, ImageList]:
        info, c, src = root / "info", self.num_classes, self.source
        names = ["train_filelist_google.txt"] + (["train_filelist_flickr.txt"] if self.sources == "all" else [])
        parts = [read_file_list(info / name, root, num_classes=c, source=src) for name in names]
        files, labels = np.concatenate([p.files for p in parts]), np.concatenate([p.labels for p in parts])
        train = ImageList.of(files.tolist(), labels)
        folder = next((root / f for f in WEBVISION_VAL_FOLDERS if (root / f).is_dir()), root / WEBVISION_VAL_FOLDERS[0])
        require(folder, dataset=self.title, source=src)
        val = read_file_list(info / "val_filelist.txt", folder, num_classes=c, source=src)
        val = ImageList.clean(list(val.files), val.labels)
        if not self.imagenet:
            return {"train": train, "val": val, "test": val}
        test = read_imagenet_val(root, c, read_synsets(root))
        if test is None:
            raise InputError(f"WebVision: {str(root / 'imagenet' / 'val')!r} not found (the ILSVRC 2012 validation "
                             "images of the same classes, the test set); get them from image-net.org, or set "
                             "imagenet: false to test on WebVision's validation set")  # fmt: skip
        return {"train": train, "val": val, "test": test}


class MiniWebVisionDataModule(WebVisionDataModule):
    """mini-WebVision: the Google images of WebVision 1.0's first 50 classes, tested on WebVision's and ImageNet's
    validation images of those classes (2,500 each), as in ELR, DivideMix and NCR (:class:`WebVisionDataModule`)."""

    data_name = "webvision"

    def __init__(self, *, num_classes: int = 50, **kwargs: Any) -> None:
        super().__init__(num_classes=num_classes, **kwargs)


# ------------------------------------------------------------------------------------------------ Food-101N
FOOD101N_SOURCE = ("Food-101N is at kuanghuei.github.io/Food-101N (Food-101N_release/), Food-101 at "
                   "data.vision.ee.ethz.ch/cvl/datasets_extra/food-101 (food-101/); put both folders in the root")


def read_food_classes(path: Path) -> list[str]:
    """Class names from ``meta/classes.txt`` (Food-101N's starts with a ``class_name`` header)."""
    names = read_lines(path, dataset="Food-101N", source=FOOD101N_SOURCE)
    return names[1:] if names and names[0] == "class_name" else names


def read_food101n(root: Path) -> dict[str, ImageList]:
    """Food-101N's 310k noisy training images with their verification flags, and Food-101's test split.

    Layout under ``root``: ``Food-101N_release/meta/{classes.txt, imagelist.tsv, verified_train.tsv,
    verified_val.tsv}`` and ``Food-101N_release/images/<class>/<key>.jpg``; ``food-101/meta/test.txt`` (lines
    ``<class>/<id>``) and ``food-101/images/<class>/<id>.jpg``. The ``.tsv`` files have a header line; their keys are
    ``<class>/<key>.jpg`` and the verification label is 1 when the class label is right, 0 when wrong.

    Returns:
        ``{"train", "test"}``: ``train``'s labels from the key's class folder, ``true`` = the label where verified
        right, ``verified`` the flags of ``verified_{train,val}.tsv`` (``-1`` for the ~250k unverified images).
    """
    release, food101, src = root / "Food-101N_release", root / "food-101", FOOD101N_SOURCE
    classes = read_food_classes(release / "meta" / "classes.txt")
    index = {name: c for c, name in enumerate(classes)}

    def label_of(key: str, path: Path, lineno: int) -> int:
        name = key.split("/")[0]
        if name not in index:
            raise InputError(f"{str(path)!r} line {lineno}: class {name!r} is not in {release / 'meta/classes.txt'}")
        return index[name]

    listing = release / "meta" / "imagelist.tsv"
    keys = read_lines(listing, dataset="Food-101N", source=src)[1:]  # header: class_name/key
    labels = [label_of(k, listing, i + 2) for i, k in enumerate(keys)]
    flags: dict[str, int] = {}
    for name in ("verified_train.tsv", "verified_val.tsv"):
        path = release / "meta" / name
        for lineno, line in enumerate(read_lines(path, dataset="Food-101N", source=src)[1:], start=2):
            key, flag = split_fields(line, path, lineno, 2, sep="\t")
            flags[key] = parse_label(flag, path, lineno, 2)
    verified = np.array([flags.get(k, -1) for k in keys], np.int8)
    given = np.array(labels, np.int64)
    train = ImageList.of([str(release / "images" / k) for k in keys], given,
                         true=np.where(verified == 1, given, -1), verified=verified)  # fmt: skip
    test_list = food101 / "meta" / "test.txt"
    test_keys = read_lines(test_list, dataset="Food-101", source=src)
    test_labels = [label_of(k, test_list, i + 1) for i, k in enumerate(test_keys)]
    test = ImageList.clean([str(food101 / "images" / f"{k}.jpg") for k in test_keys], test_labels)
    return {"train": train, "test": test}


class Food101NDataModule(LazyImageDataModule):
    """Food-101N (310,009 recipe images of Food-101's 101 classes, labelled by their search query; about 20 % wrong),
    tested on Food-101's 25,250 test images (:func:`read_food101n`).

    True labels: only the 57,609 images with a verification label say anything, and only those verified right give a
    true class (``clean_targets``); those verified wrong count as wrong labels in the realized noise rate. Validation:
    a share of the training images (``val_fraction``), noisy like them. Decoding: ``Resize(256)``, crops of 224,
    ImageNet statistics.
    """

    data_name, title, source = "food101n", "Food-101N", FOOD101N_SOURCE
    num_classes = 101
    known_counts = {"train": 310_009, "test": 25_250}  # noqa: RUF012  # the Food-101N page; Food-101: 250 per class

    def read_lists(self, root: Path) -> dict[str, ImageList]:
        lists = read_food101n(root)
        verified = lists["train"].verified
        n_verified = int((verified >= 0).sum())
        expected = self.expected_counts.get("verified", 52_868 + 4_741)  # the Food-101N page: train + val flags
        if self.strict and n_verified != expected:
            raise InputError(f"Food-101N: verified_train.tsv and verified_val.tsv flag {n_verified} of the listed "
                             f"images; the full release flags {expected} (set strict: false to use it)")  # fmt: skip
        return lists
