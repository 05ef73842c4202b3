"""Training strategies. Importing this package registers every strategy in ``STRATEGIES``."""

from robustlabels.strategies.adaptive_k import MKLSGD, AdaptiveK, TrimmedLoss
from robustlabels.strategies.base import STRATEGIES, Strategy
from robustlabels.strategies.co_teaching import CoTeaching
from robustlabels.strategies.crm import CollaborativeRewardFilter
from robustlabels.strategies.elr_plus import ELRPlus
from robustlabels.strategies.meta_weight_net import L2RW, MetaWeightNet
from robustlabels.strategies.nested_co_teaching import NestedCoTeaching
from robustlabels.strategies.pairwise import BradleyTerry, ConservativeBradleyTerry, RewardEnsemble
from robustlabels.strategies.robust_losses import GCE, SCE
from robustlabels.strategies.standard import CrossEntropy, Oracle
from robustlabels.strategies.storm import MetaLossRescaling

__all__ = [
    "GCE",
    "L2RW",
    "MKLSGD",
    "SCE",
    "STRATEGIES",
    "AdaptiveK",
    "BradleyTerry",
    "CoTeaching",
    "CollaborativeRewardFilter",
    "ConservativeBradleyTerry",
    "CrossEntropy",
    "ELRPlus",
    "MetaLossRescaling",
    "MetaWeightNet",
    "NestedCoTeaching",
    "Oracle",
    "RewardEnsemble",
    "Strategy",
    "TrimmedLoss",
]
