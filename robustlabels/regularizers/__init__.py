"""Additive regularizers. Importing this package registers every regularizer in ``REGULARIZERS``."""

from robustlabels.regularizers.base import REGULARIZERS, Regularizer

__all__ = ["REGULARIZERS", "Regularizer"]
