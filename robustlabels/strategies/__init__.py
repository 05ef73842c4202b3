"""Training strategies. Importing this package registers every strategy in ``STRATEGIES``."""

from robustlabels.strategies.base import STRATEGIES, Strategy
from robustlabels.strategies.standard import CrossEntropy, Oracle

__all__ = ["STRATEGIES", "CrossEntropy", "Oracle", "Strategy"]
