"""GCE and SCE against their closed forms."""

from __future__ import annotations

import math

import pytest
import torch

from robustlabels.strategies.robust_losses import gce_loss, sce_loss

LOGITS = torch.tensor([[0.0, math.log(3.0)], [math.log(4.0), 0.0]])  # p = [.25, .75], [.8, .2]
TARGETS = torch.tensor([1, 1])


def test_gce_closed_form_and_limits() -> None:
    expected = ((1 - 0.75**0.7) / 0.7 + (1 - 0.2**0.7) / 0.7) / 2
    assert gce_loss(LOGITS, TARGETS, 0.7).item() == pytest.approx(expected, rel=1e-5)
    assert gce_loss(LOGITS, TARGETS, 1.0).item() == pytest.approx(((1 - 0.75) + (1 - 0.2)) / 2, rel=1e-5)  # MAE
    ce = (-math.log(0.75) - math.log(0.2)) / 2
    assert gce_loss(LOGITS, TARGETS, 1e-4).item() == pytest.approx(ce, rel=1e-3)  # q -> 0 is CE


def test_sce_closed_form() -> None:
    ce = (-math.log(0.75) - math.log(0.2)) / 2
    rce = -math.log(1e-4) * ((1 - 0.75) + (1 - 0.2)) / 2
    assert sce_loss(LOGITS, TARGETS, 0.1, 1.0).item() == pytest.approx(0.1 * ce + rce, rel=1e-5)
