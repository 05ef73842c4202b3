"""Named image datasets as numpy arrays: :func:`load_arrays` and the roots it searches.

Known names (:data:`DATASETS`): ``digits``, ``mnist``, ``fashion_mnist``, ``cifar10``, ``cifar100``.
Splits: ``train`` and ``test``. Nothing is ever downloaded.

Where the files are looked for when ``root`` is not given (first root that holds the split wins, so the
user's own copy always wins over a system copy):

1. ``$ROBUSTLABELS_DATA/<name>`` when the environment variable ``ROBUSTLABELS_DATA`` is set;
2. ``./data/<name>`` (relative to the current working directory);
3. known system places:

   * ``fashion_mnist``: ``/usr/share/datasets/fashion-mnist`` (Debian/Ubuntu package
     ``dataset-fashion-mnist``, IDX ``.gz`` files);
   * ``mnist``: ``../shared/data/mnist`` (``mnist_test.npz`` only), relative to the working directory;
   * ``cifar10``: ``../shared/data/cifar10_jpeg`` (lossy JPEG copies), relative to the working directory.

Inside each root the usual upstream layouts are accepted (see :mod:`robustlabels.data.readers`), including a
torchvision root: ``MNIST/raw``, ``FashionMNIST/raw``, ``cifar-10-batches-py``, ``cifar-100-python``.
An explicit ``root`` is the only place searched.

``digits`` is scikit-learn's bundled 8x8 digits (1,797 images, no files needed). It has no official split,
so a deterministic stratified 80/20 train/test split is made: within each class, a permutation drawn from
``numpy.random.default_rng(0)`` puts the first ``round(0.2 * n_class)`` images in "test"; both splits keep
the original order.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from robustlabels.data import readers
from robustlabels.errors import InputError

DATASETS = ("digits", "mnist", "fashion_mnist", "cifar10", "cifar100")
SPLITS = readers.SPLITS
ENV_VAR = "ROBUSTLABELS_DATA"
DIGITS_SEED = 0
DIGITS_TEST_FRACTION = 0.2
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
DIGIT_CLASSES = tuple(str(d) for d in range(10))
HOW_TO_GET = {
    "mnist": "put train-/t10k-{images-idx3,labels-idx1}-ubyte[.gz] (or a torchvision MNIST/raw) there",
    "fashion_mnist": "apt-get install dataset-fashion-mnist, or put the Fashion-MNIST IDX .gz files there",
    "cifar10": "extract cifar-10-python.tar.gz (the cifar-10-batches-py folder) there",
    "cifar100": "extract cifar-100-python.tar.gz (the cifar-100-python folder) there",
}


@dataclass(frozen=True)
class DatasetArrays:
    """One split of a dataset, in memory.

    Attributes:
        inputs: uint8 images, ``(N, H, W)`` (grey) or ``(N, H, W, 3)`` (RGB, HWC).
        labels: ``(N,)`` int64 labels as shipped (the observed, possibly noisy ones).
        num_classes: number of classes ``C``; ``labels`` lie in ``[0, C)``.
        class_names: ``C`` class names.
        source: where the arrays were read from (a folder, a file, or ``sklearn.datasets.load_digits``).
        clean_labels: ``(N,)`` int64 true labels when the dataset ships real noisy labels, else ``None``.
    """

    inputs: np.ndarray
    labels: np.ndarray
    num_classes: int
    class_names: tuple[str, ...]
    source: str
    clean_labels: np.ndarray | None = None


def _check_name(name: str) -> str:
    if name not in DATASETS:
        raise InputError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    return name


def default_roots(name: str) -> list[Path]:
    """The folders searched for ``name`` when no ``root`` is given, in order (see the module docstring).

    Args:
        name: one of :data:`DATASETS`.

    Returns:
        Absolute paths; they need not exist. Empty for ``digits`` (bundled with scikit-learn).
    """
    _check_name(name)
    if name == "digits":
        return []
    roots: list[Path] = []
    env = os.environ.get(ENV_VAR)
    if env:
        roots.append(Path(env).expanduser().absolute() / name)
    cwd = Path.cwd()
    roots.append(cwd / "data" / name)
    system = {
        "fashion_mnist": Path("/usr/share/datasets/fashion-mnist"),
        "mnist": cwd.parent / "shared" / "data" / "mnist",
        "cifar10": cwd.parent / "shared" / "data" / "cifar10_jpeg",
    }
    if name in system:
        roots.append(system[name])
    return roots


def _find(name: str, root: Path, split: str) -> Any:
    """The files of ``split`` under ``root`` (``None`` when absent), for the file-based datasets."""
    if name == "mnist":
        return readers.find_mnist_files(root, split, prefix_dirs=("MNIST",), npz_prefix="mnist")
    if name == "fashion_mnist":
        return readers.find_mnist_files(
            root, split, prefix_dirs=("FashionMNIST",), npz_prefix="fashion_mnist"
        )
    if name == "cifar10":
        return readers.find_cifar10_files(root, split)
    return readers.find_cifar100_files(root, split)


def _read_mnist(root: Path, split: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    images, labels = readers.read_mnist_like(root, split, folder_names=("MNIST",), npz_prefix="mnist")
    return images, labels, DIGIT_CLASSES


def _read_fashion(root: Path, split: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    images, labels = readers.read_mnist_like(
        root, split, folder_names=("FashionMNIST",), npz_prefix="fashion_mnist"
    )
    return images, labels, FASHION_MNIST_CLASSES


def _read_cifar10(root: Path, split: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    images, labels, names = readers.read_cifar10(root, split)
    return images, labels, tuple(names)


def _read_cifar100(root: Path, split: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    images, fine, _coarse, names = readers.read_cifar100(root, split)
    return images, fine, tuple(names)


_READERS: dict[str, Callable[[Path, str], tuple[np.ndarray, np.ndarray, tuple[str, ...]]]] = {
    "mnist": _read_mnist,
    "fashion_mnist": _read_fashion,
    "cifar10": _read_cifar10,
    "cifar100": _read_cifar100,
}


def _digits_split(labels: np.ndarray, split: str) -> np.ndarray:
    """Sorted indices of ``split`` in the deterministic stratified 80/20 digits split (module docstring)."""
    rng = np.random.default_rng(DIGITS_SEED)
    test = np.zeros(len(labels), bool)
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        picked = rng.permutation(members)[: round(DIGITS_TEST_FRACTION * len(members))]
        test[picked] = True
    return np.flatnonzero(test if split == "test" else ~test)


def _load_digits(split: str) -> DatasetArrays:
    from sklearn.datasets import load_digits  # bundled with scikit-learn: no download

    bunch = load_digits()
    labels = np.asarray(bunch.target, np.int64)
    # Pixel values are 0..16; x16 spreads them over 0..256, clipped to the uint8 range.
    images = np.clip(np.asarray(bunch.images) * 16, 0, 255).astype(np.uint8)
    keep = _digits_split(labels, split)
    return DatasetArrays(
        inputs=images[keep],
        labels=labels[keep],
        num_classes=10,
        class_names=DIGIT_CLASSES,
        source="sklearn.datasets.load_digits",
    )


def _not_found(name: str, split: str, searched: list[Path]) -> InputError:
    places = ", ".join(str(p) for p in searched) or "(none)"
    return InputError(
        f"dataset {name!r} split {split!r} not found; searched: {places}; "
        f"to get it: {HOW_TO_GET[name]} (or set {ENV_VAR}=<dir> holding <dir>/{name}, or pass root=)"
    )


def locate(name: str, split: str, root: str | Path | None = None) -> tuple[Path, Any] | InputError:
    """``(root, files)`` of ``split`` in the first folder holding it, else the :class:`InputError` that
    :func:`load_arrays` would raise (naming the places searched and how to get the files). ``digits`` is bundled."""
    _check_name(name)
    readers.check_split(split)
    if name == "digits":
        return Path(), None
    searched = [Path(root).expanduser()] if root is not None else default_roots(name)
    for candidate in searched:
        found = _find(name, candidate, split) if candidate.is_dir() else None
        if found is not None:
            return candidate, found
    return _not_found(name, split, searched)


def load_arrays(name: str, *, split: str = "train", root: str | Path | None = None) -> DatasetArrays:
    """Load one split of a known dataset into numpy arrays, from local files only.

    Args:
        name: one of :data:`DATASETS`.
        split: "train" or "test".
        root: a folder holding the dataset in an upstream layout (or a torchvision root); when ``None``
            the folders of :func:`default_roots` are searched in order. Ignored for ``digits``.

    Returns:
        A :class:`DatasetArrays`; ``inputs`` uint8 ``(N, H, W)`` or ``(N, H, W, 3)``, ``labels`` int64.

    Raises:
        InputError: unknown name or split; the split found nowhere (the message names the places searched
            and how to get the files); malformed files.
    """
    if name == "digits":
        return _load_digits(readers.check_split(split))
    located = locate(name, split, root)
    if isinstance(located, InputError):
        raise located
    folder, found = located
    images, labels, names = _READERS[name](folder, split)
    return _finish(images, labels, names, str(found[0] if len(found) == 1 else found[0].parent))


def _finish(images: np.ndarray, labels: np.ndarray, names: tuple[str, ...], source: str) -> DatasetArrays:
    if labels.size and labels.max() >= len(names):
        raise InputError(f"{source}: label {int(labels.max())} out of range for {len(names)} classes")
    return DatasetArrays(
        inputs=images, labels=labels, num_classes=len(names), class_names=names, source=source
    )
