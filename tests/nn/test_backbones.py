"""Every backbone exposes forward_features (B, D) and forward_head (B, C)."""

from __future__ import annotations

import pytest
import torch

from robustlabels.errors import InputError
from robustlabels.nn.backbones import BACKBONES, create_backbone

SHAPES = {"mlp": (1, 8, 8), "small_cnn": (1, 28, 28), "cnn9": (3, 32, 32), "preact_resnet18": (3, 32, 32),
          "pairwise": (2, 8)}
CLASSES = {"pairwise": 2}  # a pair has two sides; every other backbone is tested with 5 classes


@pytest.mark.parametrize("name", BACKBONES.names())
def test_registered_backbone_surface(name: str) -> None:
    shape, classes = SHAPES[name], CLASSES.get(name, 5)
    net = create_backbone(name, input_shape=shape, num_classes=classes).eval()
    x = torch.randn(3, *shape)
    features = net.forward_features(x)
    assert features.shape == (3, net.feature_dim)
    logits = net.forward_head(features)
    assert logits.shape == (3, classes) and torch.isfinite(logits).all()
    assert torch.allclose(net(x), logits)


def test_timm_adapter_exposes_pre_logits() -> None:
    net = create_backbone("resnet10t", input_shape=(3, 32, 32), num_classes=7).eval()
    features = net.forward_features(torch.randn(2, 3, 32, 32))
    assert features.shape == (2, net.feature_dim)
    assert net.forward_head(features).shape == (2, 7)


def test_mlp_takes_feature_vectors() -> None:
    net = create_backbone("mlp", input_shape=(16,), num_classes=3, hidden=32, depth=1)
    assert net(torch.randn(4, 16)).shape == (4, 3) and net.feature_dim == 32


def test_unknown_backbone_and_option_are_one_line_errors() -> None:
    with pytest.raises(InputError, match="unknown backbone 'resnet_nope'"):
        create_backbone("resnet_nope", input_shape=(3, 32, 32), num_classes=2)
    with pytest.raises(InputError, match="bad `backbone_kwargs` for backbone 'mlp'"):
        create_backbone("mlp", input_shape=(4,), num_classes=2, hiden=3)


def test_pairwise_scorer_gives_the_bradley_terry_loss_and_is_antisymmetric() -> None:
    """Logits (s/2, -s/2) with s = r(x0) - r(x1): cross-entropy is -log σ(±s); swapping the sides negates s."""
    torch.manual_seed(0)
    net = create_backbone("pairwise", input_shape=(2, 6), num_classes=2, hidden=8)
    pairs = torch.randn(5, 2, 6)
    rewards = net.scorer(pairs.flatten(0, 1)).view(5, 2)
    s = rewards[:, 0] - rewards[:, 1]
    logits = net(pairs)
    assert torch.allclose(logits, torch.stack([s / 2, -s / 2], 1), atol=1e-6)
    targets = torch.tensor([0, 1, 0, 1, 1])
    bt = -torch.nn.functional.logsigmoid(torch.where(targets == 0, s, -s)).mean()
    assert torch.allclose(torch.nn.functional.cross_entropy(logits, targets), bt, atol=1e-6)
    assert torch.allclose(net(pairs.flip(1)), logits.flip(1), atol=1e-6)
    assert net.forward_features(pairs).shape == (5, net.feature_dim) == (5, 16)


@pytest.mark.parametrize(("shape", "classes"), [((6,), 2), ((3, 6), 2), ((2, 6), 3)])
def test_pairwise_scorer_refuses_what_is_not_a_pair(shape: tuple[int, ...], classes: int) -> None:
    with pytest.raises(InputError, match="pairwise backbone scores pairs"):
        create_backbone("pairwise", input_shape=shape, num_classes=classes)
