"""Every backbone exposes forward_features (B, D) and forward_head (B, C)."""

from __future__ import annotations

import pytest
import torch

from robustlabels.errors import InputError
from robustlabels.nn.backbones import BACKBONES, create_backbone

SHAPES = {"mlp": (1, 8, 8), "small_cnn": (1, 28, 28), "cnn9": (3, 32, 32), "preact_resnet18": (3, 32, 32)}


@pytest.mark.parametrize("name", BACKBONES.names())
def test_registered_backbone_surface(name: str) -> None:
    shape = SHAPES[name]
    net = create_backbone(name, input_shape=shape, num_classes=5).eval()
    x = torch.randn(3, *shape)
    features = net.forward_features(x)
    assert features.shape == (3, net.feature_dim)
    logits = net.forward_head(features)
    assert logits.shape == (3, 5) and torch.isfinite(logits).all()
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
