"""Data modules that yield :class:`~robustlabels.types.Batch`; importing registers them for configs."""

from robustlabels.data.datamodule import NoisyLabelDataModule
from robustlabels.data.encoded import ImageFeaturesDataModule
from robustlabels.data.images import (
    CIFAR10DataModule,
    DigitsDataModule,
    FashionMNISTDataModule,
    MNISTDataModule,
)
from robustlabels.data.pairs import HHRLHFDataModule, IMDBPrefDataModule, PairDataModule
from robustlabels.data.synthetic import BlobsDataModule
from robustlabels.data.tables import FeatureTableDataModule, SpamDataModule
from robustlabels.data.text import NoisyAGNewsDataModule

__all__ = [
    "BlobsDataModule",
    "CIFAR10DataModule",
    "DigitsDataModule",
    "FashionMNISTDataModule",
    "FeatureTableDataModule",
    "HHRLHFDataModule",
    "IMDBPrefDataModule",
    "ImageFeaturesDataModule",
    "MNISTDataModule",
    "NoisyAGNewsDataModule",
    "NoisyLabelDataModule",
    "PairDataModule",
    "SpamDataModule",
]
