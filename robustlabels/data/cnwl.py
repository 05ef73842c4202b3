"""Red (and Blue) mini-ImageNet of Controlled Noisy Web Labels, read lazily.

Reference: Jiang et al., "Beyond Synthetic Noise: Deep Learning on Controlled Noisy Labels", ICML 2020
(google.github.io/controlled-noisy-web-labels). NCR (Iscen et al., CVPR 2022) reports on Red mini-ImageNet.

What the public sources establish. The release (``dataset_no_images.zip``) holds ``mini-imagenet/class_name.txt``,
``mini-imagenet/split/{red,blue}_noise_nl_{p}`` for ``p`` in 0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8 (lines
``<image name> <label>``; TFDS's ``controlled_noisy_web_labels`` builder reads them the same way), ``split/
clean_validation`` and ``mini-imagenet-annotations.json`` (the web images' URLs). The images are not in the release:
the web images are downloaded from those URLs (``<image/id>.jpg``), the mini-ImageNet ones come from ILSVRC 2012
(named ``<wnid><8-digit index>.jpg``), the validation ones from the ILSVRC 2012 validation set. Where the images then
go is the convention of the DivideMix-derived loaders (FaMUS, PropMix, DSOS), which this module follows:
``all_images/<image name>`` for every training image and ``validation/<label>/<image name>`` for the validation
images, next to ``split/``. Image counts are not checked by default (the release's totals could not be confirmed
from public sources; pass ``expected_counts``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np

from robustlabels.data.lazy import ImageList, LazyImageDataModule, parse_label, read_lines, split_fields
from robustlabels.errors import InputError, check_choice

CNWL_LEVELS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8)
CNWL_SOURCE = ("the split files are google.github.io/controlled-noisy-web-labels' dataset_no_images.zip "
               "(mini-imagenet/split/), the images its annotation URLs and ILSVRC 2012 (all_images/, validation/)")


def read_split_file(path: Path, folder: Path, *, by_label: bool = False) -> ImageList:
    """A CNWL split file's images (lines ``<image name> <label>``) under ``folder`` (``folder/<label>/`` if
    ``by_label``)."""
    files, labels = [], []
    for lineno, line in enumerate(read_lines(path, dataset="mini-ImageNet", source=CNWL_SOURCE), start=1):
        name, label = split_fields(line, path, lineno, 2)
        value = parse_label(label, path, lineno, 100)
        files.append(str(folder / label / name if by_label else folder / name))
        labels.append(value)
    return ImageList.of(files, labels)


def split_folder(root: Path) -> Path:
    """``root/split`` (the images' layout), else ``root/mini-imagenet/split`` (the release unzipped as is)."""
    return root / "split" if (root / "split").is_dir() else root / "mini-imagenet" / "split"


def read_cnwl(root: Path, color: str, level: float) -> dict[str, ImageList]:
    """``{"train": the {color}_noise_nl_{level} list, "test": clean_validation}`` under ``root`` (module doc).

    True labels: a training image also listed in ``{color}_noise_nl_0.0`` (the clean mini-ImageNet images) has that
    label as its true one; a Red image absent from it is a web image whose label was judged wrong (``verified 0``,
    true class unknown). Blue images keep unknown true labels unless the 0.0 list names them.
    """
    splits, images = split_folder(root), root / "all_images"
    train = read_split_file(splits / f"{color}_noise_nl_{level}", images)
    reference = splits / f"{color}_noise_nl_0.0"
    truth = np.full(len(train), -1, np.int64)
    if reference.is_file():
        clean = read_split_file(reference, images)
        table = dict(zip(clean.files.tolist(), clean.labels.tolist(), strict=True))
        truth = np.array([table.get(f, -1) for f in train.files.tolist()], np.int64)
    verified = np.where(truth >= 0, 1, 0 if color == "red" and reference.is_file() else -1)
    test = read_split_file(splits / "clean_validation", root / "validation", by_label=True)
    return {"train": ImageList.of(list(train.files), train.labels, true=truth, verified=verified),
            "test": ImageList.clean(list(test.files), test.labels)}  # fmt: skip


class MiniImageNetRedDataModule(LazyImageDataModule):
    """Red mini-ImageNet (``color: red``, real web label noise) or Blue (``blue``, synthetic) of Controlled Noisy Web
    Labels at one noise level, tested on the clean validation set (:func:`read_cnwl`; module doc for the layout).

    Args:
        noise_level: one of 0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8 (the split file's suffix).
        color: ``red`` or ``blue``.
        image_size: 32 by default (the FaMUS-style loaders' ``training_s32`` / ``validation_s32``); 84 is the size the
            release's TFDS builder resizes to.
    """

    data_name, title, source = "mini_imagenet_red", "mini-ImageNet (CNWL)", CNWL_SOURCE
    num_classes = 100
    default_image_size = default_decode_size = 32

    def __init__(self, *, noise_level: float = 0.4, color: Literal["red", "blue"] = "red", **kwargs: Any) -> None:
        check_choice("color", color, ("red", "blue"))
        if noise_level not in CNWL_LEVELS:
            raise InputError(f"`noise_level` must be one of {', '.join(map(str, CNWL_LEVELS))}; got {noise_level!r}")
        super().__init__(**kwargs)
        self.noise_level, self.color = noise_level, color

    def read_lists(self, root: Path) -> dict[str, ImageList]:
        return read_cnwl(root, self.color, self.noise_level)
