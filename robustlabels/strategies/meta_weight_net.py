"""Meta-learned example weights from a small clean meta set: Meta-Weight-Net and L2RW (docs/methods.md).

Both are baselines of meta loss rescaling that need what it avoids: a set of training samples whose labels are
known to be right (``meta_indices``, or ``clean_meta_per_class`` samples of every true class picked by the data
module for benchmarks). Every result table that reports them says so.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from robustlabels.errors import InputError
from robustlabels.networks import Networks
from robustlabels.nn.rescaler import LossWeightNet
from robustlabels.strategies.base import STRATEGIES, ManualStep
from robustlabels.strategies.diagnostics import WeightingStrategy
from robustlabels.strategies.meta_step import inner_update, learning_rate
from robustlabels.types import Batch, Forward, MetaStream, StepResult

DEFAULT_PER_CLASS = 10


def clean_meta_stream(meta_indices: Sequence[int] | None, clean_meta_per_class: int | None,
                      batch_size: int) -> MetaStream:  # fmt: skip
    """The trusted meta stream of a clean-meta strategy: given positions, or a count per true class (10 when
    neither is given)."""
    if meta_indices is not None and clean_meta_per_class is not None:
        raise InputError("give at most one of `meta_indices` and `clean_meta_per_class`; got "
                         f"{meta_indices!r} and {clean_meta_per_class!r}")  # fmt: skip
    if meta_indices is None and clean_meta_per_class is None:
        clean_meta_per_class = DEFAULT_PER_CLASS
    if (clean_meta_per_class is not None and clean_meta_per_class < 1) or batch_size < 1:
        raise InputError(f"`clean_meta_per_class` and `meta_batch_size` must be >= 1; got {clean_meta_per_class!r},"
                         f" {batch_size!r}")  # fmt: skip
    positions = None if meta_indices is None else torch.as_tensor(list(meta_indices), dtype=torch.long)
    return MetaStream(batch_size=batch_size, positions=positions, trusted=True, per_class=clean_meta_per_class)


class _CleanMetaStrategy(WeightingStrategy):
    """Shared by the two: manual optimisation, a trusted meta stream, cross-entropy as the unweighted loss."""

    manual_optimization = True

    def __init__(self, meta_indices: Sequence[int] | None, clean_meta_per_class: int | None,
                 meta_batch_size: int) -> None:  # fmt: skip
        super().__init__()
        self.meta_stream = clean_meta_stream(meta_indices, clean_meta_per_class, meta_batch_size)

    def compute_loss(self, batch: Batch, out: Forward) -> StepResult:
        return StepResult(F.cross_entropy(out.logits[0].float(), batch.targets))

    def look_ahead(self, nets: Networks, batch: Batch, weigh: Callable[[Tensor], Tensor], meta: Batch | None,
                   ctx: ManualStep) -> Tensor:  # fmt: skip
        """The clean meta loss at ``θ′ = θ − lr·∇θ mean_i w_i ℓ_i`` with ``w = weigh(ℓ)`` (detached losses),
        differentiable in whatever ``weigh`` depends on. The virtual pass runs on copies of the BatchNorm
        buffers, as the authors' throw-away model copy does."""
        assert meta is not None, "the strategy asks for a meta stream"
        params = dict(nets.named_parameters())
        losses = F.cross_entropy(nets.functional(params, batch.inputs).logits[0].float(), batch.targets,
                                 reduction="none")  # fmt: skip
        inner = (losses * weigh(losses.detach())).mean()
        grads = torch.autograd.grad(inner, list(params.values()), create_graph=True)
        fast = inner_update(params, grads, rule="sgd", lr=learning_rate(ctx.optimizer))
        return F.cross_entropy(nets.functional(fast, meta.inputs).logits[0].float(), meta.targets)


@STRATEGIES.register("meta_weight_net")
class MetaWeightNet(_CleanMetaStrategy):
    """Meta-Weight-Net: a small network maps each sample's loss to its weight, and learns from a clean meta set.

    Per step: a virtual SGD step (no momentum, at the current learning rate) on ``mean_i V(ℓ_i)·ℓ_i``; the
    clean meta loss at ``θ′`` updates ``V`` (Adam); then a real step of the networks' optimizer on
    ``mean_i V′(ℓ_i)·ℓ_i`` with the updated ``V′`` (a third pass), as the authors' ``MW-Net.py``.

    Args:
        meta_indices: positions of the training split whose labels are known to be right (the meta set).
        clean_meta_per_class: instead, this many samples of every true class (benchmarks; default 10; MW-Net:
            100 on CIFAR-10, 1,000 in all).
        meta_batch_size: meta samples per step (MW-Net: the training batch size, 100).
        weight_net_lr: Adam learning rate of ``V`` (1e-3), with ``weight_net_decay`` (1e-4).
        hidden: ``V``'s hidden width (100).

    Departure: the meta samples stay in the training split with their given labels (MW-Net holds them out).

    Reference: Shu et al., "Meta-Weight-Net: Learning an Explicit Mapping For Sample Weighting", NeurIPS 2019;
    code ``xjtushujun/meta-weight-net``.
    """

    def __init__(self, *, meta_indices: Sequence[int] | None = None, clean_meta_per_class: int | None = None,
                 meta_batch_size: int = 100, weight_net_lr: float = 1e-3, weight_net_decay: float = 1e-4,
                 hidden: int = 100) -> None:  # fmt: skip
        super().__init__(meta_indices, clean_meta_per_class, meta_batch_size)
        self.weight_net = LossWeightNet(hidden)
        self.weight_net_lr, self.weight_net_decay = weight_net_lr, weight_net_decay

    def optimizers(self) -> list[torch.optim.Optimizer]:
        return [torch.optim.Adam(self.weight_net.parameters(), lr=self.weight_net_lr,
                                 weight_decay=self.weight_net_decay)]  # fmt: skip

    def manual_step(self, nets: Networks, batch: Batch, meta: Batch | None, ctx: ManualStep) -> StepResult:
        (optimizer,) = ctx.own_optimizers
        optimizer.zero_grad()
        meta_loss = self.look_ahead(nets, batch, self.weight_net, meta, ctx)
        ctx.backward(meta_loss, inputs=list(self.weight_net.parameters()))  # V only: no work for the networks
        optimizer.step()
        out = nets(batch.inputs)
        losses = F.cross_entropy(out.logits[0].float(), batch.targets, reduction="none")
        with torch.no_grad():
            weights = self.weight_net(losses)
        loss = (losses * weights).mean()
        ctx.step_networks(ctx.add_regularizers(loss, batch, out))
        return StepResult(loss.detach(), self.record(weights, batch), out)


@STRATEGIES.register("l2rw")
class L2RW(_CleanMetaStrategy):
    """Learning to reweight: each batch's weights are the negative meta-gradient of a clean meta loss.

    Per step: ``ε = 0 (B,)``; ``θ′ = θ − lr·∇θ mean_i ε_i ℓ_i``; ``w = max(−∂L_meta(θ′)/∂ε, 0)`` normalised
    to sum 1 (left as is when all are 0); then a real step of the networks' optimizer on ``Σ_i w_i ℓ_i``.
    No weight network: the weights are recomputed from scratch every batch.

    Args: as :class:`MetaWeightNet` (``meta_indices``, ``clean_meta_per_class``, ``meta_batch_size``).

    Departure: the inner loss is a mean rather than a sum, which only rescales ``w`` before its normalisation.

    Reference: Ren, Zeng, Yang & Urtasun, "Learning to Reweight Examples for Robust Deep Learning", ICML 2018;
    code ``uber-research/learning-to-reweight-examples`` (read, not used: its licence is non-commercial).
    """

    def __init__(self, *, meta_indices: Sequence[int] | None = None, clean_meta_per_class: int | None = None,
                 meta_batch_size: int = 100) -> None:  # fmt: skip
        super().__init__(meta_indices, clean_meta_per_class, meta_batch_size)

    def manual_step(self, nets: Networks, batch: Batch, meta: Batch | None, ctx: ManualStep) -> StepResult:
        eps = torch.zeros(len(batch.targets), device=batch.targets.device, requires_grad=True)
        (grad_eps,) = torch.autograd.grad(self.look_ahead(nets, batch, lambda _: eps, meta, ctx), [eps])
        weights = (-grad_eps).clamp_min(0.0)
        total = weights.sum()
        weights = torch.where(total > 0, weights / total.clamp_min(1e-30), weights)
        out = nets(batch.inputs)
        loss = (F.cross_entropy(out.logits[0].float(), batch.targets, reduction="none") * weights).sum()
        ctx.step_networks(ctx.add_regularizers(loss, batch, out))
        return StepResult(loss.detach(), self.record(weights * len(weights), batch), out)  # mean 1
