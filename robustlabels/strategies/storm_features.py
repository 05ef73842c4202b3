"""STORM's rescaler features: per-sample statistics over ``G`` forward passes, set against a per-class memory.

For each sample ``i`` of a batch, over its ``G`` passes (pass 0 without dropout, passes 1.. with):

- ``ℓ̄_i, ℓ̆_i``: mean and (unbiased, NaN → 0) std of its cross-entropy losses;
- ``p̄_i, p̆_i``: mean and std of its top-class probability ``max_c softmax`` (of the *predicted* class);
- ``a_i``: whether most passes predict its given label (a tie goes to pass 0).

A memory keeps, per group (the given class; one group without class separation), the last ``capacity`` rows
``[ℓ̄, ℓ̆, p̄, p̆, a]``; it is updated with the batch before the features are computed and reset every epoch.
Each group splits into three cells (all rows, agreeing rows, disagreeing rows); a cell keeps the mean and std
of the four statistics, and of ``KL`` and ``OVL`` of its rows' Gaussians ``N(ℓ̄, ℓ̆)`` against the cell's
``N(mean ℓ̄, mean ℓ̆)``. Sample ``i`` reads the cell of its group and of its agreement (or "all" without
categories):

``f_i = [ℓ̄_i, m, s, ℓ̆_i, m, s, p̄_i, m, s, p̆_i, m, s, KL_i, m, s, OVL_i, m, s, a_i]`` (19 values).

Edge cases as in the authors' code: a std over ≤ 1 value is 1e-8; ``KL`` is 0 when either std is 0; ``OVL``
floors both stds at 1e-8. Everything is computed in float64, without gradients.

Reference: Heck et al., "STORM: Self-Taught On-the-fly Meta Loss Rescaling", AAAI 2025, Eq. 4 and Tab. 1;
the authors' ``utils_storm.py`` (Apache-2.0), read for the exact definitions.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

STD_FLOOR = 1e-8
NUM_FEATURES = 19
CELL_FIELDS = 12  # mean and std of ℓ̄, ℓ̆, p̄, p̆, KL, OVL


@torch.no_grad()
def pass_statistics(losses: Tensor, logits: Tensor, labels: Tensor) -> Tensor:
    """``(B, 5)`` float64 ``[ℓ̄, ℓ̆, p̄, p̆, a]`` from ``losses (G, B)``, ``logits (G, B, C)``, ``labels (B,)``."""
    losses = losses.double()
    top = F.softmax(logits.double(), dim=-1).amax(-1)  # (G, B)
    hits = logits.argmax(-1) == labels  # (G, B)
    count, passes = hits.sum(0), hits.shape[0]
    agree = (2 * count > passes) | ((2 * count == passes) & hits[0])
    spread = (lambda x: x.std(0)) if passes > 1 else (lambda x: torch.zeros_like(x[0]))  # theirs: NaN → 0
    return torch.stack([losses.mean(0), spread(losses), top.mean(0), spread(top), agree.double()], dim=1)


def gaussian_kl(mu_p: Tensor, std_p: Tensor, mu_q: Tensor, std_q: Tensor) -> Tensor:
    """``KL(N(μ_p, σ_p) ‖ N(μ_q, σ_q))``, elementwise; 0 where either std is 0 (the authors' convention)."""
    safe_p, safe_q = std_p.clamp_min(1e-300), std_q.clamp_min(1e-300)
    kl = torch.log(safe_q / safe_p) + (std_p**2 + (mu_p - mu_q) ** 2) / (2 * safe_q**2) - 0.5
    return torch.where((std_p == 0) | (std_q == 0), torch.zeros_like(kl), kl)


def gaussian_overlap(mu_x: Tensor, std_x: Tensor, mu_y: Tensor, std_y: Tensor) -> Tensor:
    """Overlapping coefficient of two normal densities, elementwise: ``statistics.NormalDist.overlap``."""
    swap = (std_y < std_x) | ((std_y == std_x) & (mu_y < mu_x))  # order them as NormalDist.overlap does
    mu_x, mu_y = torch.where(swap, mu_y, mu_x), torch.where(swap, mu_x, mu_y)
    std_x, std_y = torch.where(swap, std_y, std_x), torch.where(swap, std_x, std_y)
    var_x, var_y = std_x**2, std_y**2
    dv, dm = var_y - var_x, (mu_y - mu_x).abs()
    equal = 2.0 * normal_cdf(-dm / (2.0 * std_x))  # equal variances: 2Φ(−|Δμ| / 2σ)
    safe_dv = torch.where(dv == 0, torch.ones_like(dv), dv)
    a = mu_x * var_y - mu_y * var_x
    b = std_x * std_y * torch.sqrt(dm * dm + dv * torch.log(var_y / var_x))
    x1, x2 = (a + b) / safe_dv, (a - b) / safe_dv
    cdf = lambda x, mu, std: normal_cdf((x - mu) / std)  # noqa: E731
    unequal = 1.0 - ((cdf(x1, mu_y, std_y) - cdf(x1, mu_x, std_x)).abs()
                     + (cdf(x2, mu_y, std_y) - cdf(x2, mu_x, std_x)).abs())  # fmt: skip
    return torch.where(dv == 0, equal, unequal)


def normal_cdf(z: Tensor) -> Tensor:
    return 0.5 * torch.erfc(-z / math.sqrt(2.0))


def masked_mean_std(values: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and std over the last axis of ``values (..., n)`` where ``mask (..., n)``; the std is unbiased, or
    1e-8 with ≤ 1 value; the mean of no value is NaN."""
    count = mask.sum(-1).double()
    mean = (values * mask).sum(-1) / count
    var = (((values - mean.unsqueeze(-1)) ** 2) * mask).sum(-1) / (count - 1).clamp_min(1)
    return mean, torch.where(count > 1, var.sqrt(), torch.full_like(var, STD_FLOOR))


class FeatureMemory(nn.Module):
    """Per group, the last ``capacity`` rows of :func:`pass_statistics`; buffers, so a checkpoint keeps them.

    Args:
        num_groups: classes (or 1 without class separation).
        capacity: rows kept per group (STORM: one batch, ``stats_window · b``).
    """

    rows: Tensor
    counts: Tensor

    ddp_exempt = ("rows", "counts")  # under DDP each rank remembers its own batches (docs/distributed.md)

    def __init__(self, num_groups: int, capacity: int) -> None:
        super().__init__()
        self.register_buffer("rows", torch.zeros(num_groups, capacity, 5, dtype=torch.float64))
        self.register_buffer("counts", torch.zeros(num_groups, dtype=torch.long))

    def reset(self) -> None:
        self.counts.zero_()

    @torch.no_grad()
    def update(self, stats: Tensor, groups: Tensor) -> None:
        """Append the batch's ``stats (B, 5)`` to the memory of their ``groups (B,)``, dropping the oldest."""
        capacity = self.rows.shape[1]
        for group in groups.unique().tolist():
            kept = self.rows[group, : int(self.counts[group])]
            merged = torch.cat([kept, stats[groups == group]])[-capacity:]
            self.rows[group, : len(merged)] = merged
            self.counts[group] = len(merged)

    @torch.no_grad()
    def cells(self) -> Tensor:
        """``(groups, 3, 12)`` statistics of the cells all / agree / disagree (see the module docstring)."""
        rows = self.rows.transpose(1, 2)  # (groups, 5, capacity)
        valid = torch.arange(self.rows.shape[1], device=rows.device) < self.counts.unsqueeze(1)  # (groups, cap)
        agree = rows[:, 4] > 0.5
        masks = torch.stack([valid, valid & agree, valid & ~agree], dim=1).unsqueeze(2)  # (groups, 3, 1, cap)
        mean, std = masked_mean_std(rows[:, None, :4], masks)  # (groups, 3, 4)
        loss_mean, loss_std = rows[:, None, 0], rows[:, None, 1]  # (groups, 1, cap)
        kl = gaussian_kl(loss_mean, loss_std, mean[..., :1], mean[..., 1:2])  # (groups, 3, cap)
        ovl = gaussian_overlap(loss_mean, loss_std.clamp_min(STD_FLOOR), mean[..., :1],
                               mean[..., 1:2].clamp_min(STD_FLOOR))  # fmt: skip
        kl_mean, kl_std = masked_mean_std(kl.nan_to_num(), masks[:, :, 0])
        ovl_mean, ovl_std = masked_mean_std(ovl.nan_to_num(), masks[:, :, 0])
        fields = [mean[..., 0], std[..., 0], mean[..., 1], std[..., 1], mean[..., 2], std[..., 2], mean[..., 3],
                  std[..., 3], kl_mean, kl_std, ovl_mean, ovl_std]  # fmt: skip
        return torch.stack(fields, dim=-1)


@torch.no_grad()
def rescaler_features(stats: Tensor, groups: Tensor, cells: Tensor, *, categories: bool = True) -> Tensor:
    """``(B, 19)`` float64 features of samples with ``stats (B, 5)`` in ``groups (B,)``, given ``cells``."""
    agree = stats[:, 4]
    category = (2 - agree.long()) if categories else torch.zeros_like(groups)
    cell = cells[groups, category]  # (B, 12)
    loss_mean, loss_std = stats[:, 0], stats[:, 1]
    kl = gaussian_kl(loss_mean, loss_std, cell[:, 0], cell[:, 2])
    ovl = gaussian_overlap(loss_mean, loss_std.clamp_min(STD_FLOOR), cell[:, 0], cell[:, 2].clamp_min(STD_FLOOR))
    own = [stats[:, 0], stats[:, 1], stats[:, 2], stats[:, 3], kl, ovl]
    columns = [column for k, value in enumerate(own) for column in (value, cell[:, 2 * k], cell[:, 2 * k + 1])]
    return torch.stack([*columns, agree], dim=1)
