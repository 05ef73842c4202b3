"""Backbones by name. Every backbone exposes ``forward_features`` and ``forward_head`` (timm's surface).

``forward_features(x)`` maps ``(B, ...)`` inputs to ``(B, D)`` pooled pre-logit features, and
``forward_head(f)`` maps them to ``(B, C)`` logits. Neighbour consistency, nested dropout and the audit
all work on the features, so every backbone must expose them the same way.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustlabels.errors import InputError
from robustlabels.registry import Registry


class Backbone(nn.Module):
    """Base class: a feature extractor and a linear head. Subclasses set ``feature_dim``."""

    feature_dim: int

    def forward_features(self, x: Tensor) -> Tensor:  # (B, ...) -> (B, D)
        raise NotImplementedError

    def forward_head(self, features: Tensor) -> Tensor:  # (B, D) -> (B, C)
        return self.head(features)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))

    def linear_head(self) -> nn.Linear:
        """The final ``nn.Linear`` (nested dropout reads its ``(C, D)`` weight to score every prefix)."""
        return _check_linear(self.head, type(self).__name__)

    def remove_head_bias(self) -> None:
        """Re-create the linear head without a bias (nested dropout: a bias would leak at small ``k``)."""
        self.head = _without_bias(self.linear_head())


def _check_linear(head: nn.Module, owner: str) -> nn.Linear:
    if not isinstance(head, nn.Linear):
        raise InputError(f"nested dropout needs a linear head; the head of {owner} is a {type(head).__name__}")
    return head


def _without_bias(head: nn.Linear) -> nn.Linear:
    """A freshly initialised bias-free ``nn.Linear`` of the same shape (``head`` itself if it has no bias)."""
    if head.bias is None:
        return head
    w = head.weight
    return nn.Linear(head.in_features, head.out_features, bias=False, device=w.device, dtype=w.dtype)


BackboneFactory = Callable[..., Backbone]
BACKBONES: Registry[BackboneFactory] = Registry("backbone")


@BACKBONES.register("mlp")
class MLP(Backbone):
    """Flatten, then ``depth`` hidden layers of ``hidden`` units with ReLU (and optional dropout)."""

    def __init__(
        self,
        *,
        input_shape: Sequence[int],
        num_classes: int,
        hidden: int = 256,
        depth: int = 2,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(input_shape)
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.ReLU(inplace=True)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = hidden
        self.body = nn.Sequential(*layers)
        self.feature_dim = width
        self.head = nn.Linear(width, num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.body(x)


@BACKBONES.register("small_cnn")
class SmallCNN(Backbone):
    """The classic two-conv MNIST network: 5×5 conv, 2×2 max-pool, ReLU, twice; then a hidden layer.

    Sized for 28×28 inputs (the 4×4 adaptive pool is then the identity); other sizes are pooled to 4×4.
    Cheap (about 1.2 MMAC per 28×28 image) yet with enough parameters in its hidden layer to memorize noisy
    labels, which is what a noisy-label benchmark needs to show. The Adaptive-k notebook uses this shape.
    """

    def __init__(
        self, *, input_shape: Sequence[int], num_classes: int, width: int = 16, hidden: int = 256
    ) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(input_shape[0], width, 5), nn.MaxPool2d(2), nn.ReLU(inplace=True),
            nn.Conv2d(width, 2 * width, 5), nn.MaxPool2d(2), nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(2 * width * 16, hidden), nn.ReLU(inplace=True),
        )  # fmt: skip
        self.feature_dim = hidden
        self.head = nn.Linear(hidden, num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.body(x)


def _conv_bn_lrelu(in_channels: int, out_channels: int, padding: int) -> list[nn.Module]:
    return [nn.Conv2d(in_channels, out_channels, 3, padding=padding), nn.BatchNorm2d(out_channels),
            nn.LeakyReLU(0.01, inplace=True)]  # fmt: skip


@BACKBONES.register("cnn9")
class CNN9(Backbone):
    """The 9-layer CNN of Co-teaching (and of Co-teaching+, JoCoR): three blocks of 3×3 convolutions with
    BatchNorm and LeakyReLU(0.01), 128-128-128 → max-pool → 256-256-256 → max-pool → 512-256-128 (unpadded),
    global average pool, a linear head. Features ``D = 128``.

    Dropout2d (p = ``dropout``) follows each max-pool in training mode only; the official code calls
    ``F.dropout2d`` without ``training=...``, so it also drops channels at test time, a bug we do not copy.

    Reference: Han et al., "Co-teaching", NeurIPS 2018, Table 3; code ``bhanML/Co-teaching`` ``model.py``.
    """

    def __init__(self, *, input_shape: Sequence[int], num_classes: int, dropout: float = 0.25) -> None:
        super().__init__()
        channels = input_shape[0]
        self.body = nn.Sequential(
            *_conv_bn_lrelu(channels, 128, 1), *_conv_bn_lrelu(128, 128, 1), *_conv_bn_lrelu(128, 128, 1),
            nn.MaxPool2d(2), nn.Dropout2d(dropout),
            *_conv_bn_lrelu(128, 256, 1), *_conv_bn_lrelu(256, 256, 1), *_conv_bn_lrelu(256, 256, 1),
            nn.MaxPool2d(2), nn.Dropout2d(dropout),
            *_conv_bn_lrelu(256, 512, 0), *_conv_bn_lrelu(512, 256, 0), *_conv_bn_lrelu(256, 128, 0),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )  # fmt: skip
        self.feature_dim = 128
        self.head = nn.Linear(128, num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.body(x)


class _PreActBlock(nn.Module):
    """Pre-activation basic block (He et al., 2016): BN-ReLU-conv twice, identity or 1×1 shortcut."""

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


@BACKBONES.register("preact_resnet18")
class PreActResNet18(Backbone):
    """PreAct ResNet-18 for 32×32 inputs, the CIFAR network of the ELR+ and Co-teaching+ code.

    Reference: He et al., "Identity Mappings in Deep Residual Networks", ECCV 2016.
    """

    def __init__(self, *, input_shape: Sequence[int], num_classes: int, width: int = 64) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(input_shape[0], width, 3, padding=1, bias=False)
        blocks: list[nn.Module] = []
        in_planes = width
        for i, planes in enumerate((width, 2 * width, 4 * width, 8 * width)):
            for j in range(2):
                blocks.append(_PreActBlock(in_planes, planes, stride=2 if (i > 0 and j == 0) else 1))
                in_planes = planes
        self.layers = nn.Sequential(*blocks)
        self.bn = nn.BatchNorm2d(in_planes)
        self.feature_dim = in_planes
        self.head = nn.Linear(in_planes, num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn(self.layers(self.conv1(x))))
        return F.adaptive_avg_pool2d(out, 1).flatten(1)


class TimmBackbone(Backbone):
    """Adapter for any timm model: its pooled pre-logits are our features, its classifier our head."""

    def __init__(
        self, name: str, *, input_shape: Sequence[int], num_classes: int, **kwargs: Any
    ) -> None:
        super().__init__()
        import timm  # lazy: timm import is slow

        if not timm.is_model(name):
            raise InputError(f"unknown backbone {name!r}: not a robustlabels backbone nor a timm model")
        kwargs.setdefault("pretrained", False)  # no downloads at run time
        model: Any = timm.create_model(name, num_classes=num_classes, in_chans=input_shape[0], **kwargs)
        self.model, self.feature_dim = model, model.num_features

    def forward_features(self, x: Tensor) -> Tensor:
        return self.model.forward_head(self.model.forward_features(x), pre_logits=True)

    def forward_head(self, features: Tensor) -> Tensor:
        return self.model.get_classifier()(features)

    def linear_head(self) -> nn.Linear:
        return _check_linear(self.model.get_classifier(), f"timm model {type(self.model).__name__}")

    def remove_head_bias(self) -> None:
        old = self.linear_head()
        for name, module in self.model.named_modules():
            if module is old:  # the classifier may sit deep (``head.fc``): replace it on its parent
                parent_name, _, attr = name.rpartition(".")
                setattr(self.model.get_submodule(parent_name), attr, _without_bias(old))
                return


@BACKBONES.register("pairwise")
class PairwiseScorer(Backbone):
    """A reward model for preference pairs: one shared scorer ``r`` on each side of a ``(B, 2, ...)`` pair.

    The two logits are ``(s/2, −s/2)`` with ``s = r(x_0) − r(x_1)``, so ``softmax`` gives ``P(side 0 preferred) =
    σ(s)`` and cross-entropy is exactly the Bradley–Terry loss (docs/pairs.md). Features are the two sides'
    scorer features side by side, ``(B, 2·H)``.

    Args:
        scorer: the backbone of ``r`` (any name of this registry), built with one output.
        **scorer_kwargs: its options (``hidden``, ``depth``, ...); the default scorer is an MLP with one hidden
            layer of 256 units (the IMDB-Pref config sets 64: 384 → 64 → 1).

    Reference: Bradley & Terry, "Rank Analysis of Incomplete Block Designs", Biometrika 1952.
    """

    def __init__(self, *, input_shape: Sequence[int], num_classes: int, scorer: str = "mlp",
                 **scorer_kwargs: Any) -> None:  # fmt: skip
        super().__init__()
        if num_classes != 2 or len(input_shape) < 2 or input_shape[0] != 2:
            raise InputError(f"the pairwise backbone scores pairs: it needs inputs shaped (2, ...) and 2 classes; "
                             f"got input_shape {tuple(input_shape)}, num_classes {num_classes}")  # fmt: skip
        if scorer == "mlp":
            scorer_kwargs.setdefault("depth", 1)
        self.scorer = create_backbone(scorer, input_shape=input_shape[1:], num_classes=1, **scorer_kwargs)
        self.feature_dim = 2 * self.scorer.feature_dim

    def forward_features(self, x: Tensor) -> Tensor:  # (B, 2, ...) -> (B, 2H)
        return self.scorer.forward_features(x.flatten(0, 1)).view(len(x), self.feature_dim)

    def forward_head(self, features: Tensor) -> Tensor:  # (B, 2H) -> (B, 2) = (s/2, -s/2)
        rewards = self.scorer.forward_head(features.view(2 * len(features), -1)).view(len(features), 2)
        half = 0.5 * (rewards[:, 0] - rewards[:, 1])
        return torch.stack([half, -half], dim=1)

    def linear_head(self) -> nn.Linear:
        raise InputError("nested dropout does not apply to the pairwise backbone (its head is a reward difference)")


def create_backbone(
    name: str, *, input_shape: Sequence[int], num_classes: int, **kwargs: Any
) -> Backbone:
    """Build a backbone by registry name, falling back to a timm model name.

    Args:
        name: ``mlp``, ``small_cnn``, ``cnn9``, ``preact_resnet18``, or a timm model name (``timm:NAME`` also works).
        input_shape: ``(C, H, W)`` for images or ``(D,)`` for feature vectors, without the batch dim.
        num_classes: number of output logits.
        **kwargs: backbone-specific options (``hidden``, ``width``, ...).
    """
    input_shape = tuple(int(s) for s in input_shape)
    if name in BACKBONES:
        factory = BACKBONES.get(name)
    else:
        factory = lambda **kw: TimmBackbone(name.removeprefix("timm:"), **kw)  # noqa: E731
    try:
        return factory(input_shape=input_shape, num_classes=num_classes, **kwargs)
    except TypeError as err:  # an unknown option in backbone_kwargs
        raise InputError(f"bad `backbone_kwargs` for backbone {name!r}: {err}") from None


__all__ = ["BACKBONES", "CNN9", "MLP", "Backbone", "PairwiseScorer", "PreActResNet18", "SmallCNN", "TimmBackbone",
           "create_backbone"]  # fmt: skip
