"""Data modules that yield :class:`~robustlabels.types.Batch`; importing registers them for configs."""

from robustlabels.data.animal10n import Animal10NDataModule
from robustlabels.data.cifar_n import CIFAR10NDataModule, CIFAR100NDataModule
from robustlabels.data.cnwl import MiniImageNetRedDataModule
from robustlabels.data.datamodule import NoisyLabelDataModule
from robustlabels.data.encoded import ImageFeaturesDataModule
from robustlabels.data.images import (
    CIFAR10DataModule,
    CIFAR100DataModule,
    DigitsDataModule,
    FashionMNISTDataModule,
    MNISTDataModule,
)
from robustlabels.data.pairs import HHRLHFDataModule, IMDBPrefDataModule, PairDataModule
from robustlabels.data.synthetic import BlobsDataModule
from robustlabels.data.tables import FeatureTableDataModule, SpamDataModule
from robustlabels.data.text import NoisyAGNewsDataModule
from robustlabels.data.webly import (
    Clothing1MDataModule,
    Food101NDataModule,
    MiniWebVisionDataModule,
    WebVisionDataModule,
)

__all__ = [
    "Animal10NDataModule",
    "BlobsDataModule",
    "CIFAR10DataModule",
    "CIFAR10NDataModule",
    "CIFAR100DataModule",
    "CIFAR100NDataModule",
    "Clothing1MDataModule",
    "DigitsDataModule",
    "FashionMNISTDataModule",
    "FeatureTableDataModule",
    "Food101NDataModule",
    "HHRLHFDataModule",
    "IMDBPrefDataModule",
    "ImageFeaturesDataModule",
    "MNISTDataModule",
    "MiniImageNetRedDataModule",
    "MiniWebVisionDataModule",
    "NoisyAGNewsDataModule",
    "NoisyLabelDataModule",
    "PairDataModule",
    "SpamDataModule",
    "WebVisionDataModule",
]
