"""Images served as frozen pretrained features: a small head trains on them through the normal ``fit``.

This is what a practitioner with a pretrained backbone and noisy labels does first, and the regime of noisy
black-box tuning (Chen et al., "Understanding and Mitigating the Label Noise in Pre-training on Downstream
Tasks", ICLR 2024, NMTune). Every strategy runs unchanged: the inputs are float ``(N, D)`` features instead of
images, so the backbone is an MLP (``backbone: mlp``).

Where the images come from (exactly one):

* ``dataset``: a catalog dataset (``cifar10``, ``cifar100``, ``fashion_mnist``, ``mnist``, ``digits``) read as
  the image data modules read it (``root``, else the catalog's search path); its test split is the test set;
* ``images``: the user's own images, a folder with one sub-folder per class (``<class>/<image>.png``) or an
  ``.npz`` with ``images`` and ``labels`` (optional ``class_names``); ``test_images`` (same kinds) is the test set,
  else a stratified ``test_fraction`` of ``images`` (seeded by ``split_seed``) is held out with its labels as given.

``labels`` replaces the training labels by a file: ``.npy`` / ``.csv``, or a key of an ``.npz`` / CIFAR-N ``.pt``
written ``FILE:KEY`` (``../shared/data/cifar_n/cifar10n_labels.npz:worse_label``). The labels the images came with
are then the true labels (``clean_targets``; for CIFAR-N the original CIFAR labels). The features are computed once
by :func:`robustlabels.features.image.encode_images` (the ``images`` extra) and read from its cache afterwards.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from robustlabels.data.catalog import ENV_VAR
from robustlabels.data.datamodule import FeatureDataModule, stratified_split
from robustlabels.data.read_once import read_once
from robustlabels.data.readers import read_image_folder, read_image_npz, read_label_spec
from robustlabels.errors import InputError, check_file, check_interval
from robustlabels.io import sha256_of_file


def read_images(path: str, *, what: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``(images (N, H, W[, 3]) uint8, labels (N,), class names)`` from an image folder or ``.npz`` (an ``.npz``
    without ``class_names`` has classes ``0 .. max label``)."""
    p = check_file(path, what=what)
    if not p.is_dir() and p.suffix.lower() != ".npz":
        raise InputError(f"{what} {path!r}: expected a folder of class sub-folders or an .npz with images and labels")
    images, labels, names = read_image_folder(p, what=what) if p.is_dir() else read_image_npz(p, what=what)
    return images, labels, names or [str(c) for c in range(int(labels.max(initial=1)) + 1)]


class ImageFeaturesDataModule(FeatureDataModule):
    """Frozen pretrained image features ``(N, D)`` with their (noisy) labels (module docstring).

    Args:
        dataset: a catalog dataset name; or ``images``: a folder / ``.npz`` of the user's images.
        root: folder holding ``dataset`` in an upstream layout.
        labels: training labels to learn from instead of the shipped ones (``FILE`` or ``FILE:KEY``).
        test_images: the test set for ``images`` (default: ``test_fraction`` of ``images``, held out).
        test_fraction: share of ``images`` held out as the test set when ``test_images`` is not given.
        encoder: ``efficientnet_lite0`` or ``timm:NAME``; encoder_weights: a local weights file.
        resolution: image side fed to the encoder (128 px); cache_dir: the embedding cache folder.
        **kwargs: see :class:`~robustlabels.data.datamodule.NoisyLabelDataModule`.
    """

    fake_shape: tuple[int, int] = (1280, 10)  # (D, C) served with fake=True: EfficientNet-Lite0's width, ten classes

    def __init__(
        self,
        *,
        dataset: str | None = None,
        images: str | None = None,
        root: str | None = None,
        labels: str | None = None,
        test_images: str | None = None,
        test_fraction: float = 0.2,
        encoder: str = "efficientnet_lite0",
        encoder_weights: str | None = None,
        resolution: int = 128,
        cache_dir: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if (dataset is None) == (images is None):
            raise InputError(f"{type(self).__name__}: give exactly one of `dataset` and `images`; got "
                             f"dataset={dataset!r}, images={images!r}")  # fmt: skip
        if test_images is not None and images is None:
            raise InputError(f"`test_images` {test_images!r} goes with `images`; `dataset` {dataset!r} has its own "
                             "test split")  # fmt: skip
        check_interval("test_fraction", test_fraction, low=0.0, high=1.0, closed="neither")
        self.dataset, self.images, self.root, self.labels = dataset, images, root, labels
        self.test_images, self.test_fraction = test_images, test_fraction
        self.encoder, self.encoder_weights, self.resolution = encoder, encoder_weights, resolution
        self.cache_dir = cache_dir
        self.class_names: list[str] = []

    # ---- reading and encoding, once ---------------------------------------------------------------
    def encode(self, images: np.ndarray) -> np.ndarray:
        """``(N, D)`` features of ``(N, H, W[, 3])`` uint8 images (cached by content)."""
        from robustlabels.features.image import encode_images

        return encode_images(images, encoder=self.encoder, weights=self.encoder_weights, resolution=self.resolution,
                             cache_dir=self.cache_dir)  # fmt: skip

    def catalog_split(self, split: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """``(features, labels, class names)`` of a catalog split, cached under the digest of its source files and
        the encoder, so that a later run neither decodes an image nor encodes one (decoding CIFAR-10's 60k JPEGs
        alone took 25-45 s of every suite cell on 2 cores)."""
        from robustlabels.data.catalog import load_arrays, locate
        from robustlabels.features.cache import cached_npz, default_cache_dir
        from robustlabels.features.image import encoder_fingerprint, resolve_encoder

        assert self.dataset is not None
        located = locate(self.dataset, split, self.root)
        if isinstance(located, InputError):
            raise located

        def compute() -> dict[str, np.ndarray]:
            arrays = load_arrays(self.dataset or "", split=split, root=self.root)
            return {"features": self.encode(arrays.inputs), "labels": arrays.labels,
                    "class_names": np.array(arrays.class_names)}  # fmt: skip

        files = located[1] if isinstance(located[1], (tuple, list)) else ()  # digits: bundled, no files
        spec = resolve_encoder(self.encoder, self.encoder_weights)

        def read() -> dict[str, np.ndarray]:
            encoder = encoder_fingerprint(spec, self.resolution)
            digest = hashlib.sha256(f"robustlabels-catalog-features/{self.dataset}/{split}\0{encoder}".encode())
            for file in files:
                digest.update(sha256_of_file(file).encode())
            folder = Path(self.cache_dir).expanduser() if self.cache_dir is not None else default_cache_dir()
            return cached_npz(folder, digest.hexdigest(), compute, what=f"{self.dataset} {split} features")

        weights = [Path(spec.weights)] if Path(spec.weights).is_file() else []
        key = ("catalog features", self.dataset, split, self.root, spec, self.resolution, self.cache_dir,
               os.getcwd(), os.environ.get(ENV_VAR))  # fmt: skip
        cached = read_once(key, read, lambda _: [*map(Path, files), *weights])  # a suite worker reads them once
        return (cached["features"].copy(), cached["labels"].astype(np.int64),
                [str(n) for n in cached["class_names"]])  # fmt: skip

    def read_splits(self) -> tuple[dict[str, tuple[np.ndarray, ...]], int]:
        """``{"train": (features, labels[, true]), "test": (features, labels)}`` and ``C``.

        ``labels`` holds one label per training image as read (before a held-out test part is carved off).
        """
        if self.dataset is not None:
            features, labels, names = self.catalog_split("train")
            test_features, test_labels, _ = self.catalog_split("test")
        else:
            assert self.images is not None
            images, labels, names = read_images(self.images, what="`images`")
            features = self.encode(images)
            if self.test_images is not None:
                test_images, test_labels, test_names = read_images(self.test_images, what="`test_images`")
                if test_names != names:
                    raise InputError(f"`test_images` {self.test_images!r} has classes {test_names}; `images` "
                                     f"{self.images!r} has {names}")  # fmt: skip
                test_features = self.encode(test_images)
        # the labels the images came with are the true ones when a labels file gives those to learn from
        train = (features, labels) if self.labels is None else (features, self.read_given_labels(len(labels)), labels)
        if self.images is not None and self.test_images is None:
            kept, held = stratified_split(labels, self.test_fraction, seed=self.split_seed + 2)
            train, (test_features, test_labels) = tuple(a[kept] for a in train), (features[held], labels[held])
        self.class_names = names
        for split, (_, *columns) in (("train", train), ("test", (test_features, test_labels))):
            for name, values in zip(("labels", "true labels"), columns, strict=False):
                if values.size and (values.min() < 0 or values.max() >= len(names)):
                    raise InputError(f"{split} {name}: value {int(values.max())} outside [0, {len(names)}) "
                                     f"(from {self.labels or self.images or self.dataset!r})")  # fmt: skip
        return {"train": train, "test": (test_features, test_labels)}, len(names)

    def read_given_labels(self, n: int) -> np.ndarray:
        """The ``labels`` file's ``(n,)`` labels (one line naming the file when the count differs)."""
        assert self.labels is not None
        given, file, _ = read_label_spec(self.labels, what="`labels`")
        if len(given) != n:
            raise InputError(f"`labels` {file!r} has {len(given)} labels but the training images number {n}")
        return given
