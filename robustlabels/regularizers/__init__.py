"""Additive regularizers. Importing this package registers every regularizer in ``REGULARIZERS``."""

from robustlabels.regularizers.base import REGULARIZERS, Regularizer
from robustlabels.regularizers.elr import ELR
from robustlabels.regularizers.neighbor_consistency import NeighborConsistency

__all__ = ["ELR", "REGULARIZERS", "NeighborConsistency", "Regularizer"]
