"""Text data modules: texts become cached sentence embeddings, served as float ``(N, 384)`` features.

:class:`NoisyAGNewsDataModule` serves NoisyAG-News: 10,000 AG-News texts whose given labels are the human
annotators' majority vote (19.75 % wrong), with the true labels kept for measuring, and the clean 7,600-text
AG-News test set. Files (``root``, else the first of ``$ROBUSTLABELS_DATA/noisy_agnews``,
``./data/noisy_agnews``, ``../shared/data/noisy_agnews`` that holds the split):

* train: ``noisyagnews_val10k_mid.csv[.gz]`` (columns ``label`` = noisy, ``gt`` = true, ``text``);
* test: ``agnews_test7600_clean.csv[.gz]`` (same columns; ``gt`` is used).

Embeddings need the ``text`` extra (``pip install 'robustlabels[text]'``) the first time; afterwards they are
read from the cache (see :func:`robustlabels.features.text.encode_texts`). ``fake=True`` needs neither.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from robustlabels.data.catalog import ENV_VAR
from robustlabels.data.datamodule import NoisyLabelDataModule
from robustlabels.data.readers import check_split, read_noisy_agnews
from robustlabels.errors import InputError
from robustlabels.features import text as text_features

AGNEWS_DIR = "noisy_agnews"
AGNEWS_FILES = {"train": "noisyagnews_val10k_mid.csv", "test": "agnews_test7600_clean.csv"}
AGNEWS_CLASSES = ("World", "Sports", "Business", "Sci/Tech")


class TextEmbeddingDataModule(NoisyLabelDataModule):
    """Base for text datasets: subclasses implement :meth:`load_texts`; inputs are cached embeddings.

    Args:
        cache_dir: folder of the embedding cache (default: ``$ROBUSTLABELS_CACHE/embeddings`` or
            ``~/.cache/robustlabels/embeddings``).
        **kwargs: see :class:`~robustlabels.data.datamodule.NoisyLabelDataModule`.
    """

    input_shape: tuple[int, ...] = (text_features.EMBEDDING_DIM,)
    encoder_model: str = text_features.DEFAULT_MODEL
    encode_batch_size: int = 256

    def __init__(self, *, cache_dir: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.cache_dir = cache_dir
        self.texts: dict[str, list[str]] = {}  # filled by load_split, e.g. to show the texts of suspect labels

    def load_texts(self, split: str) -> tuple[Any, ...]:
        """Return ``(texts, labels)`` or ``(texts, labels, true_labels)`` for ``split``."""
        raise NotImplementedError

    def load_split(self, split: str) -> tuple[np.ndarray, ...]:  # type: ignore[override]
        texts, *labels = self.load_texts(check_split(split))
        self.texts[split] = list(texts)
        embeddings = text_features.encode_texts(
            texts, batch_size=self.encode_batch_size, cache_dir=self.cache_dir, model=self.encoder_model
        )
        return (embeddings, *labels)


def agnews_roots(root: str | None = None) -> list[Path]:
    """Folders searched for the NoisyAG-News files: ``root`` alone when given, else the default places."""
    if root is not None:
        return [Path(root).expanduser()]
    roots: list[Path] = []
    env = os.environ.get(ENV_VAR)
    if env:
        roots.append(Path(env).expanduser().absolute() / AGNEWS_DIR)
    cwd = Path.cwd()
    return [*roots, cwd / "data" / AGNEWS_DIR, cwd.parent / "shared" / "data" / AGNEWS_DIR]


def find_agnews_file(split: str, root: str | None = None) -> Path:
    """The CSV of ``split`` (``.csv.gz`` preferred over ``.csv``) in the first root holding it.

    Raises:
        InputError: one line naming the file and every folder searched.
    """
    name = AGNEWS_FILES[check_split(split)]
    roots = agnews_roots(root)
    for folder in roots:
        for candidate in (folder / f"{name}.gz", folder / name):
            if candidate.is_file():
                return candidate
    raise InputError(f"NoisyAG-News {split} file {name}[.gz] not found; searched: {', '.join(str(r) for r in roots)}")


class NoisyAGNewsDataModule(TextEmbeddingDataModule):
    """NoisyAG-News (real human label noise, 4 classes) as all-MiniLM-L6-v2 embeddings.

    Train: the 10k texts with their majority-vote labels (true labels kept as ``clean_targets``); test: the
    clean 7.6k AG-News test set. Leave ``noise`` unset to train on the real noise (a synthetic noise model
    would be applied on top of the human labels).

    Args:
        root: folder holding the two CSVs; the only place searched when given (see :func:`agnews_roots`).
        cache_dir: folder of the embedding cache.
        **kwargs: see :class:`~robustlabels.data.datamodule.NoisyLabelDataModule`.
    """

    num_classes = 4
    class_names = AGNEWS_CLASSES

    def __init__(self, root: str | None = None, cache_dir: str | None = None, **kwargs: Any) -> None:
        super().__init__(cache_dir=cache_dir, **kwargs)
        self.root = root

    def load_texts(self, split: str) -> tuple[Any, ...]:
        path = find_agnews_file(split, self.root)
        texts, noisy, true = read_noisy_agnews(path)
        labels = np.concatenate([noisy, true])
        if labels.size and labels.max() >= self.num_classes:
            raise InputError(f"{str(path)!r}: label {int(labels.max())} out of range for {self.num_classes} classes")
        return (texts, noisy, true) if split == "train" else (texts, true)
