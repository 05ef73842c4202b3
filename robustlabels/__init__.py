"""robustlabels: learn from data whose labels are partly wrong, and find those wrong labels.

``import robustlabels`` stays light: the names below load their modules (Lightning, timm, ...) on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "RobustModule": "robustlabels.module",
    "Batch": "robustlabels.types",
    "Strategy": "robustlabels.strategies",
    "CrossEntropy": "robustlabels.strategies",
    "Oracle": "robustlabels.strategies",
    "STRATEGIES": "robustlabels.strategies",
    "BlobsDataModule": "robustlabels.data",
    "DigitsDataModule": "robustlabels.data",
    "MNISTDataModule": "robustlabels.data",
    "FashionMNISTDataModule": "robustlabels.data",
    "CIFAR10DataModule": "robustlabels.data",
    "SymmetricNoise": "robustlabels.noise",
    "PairFlipNoise": "robustlabels.noise",
    "LabelsFile": "robustlabels.noise",
    "create_backbone": "robustlabels.nn.backbones",
}
__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'robustlabels' has no attribute {name!r}")
