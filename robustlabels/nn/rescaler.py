"""Per-sample loss-weight networks of the meta-learning strategies: STORM's Ω and Meta-Weight-Net's VNet."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def rescaler_head(num_features: int) -> nn.Sequential:
    """``Linear(F, F) → BN(F) → ReLU → Linear(F, 2) → BN(2) → Softmax``, BatchNorm without affine parameters.

    The last BatchNorm keeps the two logits centred over the batch, so the weights cannot all collapse to 0
    (Heck et al., AAAI 2025, Eq. 6).
    """
    return nn.Sequential(
        nn.Linear(num_features, num_features), nn.BatchNorm1d(num_features, affine=False), nn.ReLU(),
        nn.Linear(num_features, 2), nn.BatchNorm1d(2, affine=False), nn.Softmax(dim=1),
    )  # fmt: skip


class ClassRescaler(nn.Module):
    """STORM's loss rescaler Ω: one head per given class, each on the whole batch, selected by the label.

    Args:
        num_features: ``F``, the width of the rescaler features (19, or 2 for loss-only features).
        num_heads: one per class (``C``), or 1 without class separation.

    ``forward(features (B, F), labels (B,)) -> (B,)`` weights in ``(0, 1)``: column 1 of the softmax of head
    ``labels[i]`` (of head 0 with one head). Every head sees all ``B`` rows, so its BatchNorm statistics come
    from the whole batch, as in the authors' code.

    Reference: Heck et al., "STORM: Self-Taught On-the-fly Meta Loss Rescaling", AAAI 2025.
    """

    def __init__(self, num_features: int, num_heads: int) -> None:
        super().__init__()
        self.heads = nn.ModuleList(rescaler_head(num_features) for _ in range(num_heads))

    def forward(self, features: Tensor, labels: Tensor) -> Tensor:
        outputs = torch.stack([head(features)[:, 1] for head in self.heads], dim=1)  # (B, heads)
        if len(self.heads) == 1:
            return outputs[:, 0]
        return outputs.gather(1, labels.view(-1, 1)).squeeze(1)


class LossWeightNet(nn.Module):
    """Meta-Weight-Net's VNet: ``sigmoid(Linear(100, 1)(ReLU(Linear(1, 100)(ℓ))))``, a weight per loss.

    ``forward(losses (B,)) -> (B,)`` weights in ``(0, 1)``.

    Reference: Shu et al., "Meta-Weight-Net: Learning an Explicit Mapping For Sample Weighting", NeurIPS 2019.
    """

    def __init__(self, hidden: int = 100) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(1, hidden), nn.ReLU(), nn.Linear(hidden, 1), nn.Sigmoid())

    def forward(self, losses: Tensor) -> Tensor:
        return self.body(losses.view(-1, 1)).view(-1)
