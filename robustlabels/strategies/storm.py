"""STORM-style meta loss rescaling (docs/methods.md, "Meta loss rescaling")."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from robustlabels.distributed import average_gradients, world_size
from robustlabels.errors import InputError, check_choice
from robustlabels.networks import Networks
from robustlabels.nn.rescaler import ClassRescaler
from robustlabels.strategies.base import STRATEGIES, ManualStep
from robustlabels.strategies.diagnostics import WeightingStrategy
from robustlabels.strategies.meta_step import INNER_UPDATES, InnerUpdate, inner_update, learning_rate
from robustlabels.strategies.storm_features import NUM_FEATURES, FeatureMemory, pass_statistics, rescaler_features
from robustlabels.types import Batch, Forward, MetaStream, StepResult


@STRATEGIES.register("meta_loss_rescaling")
class MetaLossRescaling(WeightingStrategy):
    """STORM-style meta loss rescaling: a per-class network Ω weighs each sample's loss; Ω learns on the fly
    from a meta batch drawn uniformly from the noisy training set, whose losses Ω rescales too.

    Per step, with a training batch ``B`` and a meta batch ``V`` (both of size ``b``):

    1. ``G = passes`` forward passes on ``B``: pass 0 is the ordinary training forward; passes 1.. run without
       gradients, with dropout ``pass_dropout`` on the inputs, on copies of the BatchNorm buffers;
    2. the rescaler features ``f_i`` (:mod:`robustlabels.strategies.storm_features`; ``features: loss`` gives
       ``[ℓ_i, a_i]``) and the weights ``w_i = Ω_{ỹ_i}(f_i)``;
    3. the virtual step ``θ′ = θ − Δ(∇θ Σ_i w_i ℓ_i)`` (:func:`~robustlabels.strategies.meta_step.inner_update`,
       ``inner_update``; differentiable in ω unless ``first_order``);
    4. the meta loss ``Σ_j w_j ℓ_j(θ′)`` on ``V``, its weights from Ω on ``V``'s own features and memory
       (``meta_loss_rescaling: false``: ``Σ_j ℓ_j(θ′)``); one backward pass gives ω both the path through
       ``θ′`` and the direct path through ``w_j``; Adam (``rescaler_lr``) updates ω;
    5. ``storm``: ``θ ← θ′`` (the authors' classification code: no third pass). ``storm_mwstyle``: a real step
       of the networks' optimizer on ``mean_i w′_i ℓ_i`` with ``w′`` recomputed by the updated Ω, as
       Meta-Weight-Net does (the mode for DDP, which ``storm`` refuses).

    ``rescale: false`` is the paper's "no rescaling" baseline: the same update rule on unweighted losses, and no
    meta step. The inner learning rate is the networks' optimizer's (its schedule applies); in ``storm`` mode
    that optimizer only counts the step.

    Departures from the authors' code (``storm.py``; read, not copied):
        - the meta batch is drawn without replacement within a batch (theirs: with replacement);
        - the extra passes drop out the *inputs* for every backbone (their TF-IDF runs do this; their RoBERTa
          runs drop out the encoder instead);
        - the inner loss of ``storm_mwstyle``'s real step is a mean (Meta-Weight-Net's), the others sums (theirs);
        - ``reset_adam`` is written ``g / (|g| + ε)``, equal to ``higher``'s first Adam step but with a finite
          derivative where ``g = 0``.

    Args:
        mode: ``storm`` or ``storm_mwstyle`` (above).
        inner_update: ``reset_adam`` (the authors' effective rule), ``sgd`` or ``adam_state``.
        passes: ``G``, forward passes per batch (3).
        pass_dropout: input dropout of passes 1.. (0.1).
        features: ``full`` (19) or ``loss`` (``[ℓ_i, a_i]``).
        first_order: drop the path through ``θ′`` (ω learns only through the meta weights).
        meta_loss_rescaling: rescale the meta losses by Ω (the paper's key change against clean-meta methods).
        class_separation: one Ω head and memory per class (else one for all).
        rescale: apply the weights (false: the "no rescaling" baseline).
        rescaler_lr: Adam learning rate of Ω (1e-2).
        meta_batch_size: ``|V|`` (the authors use the training batch size, 32).
        window: batches of rows the memory keeps per group (1).

    Logs ``weight_mean`` every step and, where the true labels are known (evaluation only), every epoch
    ``weight_auc`` (how well the weights separate clean from flipped samples) and the mean weight of each;
    the epochs' weight histograms go to the run folder's ``diagnostics.json``.

    Reference: Heck, Lubis, Geishauser, Lin, van Niekerk, Gašić et al., "STORM: Self-Taught On-the-fly Meta
    Loss Rescaling", AAAI 2025; code ``storm-public`` (HHU), mirrored at ``jdu8/storm_expt_1``.
    """

    manual_optimization = True

    ddp_exempt = ("rescaler",)  # under DDP its gradient is averaged by hand (meta_update): DDP sees one backward

    def __init__(
        self,
        *,
        mode: Literal["storm", "storm_mwstyle"] = "storm",
        inner_update: InnerUpdate = "reset_adam",
        passes: int = 3,
        pass_dropout: float = 0.1,
        features: Literal["full", "loss"] = "full",
        first_order: bool = False,
        meta_loss_rescaling: bool = True,
        class_separation: bool = True,
        rescale: bool = True,
        rescaler_lr: float = 1e-2,
        meta_batch_size: int = 32,
        window: int = 1,
    ) -> None:
        super().__init__()
        self.mode = check_choice("mode", mode, ("storm", "storm_mwstyle"))
        self.inner_rule = check_choice("inner_update", inner_update, INNER_UPDATES)
        self.features = check_choice("features", features, ("full", "loss"))
        for name, value in (("passes", passes), ("meta_batch_size", meta_batch_size), ("window", window)):
            if not isinstance(value, int) or value < 1:
                raise InputError(f"`{name}` must be an integer >= 1; got {value!r}")
        if not 0.0 <= pass_dropout < 1.0 or not rescaler_lr > 0:
            raise InputError(f"`pass_dropout` must be in [0, 1) and `rescaler_lr` > 0; got {pass_dropout!r}, "
                             f"{rescaler_lr!r}")  # fmt: skip
        if first_order and not meta_loss_rescaling:
            raise InputError("`first_order` with `meta_loss_rescaling: false` leaves Ω no gradient at all")
        self.passes, self.pass_dropout, self.first_order = passes, pass_dropout, first_order
        self.meta_loss_rescaling, self.class_separation, self.rescale = meta_loss_rescaling, class_separation, rescale
        self.rescaler_lr, self.meta_batch_size, self.window = rescaler_lr, meta_batch_size, window
        self.meta_stream = MetaStream(batch_size=meta_batch_size) if rescale else None
        self.rescaler = ClassRescaler(1, 1)  # replaced in setup_networks, once C is known
        self.memories = torch.nn.ModuleDict()  # "train_batch" and "meta_batch"
        self.seed, self.steps = torch.initial_seed(), 0  # the dropout draws are a function of (seed, step)
        self.path_norms: dict[str, float] = {}

    # ---- set-up ---------------------------------------------------------------------------------------
    def setup_networks(self, nets: Networks) -> None:
        """Build Ω (one head per class) and the two feature memories, so checkpoints find them."""
        if len(nets) != 1:
            raise InputError(f"MetaLossRescaling trains one network; got {len(nets)}")
        groups = nets.num_classes if self.class_separation else 1
        self.rescaler = ClassRescaler(NUM_FEATURES if self.features == "full" else 2, groups)
        capacity = self.window * self.meta_batch_size
        self.memories = torch.nn.ModuleDict({name: FeatureMemory(groups, capacity)
                                             for name in ("train_batch", "meta_batch")})  # fmt: skip

    def get_extra_state(self) -> dict[str, int]:
        return {"steps": self.steps, "seed": self.seed}

    def set_extra_state(self, state: dict[str, int]) -> None:
        self.steps, self.seed = int(state["steps"]), int(state["seed"])

    def after_optimizer_step(self, nets: Networks) -> None:
        self.steps += 1

    def optimizers(self) -> list[torch.optim.Optimizer]:
        # foreach: one fused update over Ω's many small tensors (on a CPU torch defaults to a loop per tensor)
        return [torch.optim.Adam(self.rescaler.parameters(), lr=self.rescaler_lr, foreach=True)]

    def on_train_epoch_end(self) -> dict[str, float]:
        """The weight diagnostics, and the norms of ω's two gradient paths on the epoch's first step."""
        scalars, self.path_norms = {**super().on_train_epoch_end(), **self.path_norms}, {}
        return scalars

    def on_train_epoch_start(self, epoch: int) -> None:
        super().on_train_epoch_start(epoch)
        for memory in self.memories.values():
            memory.reset()  # type: ignore[operator]  # the memory is reset every epoch, as in the authors' code

    def compute_loss(self, batch: Batch, out: Forward) -> StepResult:
        """Unweighted cross-entropy (the loss the "no rescaling" baseline steps on)."""
        return StepResult(F.cross_entropy(out.logits[0].float(), batch.targets))

    # ---- one step -------------------------------------------------------------------------------------
    def manual_step(self, nets: Networks, batch: Batch, meta: Batch | None, ctx: ManualStep) -> StepResult:
        if self.mode == "storm" and world_size() > 1:
            raise InputError("MetaLossRescaling(mode='storm') adopts each rank's own virtual step, which DDP "
                             "cannot average; use mode='storm_mwstyle'")  # fmt: skip
        params = dict(nets.named_parameters())
        # pass 0: storm's only training forward updates BatchNorm statistics; storm_mwstyle's real pass does
        out = nets(batch.inputs) if self.mode == "storm" else nets.functional(params, batch.inputs)
        losses = F.cross_entropy(out.logits[0].float(), batch.targets, reduction="none")
        if not self.rescale:  # the "no rescaling" baseline: the same update rule, no weights, no meta step
            inner = ctx.add_regularizers(losses.sum(), batch, out)
            ctx.adopt_networks(detached(self.virtual_step(params, inner, ctx, create_graph=False)))
            return StepResult(inner.detach() / len(losses), {}, out)
        features, groups = self.features_of(nets, params, batch, losses, out.logits[0], "train_batch")
        weights = self.omega(features, groups)
        inner = ctx.add_regularizers((losses * (weights.detach() if self.first_order else weights)).sum(), batch,
                                     out)  # fmt: skip
        fast = self.virtual_step(params, inner, ctx, create_graph=not self.first_order)
        if self.first_order:  # θ′ is a constant: the meta loss reaches ω through its weights only
            fast = detached(fast)
        self.meta_update(nets, fast, meta, ctx)
        logs = self.record(weights, batch)
        if self.mode == "storm":
            ctx.adopt_networks(detached(fast))
            return StepResult(inner.detach() / len(losses), logs, out)
        with torch.no_grad():  # storm_mwstyle: a real step on the weights of the updated Ω
            new_weights = self.omega(features, groups)
        out = nets(batch.inputs)
        loss = (new_weights * F.cross_entropy(out.logits[0].float(), batch.targets, reduction="none")).mean()
        ctx.step_networks(ctx.add_regularizers(loss, batch, out))
        return StepResult(loss.detach(), logs, out)

    def omega(self, features: Tensor, groups: Tensor) -> Tensor:
        """``(B,)`` weights ``Ω_{groups[i]}(features[i])``; 1 for a batch of one (Ω's BatchNorm needs two rows)."""
        return self.rescaler(features, groups) if len(groups) > 1 else torch.ones(len(groups), device=groups.device)

    def virtual_step(self, params: Mapping[str, Tensor], inner: Tensor, ctx: ManualStep, *,
                     create_graph: bool) -> dict[str, Tensor]:  # fmt: skip
        """``θ′`` after one inner update on ``inner`` at the networks' current learning rate."""
        grads = torch.autograd.grad(inner, list(params.values()), create_graph=create_graph)
        return inner_update(params, grads, rule=self.inner_rule, lr=learning_rate(ctx.optimizer),
                            optimizer=ctx.optimizer)  # fmt: skip

    def meta_update(self, nets: Networks, fast: Mapping[str, Tensor], meta: Batch | None, ctx: ManualStep) -> None:
        """Step 4: the (rescaled) meta loss at ``θ′`` and one Adam step of Ω."""
        assert meta is not None, "MetaLossRescaling asks for a meta stream"
        meta_logits = nets.functional(fast, meta.inputs).logits[0]
        meta_losses = F.cross_entropy(meta_logits.float(), meta.targets, reduction="none")
        weights = torch.ones_like(meta_losses)
        if self.meta_loss_rescaling:
            weights = self.omega(*self.features_of(nets, fast, meta, meta_losses, meta_logits, "meta_batch"))
        if not self.path_norms and not self.first_order and self.meta_loss_rescaling:  # once an epoch
            self.path_norms = gradient_paths(meta_losses, weights, list(self.rescaler.parameters()))
        meta_losses = meta_losses * weights
        (optimizer,) = ctx.own_optimizers
        optimizer.zero_grad()
        omega = list(self.rescaler.parameters())
        if world_size() > 1:  # DDP does not see Ω (ddp_exempt): a backward through it would wait for θ's gradients
            meta_losses.sum().backward(inputs=omega)
            average_gradients(omega)  # one Ω on every rank
        else:
            ctx.backward(meta_losses.sum(), inputs=omega)  # ω only: no work for θ
        optimizer.step()

    @torch.no_grad()
    def features_of(self, nets: Networks, params: Mapping[str, Tensor], batch: Batch, losses: Tensor,
                    logits: Tensor, memory: str) -> tuple[Tensor, Tensor]:  # fmt: skip
        """``(B, F)`` float32 rescaler features and ``(B,)`` Ω groups of a batch whose pass-0 ``losses`` and
        ``logits`` are given; the ``memory`` (``"train_batch"`` or ``"meta_batch"``) takes the batch first."""
        groups = batch.targets if self.class_separation else torch.zeros_like(batch.targets)
        all_losses, all_logits = [losses.detach()], [logits.detach()]
        # input dropout drawn from (seed, step, stream), so a resumed run draws the same masks
        stream = ("train_batch", "meta_batch").index(memory)
        gen = torch.Generator(batch.inputs.device).manual_seed((self.seed * 1_000_003 + self.steps) * 2 + stream)
        for _ in range(self.passes - 1):  # at params, on copies of the BatchNorm buffers
            z = nets.functional(params, input_dropout(batch.inputs, self.pass_dropout, gen)).logits[0]
            all_logits.append(z)
            all_losses.append(F.cross_entropy(z.float(), batch.targets, reduction="none"))
        stats = pass_statistics(torch.stack(all_losses), torch.stack(all_logits), batch.targets)
        if self.features == "loss":
            return torch.stack([losses.detach().double(), stats[:, 4]], dim=1).float(), groups
        self.memories[memory].update(stats, groups)  # type: ignore[operator]
        cells = self.memories[memory].cells()  # type: ignore[operator]
        return rescaler_features(stats, groups, cells).float(), groups


def detached(params: Mapping[str, Tensor]) -> dict[str, Tensor]:
    return {name: value.detach() for name, value in params.items()}


def input_dropout(inputs: Tensor, p: float, generator: torch.Generator) -> Tensor:
    """Dropout with rate ``p`` on ``inputs (B, ...)``, drawn from ``generator``. Only non-zero entries draw a
    random number (dropping a zero changes nothing), which makes sparse TF-IDF rows cheap: 32 SMS rows hold
    about 500 non-zeros among 246,000 entries, and this CPU draws ~10 ns per number."""
    flat = inputs.reshape(-1)
    (nonzero,) = torch.nonzero(flat, as_tuple=True)
    if 2 * len(nonzero) > len(flat):  # dense (images): one mask over everything is cheaper than indexing
        keep = torch.rand(inputs.shape, generator=generator, device=inputs.device) >= p
        return inputs * keep / (1.0 - p)
    dropped = flat / (1.0 - p)
    dropped[nonzero[torch.rand(len(nonzero), generator=generator, device=inputs.device) < p]] = 0.0
    return dropped.view_as(inputs)


def gradient_paths(meta_losses: Tensor, weights: Tensor, omega: list[Tensor]) -> dict[str, float]:
    """Norms of the meta-gradient into ω along its two paths: through the virtual step ``θ′`` (the weights of
    the meta losses held fixed) and directly through the meta weights (``θ′`` held fixed).

    ``meta_losses (V,)`` must still depend on ω through ``θ′``, and ``weights (V,)`` through Ω.
    """

    def norm(objective: Tensor) -> float:  # 0 where a path is cut (e.g. a batch of one: normalised weights are 1)
        if not objective.requires_grad:
            return 0.0
        grads = torch.autograd.grad(objective, omega, retain_graph=True, allow_unused=True)
        return math.sqrt(sum(float((g.double() ** 2).sum()) for g in grads if g is not None))

    return {"grad_path_theta": norm((meta_losses * weights.detach()).sum()),
            "grad_path_direct": norm((meta_losses.detach() * weights).sum())}  # fmt: skip
