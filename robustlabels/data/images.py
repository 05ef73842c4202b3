"""Image data modules over the dataset catalog: digits, MNIST, Fashion-MNIST, CIFAR-10, CIFAR-100."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from robustlabels.data.catalog import load_arrays
from robustlabels.data.datamodule import Augment, NoisyLabelDataModule, stratified_split
from robustlabels.errors import InputError


class CatalogDataModule(NoisyLabelDataModule):
    """A data module whose splits come from :func:`robustlabels.data.catalog.load_arrays`.

    Args:
        root: folder holding the dataset in one of its usual layouts (default: the catalog's search path).
    """

    dataset_name: str

    def __init__(self, *, root: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.root = root

    def load_split(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        arrays = load_arrays(self.dataset_name, split=split, root=self.root)
        return arrays.inputs, arrays.labels


class DigitsDataModule(CatalogDataModule):
    """scikit-learn's bundled 8×8 digits (1,797 images): the embedded default, no files needed."""

    dataset_name, num_classes, input_shape = "digits", 10, (1, 8, 8)


class MNISTDataModule(CatalogDataModule):
    """MNIST from the standard IDX files (or torchvision's layout).

    With only ``mnist_test.npz`` available (as in ``../shared/data/mnist``), the 10k test images are split
    80/20 (stratified, seed 0) into a training and a test part, with a warning.
    """

    dataset_name, num_classes, input_shape = "mnist", 10, (1, 28, 28)
    crop_padding = 2

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._carved_test: tuple[np.ndarray, np.ndarray] | None = None

    def load_split(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        if split == "test" and self._carved_test is not None:
            return self._carved_test
        try:
            return super().load_split(split)
        except InputError as missing_train:
            if split == "test":
                raise
            try:
                test = load_arrays("mnist", split="test", root=self.root)
            except InputError:
                raise missing_train from None
        warnings.warn(
            "MNIST training files not found: using 80% of the 10k test set for training", stacklevel=2
        )
        train_pos, test_pos = stratified_split(test.labels, 0.2, seed=0)
        self._carved_test = (test.inputs[test_pos], test.labels[test_pos])
        return test.inputs[train_pos], test.labels[train_pos]


class FashionMNISTDataModule(CatalogDataModule):
    """Fashion-MNIST from IDX files (``apt-get install dataset-fashion-mnist`` or torchvision's layout)."""

    dataset_name, num_classes, input_shape = "fashion_mnist", 10, (1, 28, 28)
    crop_padding = 2


class CIFAR10DataModule(CatalogDataModule):
    """CIFAR-10 from ``cifar-10-batches-py`` or the JPEG npz; random crop (pad 4) + flip by default."""

    dataset_name, num_classes, input_shape = "cifar10", 10, (3, 32, 32)
    default_augment: Augment = "crop_flip"


class CIFAR100DataModule(CatalogDataModule):
    """CIFAR-100 (the 100 fine labels) from ``cifar-100-python``, for synthetic noise as in ELR's and MW-Net's
    CIFAR-100 tables; random crop (pad 4) + flip by default. Human labels: :class:`CIFAR100NDataModule`."""

    dataset_name, num_classes, input_shape = "cifar100", 100, (3, 32, 32)
    default_augment: Augment = "crop_flip"
