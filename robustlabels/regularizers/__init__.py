"""Additive regularizers. Importing this package registers every regularizer in ``REGULARIZERS``."""

from robustlabels.regularizers.base import REGULARIZERS, Regularizer
from robustlabels.regularizers.elr import ELR

__all__ = ["ELR", "REGULARIZERS", "Regularizer"]
