"""ELR+: two networks with weight-averaged copies, mixup and early-learning targets (docs/methods.md, "ELR+")."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustlabels.distributed import gather_unique_rows
from robustlabels.errors import InputError, check_interval
from robustlabels.networks import Networks
from robustlabels.nn.ema import ema_decay, sigmoid_rampup, update_average, weight_average
from robustlabels.regularizers.elr import elr_probs, elr_target_update, elr_term
from robustlabels.strategies.base import STRATEGIES, Strategy
from robustlabels.types import Batch, Forward, StepResult, TrainData


def mixup_pairs(
    batch_size: int, alpha: float, *, rng: np.random.Generator, device: torch.device
) -> tuple[float, Tensor]:
    """``(λ, π)``: ``λ ~ Beta(α, α)`` folded to ``max(λ, 1 − λ)`` and a random permutation ``π (B,)``.

    ``α = 0`` disables mixup: ``λ = 1`` and the identity. Reference: Zhang et al., "mixup", ICLR 2018.
    """
    if alpha <= 0:
        return 1.0, torch.arange(batch_size, device=device)
    lam = float(rng.beta(alpha, alpha))
    return max(lam, 1.0 - lam), torch.from_numpy(rng.permutation(batch_size)).to(device)


def mix(values: Tensor, lam: float, perm: Tensor) -> Tensor:
    """``λ·v + (1 − λ)·v[π]`` along the batch dimension."""
    return values if lam == 1.0 else torch.lerp(values[perm], values, lam)


def elr_plus_loss(logits: Tensor, soft_targets: Tensor, elr_targets: Tensor, *, weight: float) -> Tensor:
    """``softCE(z, y) + weight · mean log(1 − <q, clamp(softmax z)>)`` for ``(B, C)`` inputs.

    ``logits`` are of the mixed inputs, ``soft_targets`` the mixed one-hot labels ``y`` and ``elr_targets``
    the mixed early-learning targets ``q`` (both without gradients).
    """
    soft_ce = -(soft_targets * F.log_softmax(logits.float(), dim=1)).sum(1).mean()
    return soft_ce + weight * elr_term(elr_probs(logits), elr_targets)


@STRATEGIES.register("elr_plus")
class ELRPlus(Strategy):
    """ELR+: each of two networks learns on mixup batches with an ELR term whose targets come from the
    weight-averaged copy of the *other* network.

    Per step, for network ``a`` and its peer ``b``:

    1. mixup: ``λ ~ Beta(α, α)``, ``λ ← max(λ, 1 − λ)``, one permutation ``π``; ``a`` is trained on
       ``x̃ = λx + (1 − λ)x[π]`` with soft labels ``ỹ = λ·onehot(y) + (1 − λ)·onehot(y)[π]``;
    2. the targets ``t_a (N, C)`` of the batch's samples take one EMA step,
       ``t_a[I] ← β·t_a[I] + (1 − β)·softmax(z̄_b)``, where ``z̄_b`` are the logits of ``b``'s weight average
       on the *un-mixed* inputs, and are mixed like the inputs: ``q = λ·t_a[I] + (1 − λ)·t_a[I][π]``;
    3. ``L_a = softCE(z_a(x̃), ỹ) + w(step)·λ_ELR·mean log(1 − <q, clamp(softmax z_a(x̃))>)`` with the
       ramp-up ``w = sigmoid_rampup(step, weight_rampup_steps)``; with ``reweight_labels`` (the official
       CIFAR-100 variant) the soft labels are replaced by ``normalize(ỹ ⊙ q)``;
    4. after the optimiser step, each average moves towards its network with decay
       :func:`robustlabels.nn.ema.ema_decay`.

    The loss is ``L_a + L_b``; the networks share no parameters, so one backward pass gives each exactly its
    own gradient. Evaluation averages the two networks' logits (not the averages'), as the official test does.

    Departures from the official code, for one Lightning step per batch:
        - both networks train on the same batch in the same step (each with its own ``λ, π``); officially net
          1 trains a whole epoch with net 2's average frozen, then net 2 an epoch, on two data loaders;
        - each weight average starts as a copy of its network (officially an independent random
          initialisation, forgotten after a few steps since the early decay is ``≈ e^{-5}·0.997``).
    The weight averages run in training mode (BatchNorm batch statistics), as in the official code.

    Args:
        momentum: ``β``, the target EMA per visit of a sample.
        weight: ``λ_ELR``.
        mixup_alpha: ``α`` of the mixup Beta distribution (0: no mixup).
        weight_rampup_steps: ramp-up length of ``w`` in steps (official ``coef_step``; 0: ``w = 1``).
        ema_max_decay: the weight averages' decay ``α_max`` (official ``ema_alpha``).
        ema_rampup_steps: the decay's sigmoid ramp-up in steps (official ``ema_step`` with ``ema_update``);
            0: ``min(1 − 1/(step + 1), α_max)`` (official ``ema_update: false``).
        reweight_labels: CE target ``normalize(ỹ ⊙ q)`` (official: on for CIFAR-100 only).
        seed: seeds the mixup draws, which are a function of ``(seed, step)`` so that a resumed run continues
            exactly (default: ``torch.initial_seed()``, i.e. ``seed_everything``'s seed).
        preset: the official per-dataset values, which the explicit arguments override:
            ``cifar10_sym`` (β 0.7, λ 3, α 1, ramp 0, EMA 0.997 over 40k steps), ``cifar10_asym`` (β 0.9,
            λ 1), ``cifar100`` (β 0.9, λ 7, ``w`` ramp 40k steps, ``reweight_labels``), ``clothing1m``
            (β 0.7, λ 3, EMA 0.9999 without ramp), ``webvision`` (β 0.7, λ 3, mixup α 1.5, EMA 0.997
            without ramp): the values of the official ``ELR_plus/config_*.json`` files (checked against them;
            their learning rates, schedules and epochs are the configs' business, not the strategy's).

    Logs ``elr_weight``, ``ema_decay`` and ``mixup_lam`` (network 0's).

    Reference: Liu et al., "Early-Learning Regularization Prevents Memorization of Noisy Labels", NeurIPS
    2020, Sec. 4.2; code ``shengliu66/ELR`` (``ELR_plus``).
    """

    num_networks = 2
    targets: Tensor
    ddp_exempt = ("targets",)

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "cifar10_sym": {"momentum": 0.7, "weight": 3.0},
        "cifar10_asym": {"momentum": 0.9, "weight": 1.0},
        "cifar100": {"momentum": 0.9, "weight": 7.0, "weight_rampup_steps": 40_000, "reweight_labels": True},
        "clothing1m": {"momentum": 0.7, "weight": 3.0, "ema_max_decay": 0.9999, "ema_rampup_steps": 0},
        "webvision": {"momentum": 0.7, "weight": 3.0, "mixup_alpha": 1.5, "ema_rampup_steps": 0},
    }
    DEFAULTS: ClassVar[dict[str, Any]] = {
        "mixup_alpha": 1.0,
        "weight_rampup_steps": 0,
        "ema_max_decay": 0.997,
        "ema_rampup_steps": 40_000,
        "reweight_labels": False,
    }

    def __init__(
        self,
        *,
        momentum: float | None = None,
        weight: float | None = None,
        mixup_alpha: float | None = None,
        weight_rampup_steps: int | None = None,
        ema_max_decay: float | None = None,
        ema_rampup_steps: int | None = None,
        reweight_labels: bool | None = None,
        seed: int | None = None,
        preset: str = "cifar10_sym",
    ) -> None:
        super().__init__()
        if preset not in self.PRESETS:
            raise InputError(f"`preset` must be one of {', '.join(self.PRESETS)}; got {preset!r}")
        given = {"momentum": momentum, "weight": weight, "mixup_alpha": mixup_alpha,
                 "weight_rampup_steps": weight_rampup_steps, "ema_max_decay": ema_max_decay,
                 "ema_rampup_steps": ema_rampup_steps, "reweight_labels": reweight_labels}  # fmt: skip
        values = {**self.DEFAULTS, **self.PRESETS[preset], **{k: v for k, v in given.items() if v is not None}}
        self.momentum = check_interval("momentum", values["momentum"], low=0.0, high=1.0, closed="left")
        self.ema_max_decay = check_interval("ema_max_decay", values["ema_max_decay"], low=0.0, high=1.0,
                                            closed="left")  # fmt: skip
        for name in ("weight_rampup_steps", "ema_rampup_steps", "mixup_alpha"):
            if not values[name] >= 0:
                raise InputError(f"`{name}` must be >= 0; got {values[name]!r}")
        self.weight, self.mixup_alpha = float(values["weight"]), float(values["mixup_alpha"])
        self.weight_rampup_steps, self.ema_rampup_steps = values["weight_rampup_steps"], values["ema_rampup_steps"]
        self.reweight_labels, self.preset = bool(values["reweight_labels"]), preset
        self.register_buffer("targets", torch.zeros(2, 0, 0))
        self.seed = torch.initial_seed() if seed is None else seed
        self.steps = 0  # optimisation steps taken; saved with the seed through get_extra_state
        self.average: nn.Module | None = None  # a weight-averaged copy of the networks (setup_networks)

    # ---- wiring -------------------------------------------------------------------------------------
    def setup_networks(self, nets: Networks) -> None:
        """Make the weight averages: a frozen copy of the networks, in their layout."""
        if nets.nested_dropout is not None:
            raise InputError("strategy ELRPlus does not support `nested_dropout`")
        self.average = weight_average(nets)

    def setup(self, data: TrainData) -> None:
        if self.targets.shape != (2, data.num_samples, data.num_classes):
            self.targets = torch.zeros(2, data.num_samples, data.num_classes, device=self.targets.device)

    def get_extra_state(self) -> dict[str, int]:
        return {"steps": self.steps, "seed": self.seed}

    def set_extra_state(self, state: dict[str, int]) -> None:
        self.steps, self.seed = int(state["steps"]), int(state["seed"])

    # ---- one step -----------------------------------------------------------------------------------
    def step(self, nets: Networks, batch: Batch, meta: Batch | None = None) -> StepResult:
        """Each network on its own mixup of the batch; targets from the peer's average on the un-mixed batch."""
        size, device = len(batch.targets), batch.inputs.device
        rng = np.random.default_rng((self.seed, self.steps))
        mixes = [mixup_pairs(size, self.mixup_alpha, rng=rng, device=device) for _ in range(2)]
        out = nets([mix(batch.inputs, lam, perm) for lam, perm in mixes])
        return replace(self.mixed_loss(batch, out, mixes), out=out)

    def compute_loss(self, batch: Batch, out: Forward) -> StepResult:
        """The loss without mixup, for outputs ``out`` on the un-mixed batch (``mixup_alpha = 0``)."""
        identity = torch.arange(len(batch.targets), device=batch.targets.device)
        return self.mixed_loss(batch, out, [(1.0, identity)] * 2)

    def mixed_loss(self, batch: Batch, out: Forward, mixes: Sequence[tuple[float, Tensor]]) -> StepResult:
        """Steps 2–3 above for outputs ``out`` of network ``a`` on the batch mixed by ``mixes[a] = (λ, π)``."""
        if self.average is None:
            raise InputError("ELRPlus needs its weight averages: build it inside a RobustModule")
        onehot = F.one_hot(batch.targets, self.targets.shape[-1]).float()
        weight = sigmoid_rampup(self.steps + 1, self.weight_rampup_steps) * self.weight
        with torch.no_grad():  # the peers' weight averages on the un-mixed inputs
            averages = self.average(batch.inputs).logits
        loss = torch.zeros((), device=batch.targets.device)
        for a, (lam, perm) in enumerate(mixes):
            with torch.no_grad():  # peer's average -> this network's targets
                peer_probs = F.softmax(averages[1 - a].float(), dim=1)
                rows = elr_target_update(self.targets[a].index_select(0, batch.index), peer_probs, self.momentum)
                index_all, rows_all = gather_unique_rows(batch.index, rows)
                self.targets[a].index_copy_(0, index_all, rows_all)
                elr_targets, soft_targets = mix(rows, lam, perm), mix(onehot, lam, perm)
                if self.reweight_labels:
                    soft_targets = soft_targets * elr_targets
                    soft_targets = soft_targets / soft_targets.sum(1, keepdim=True).clamp_min(1e-12)
            loss = loss + elr_plus_loss(out.logits[a], soft_targets, elr_targets, weight=weight)
        decay = ema_decay(self.steps + 1, max_decay=self.ema_max_decay, rampup_steps=self.ema_rampup_steps)
        return StepResult(loss, {"elr_weight": weight, "ema_decay": decay, "mixup_lam": mixes[0][0]})

    def after_optimizer_step(self, nets: Networks) -> None:
        """Count the step and move each weight average towards its network."""
        self.steps += 1
        if self.average is not None:
            decay = ema_decay(self.steps, max_decay=self.ema_max_decay, rampup_steps=self.ema_rampup_steps)
            update_average(self.average, nets, decay)
