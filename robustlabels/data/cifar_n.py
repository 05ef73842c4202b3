"""CIFAR-10N and CIFAR-100N: the CIFAR training images with real human labels, on pixels (in memory, like
:class:`~robustlabels.data.images.CIFAR10DataModule`). The original CIFAR labels are the true labels.

Reference: Wei et al., "Learning with Noisy Labels Revisited: A Study Using Real-World Human Annotations", ICLR 2022
(github.com/UCSC-REAL/cifar-10-100n: ``CIFAR-10_human.pt`` / ``CIFAR-100_human.pt``, dicts of ``(50000,)`` label
arrays in python-batch order). Frozen-feature runs on the same labels: ``ImageFeaturesDataModule(labels=...)``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import numpy as np

from robustlabels.data.catalog import locate
from robustlabels.data.datamodule import Augment
from robustlabels.data.images import CatalogDataModule
from robustlabels.data.readers import read_cifar100, read_cifar_n
from robustlabels.errors import InputError, check_choice

CIFAR10N_KEYS = {"aggre": "aggre_label", "worst": "worse_label", "rand1": "random_label1", "rand2": "random_label2",
                 "rand3": "random_label3", "clean": "clean_label"}  # fmt: skip
CIFAR100N_KEYS = {"fine": ("noisy_label", "clean_label"), "coarse": ("noisy_coarse_label", "clean_coarse_label")}
CIFAR_N_SOURCE = "get it from github.com/UCSC-REAL/cifar-10-100n (data/{pt})"


def find_label_file(given: str | None, root: str | None, names: tuple[str, ...], folder: str, pt: str) -> Path:
    """``given``, else the first of ``names`` in ``root``, ``$ROBUSTLABELS_DATA/<folder>``, ``./data/<folder>`` and
    ``../shared/data/cifar_n``; one line naming the places otherwise."""
    if given is not None:
        path = Path(given).expanduser()
        if not path.is_file():
            raise InputError(f"`labels_file` {given!r} not found; {CIFAR_N_SOURCE.format(pt=pt)}")
        return path
    env = os.environ.get("ROBUSTLABELS_DATA")
    places = ([Path(root).expanduser()] if root else []) + ([Path(env).expanduser() / folder] if env else [])
    places += [Path.cwd() / "data" / folder, Path.cwd().parent / "shared" / "data" / "cifar_n"]
    for place in places:
        for name in names:
            if (place / name).is_file():
                return place / name
    raise InputError(f"{' or '.join(names)} not found in {', '.join(map(str, places))}; "
                     f"{CIFAR_N_SOURCE.format(pt=pt)}, or pass labels_file=")  # fmt: skip


def checked_labels(path: Path, key: str, truth: np.ndarray, true_key: str) -> np.ndarray:
    """The ``(50000,)`` labels under ``key``, checked to line up with the images (their count; the file's own copy of
    the CIFAR labels under ``true_key``, when it has one)."""
    labels = read_cifar_n(path, key)
    if len(labels) != len(truth):
        raise InputError(f"{str(path)!r} key {key!r} has {len(labels)} labels but the CIFAR training split has "
                         f"{len(truth)} images")  # fmt: skip
    try:
        reference = read_cifar_n(path, true_key)
    except InputError:
        return labels
    if len(reference) == len(truth) and not np.array_equal(reference, truth):
        raise InputError(f"{str(path)!r}: its {true_key!r} differs from the CIFAR training labels at "
                         f"{int((reference != truth).sum())} images (not in python-batch order?)")  # fmt: skip
    return labels


class CIFAR10NDataModule(CatalogDataModule):
    """CIFAR-10 pixels with one of CIFAR-10N's five human label sets, by name: ``aggre`` (majority vote, 9.0 % wrong),
    ``rand1``, ``rand2``, ``rand3`` (one annotator each, ~17-18 %), ``worst`` (a wrong one when any, 40.2 %); or
    ``clean``. Test: the clean CIFAR-10 test set.

    Args:
        label_set: the label set's name.
        labels_file: ``CIFAR-10_human.pt`` or ``cifar10n_labels.npz`` (default: searched in ``root``, ``data/cifar10n``,
            ``../shared/data/cifar_n``).
        root: the CIFAR-10 images (``cifar-10-batches-py``), as for :class:`CIFAR10DataModule`.
    """

    dataset_name, num_classes, input_shape = "cifar10", 10, (3, 32, 32)
    default_augment: Augment = "crop_flip"

    def __init__(self, *, label_set: Literal["aggre", "worst", "rand1", "rand2", "rand3", "clean"] = "worst",
                 labels_file: str | None = None, **kwargs: Any) -> None:  # fmt: skip
        check_choice("label_set", label_set, tuple(CIFAR10N_KEYS))
        super().__init__(**kwargs)
        self.label_set, self.labels_file = label_set, labels_file

    def load_split(self, split: str) -> tuple[np.ndarray, ...]:  # type: ignore[override]
        images, labels = super().load_split(split)
        if split != "train":
            return images, labels
        path = find_label_file(self.labels_file, self.root, ("CIFAR-10_human.pt", "cifar10n_labels.npz"), "cifar10n",
                               "CIFAR-10_human.pt")  # fmt: skip
        return images, checked_labels(path, CIFAR10N_KEYS[self.label_set], labels, "clean_label"), labels


class CIFAR100NDataModule(CatalogDataModule):
    """CIFAR-100 pixels with CIFAR-100N's human labels (40.2 % wrong): ``label_set: fine`` (100 classes) or ``coarse``
    (the 20 superclasses, with the coarse CIFAR labels as the truth). Test: the clean CIFAR-100 test set.

    Args:
        labels_file: ``CIFAR-100_human.pt`` or ``cifar100n_labels.npz`` (default: searched in ``root``,
            ``data/cifar100n``, ``../shared/data/cifar_n``).
        root: the ``cifar-100-python`` folder or its parent (default: the catalog's search path).
    """

    dataset_name, input_shape = "cifar100", (3, 32, 32)
    default_augment: Augment = "crop_flip"

    def __init__(self, *, label_set: Literal["fine", "coarse"] = "fine", labels_file: str | None = None,
                 **kwargs: Any) -> None:  # fmt: skip
        check_choice("label_set", label_set, tuple(CIFAR100N_KEYS))
        super().__init__(**kwargs)
        self.label_set, self.labels_file = label_set, labels_file
        self.num_classes = 100 if label_set == "fine" else 20

    def load_split(self, split: str) -> tuple[np.ndarray, ...]:  # type: ignore[override]
        located = locate("cifar100", split, self.root)
        if isinstance(located, InputError):
            raise located
        images, fine, coarse, _ = read_cifar100(located[0], split)
        truth = fine if self.label_set == "fine" else coarse
        if split != "train":
            return images, truth
        path = find_label_file(self.labels_file, self.root, ("CIFAR-100_human.pt", "cifar100n_labels.npz"),
                               "cifar100n", "CIFAR-100_human.pt")  # fmt: skip
        noisy_key, true_key = CIFAR100N_KEYS[self.label_set]
        return images, checked_labels(path, noisy_key, truth, true_key), truth
