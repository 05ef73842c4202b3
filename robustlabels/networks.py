"""``Networks``: the backbones of one run, and the only code that runs them.

Every forward pass of a training run goes through here: the training forward (with nested dropout between
features and head), eval-mode logits for selection rules that score samples without gradients, a functional
forward with substituted parameters for second-order (meta) steps, and the features nested-dropout
validation scores. The memory layout (channels-last) is decided once, here.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from robustlabels.errors import InputError
from robustlabels.nn.backbones import Backbone, create_backbone
from robustlabels.nn.nested_dropout import NestedDropout
from robustlabels.types import Forward


class Networks(nn.Module):
    """``count`` independently initialised backbones, optionally with nested dropout before their heads.

    Args:
        backbone: a name of :data:`robustlabels.nn.backbones.BACKBONES` or a timm model.
        count: how many networks (the strategy's ``num_networks``).
        input_shape: one sample's shape, ``(C, H, W)`` or ``(D,)``.
        num_classes: ``C``.
        backbone_kwargs: options of the backbone.
        channels_last: keep 4-D inputs and conv weights in NHWC layout (faster on CPU and GPU tensor cores).
        nested_dropout: nested dropout on every network's features; the heads are re-created without bias.
    """

    def __init__(
        self,
        backbone: str,
        *,
        count: int,
        input_shape: Sequence[int],
        num_classes: int,
        backbone_kwargs: Mapping[str, Any] | None = None,
        channels_last: bool = True,
        nested_dropout: NestedDropout | None = None,
    ) -> None:
        super().__init__()
        if num_classes < 2 or not input_shape:
            raise InputError(f"the networks need `num_classes` >= 2 and an `input_shape`; got {num_classes}, "
                             f"{tuple(input_shape)}")  # fmt: skip
        self.count, self.num_classes = count, num_classes
        for i in range(count):  # submodules "0", "1", ...: checkpoint keys nets.0.*, as a ModuleList would give
            net = create_backbone(backbone, input_shape=input_shape, num_classes=num_classes, **(backbone_kwargs or {}))
            self.add_module(str(i), net)
        self.nested_dropout = nested_dropout
        if nested_dropout is not None:
            for net in self:
                net.remove_head_bias()
            nested_dropout.network_k = torch.zeros(count if count > 1 else 0, dtype=torch.long)
        self.channels_last = channels_last and len(input_shape) == 3
        if self.channels_last:
            for net in self:
                net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[Backbone]:
        return (self[i] for i in range(self.count))

    def __getitem__(self, i: int) -> Backbone:
        if not -self.count <= i < self.count:
            raise IndexError(f"network {i} of {self.count}")
        return self._modules[str(i % self.count)]  # type: ignore[return-value]

    # ---- forward passes -------------------------------------------------------------------------------
    def layout(self, inputs: Tensor) -> Tensor:
        """``inputs`` in the networks' memory layout (NHWC for 4-D inputs with ``channels_last``)."""
        if self.channels_last and inputs.dim() == 4:
            return inputs.contiguous(memory_format=torch.channels_last)
        return inputs

    def features(self, inputs: Tensor | Sequence[Tensor]) -> tuple[Tensor, ...]:
        """``(B, D)`` pre-logit features of every network, on shared inputs or one ``(B, ...)`` tensor each."""
        if isinstance(inputs, Tensor):
            inputs = [self.layout(inputs)] * len(self)  # one layout conversion, shared
        return tuple(net.forward_features(self.layout(x)) for net, x in zip(self, inputs, strict=True))

    def forward(self, inputs: Tensor | Sequence[Tensor], *, shared_k: bool = True) -> Forward:
        """Features ``(B, D)`` and logits ``(B, C)`` of every network in its current mode.

        With nested dropout in training mode, ``shared_k`` draws one ``k`` for all networks per call (else
        one each); ``Forward.features`` stay unmasked.
        """
        features = self.features(inputs)
        heads: Sequence[Tensor] = features
        if self.nested_dropout is not None:
            heads = (self.nested_dropout.apply_shared(features) if shared_k
                     else tuple(self.nested_dropout(f) for f in features))  # fmt: skip
        return Forward(features, tuple(net.forward_head(h) for net, h in zip(self, heads, strict=True)))

    def functional(
        self, params: Mapping[str, Tensor], inputs: Tensor | Sequence[Tensor], *, shared_k: bool = True
    ) -> Forward:
        """:meth:`forward` with parameters replaced by ``params`` (names as in :meth:`named_parameters`; the
        others keep their values), for second-order steps: gradients flow into ``params``. Buffers are copied,
        so the pass leaves BatchNorm running statistics untouched."""
        buffers = {name: buffer.clone() for name, buffer in self.named_buffers()}
        out: Forward = torch.func.functional_call(self, (dict(params), buffers), (inputs,), {"shared_k": shared_k})
        return out

    @torch.no_grad()
    def eval_logits(self, inputs: Sequence[Tensor], *, own_k: bool = False) -> tuple[Tensor, ...]:
        """``(B_i, C)`` logits of network ``i`` on ``inputs[i]`` in eval mode, without gradients.

        Nested dropout keeps the validation-optimal ``K`` of the model (the mean of the networks' logits), or
        with ``own_k`` each network's own. Every submodule's mode is restored afterwards (so frozen BatchNorm
        layers stay frozen).
        """
        modes = [(module, module.training) for module in self.modules()]
        self.eval()
        try:
            logits = []
            for i, (net, x) in enumerate(zip(self, inputs, strict=True)):
                features = net.forward_features(self.layout(x))
                if self.nested_dropout is not None:
                    limit = (self.nested_dropout.network_limit(i, features.shape[1]) if own_k
                             else self.nested_dropout.model_limit(features.shape[1]))  # fmt: skip
                    features = self.nested_dropout(features, limit)
                logits.append(net.forward_head(features))
            return tuple(logits)
        finally:
            for module, mode in modes:
                module.training = mode

    def head_weights(self) -> tuple[Tensor, ...]:
        """``(C, D)`` weights of every network's linear head (nested-dropout validation scores prefixes)."""
        return tuple(net.linear_head().weight for net in self)

    # ---- training -------------------------------------------------------------------------------------
    def clip_grad_norms_(self, max_norm: float | None) -> None:
        """Clip each network's gradient norm to ``max_norm`` on its own (a joint norm would couple them)."""
        if max_norm is not None:
            for net in self:
                torch.nn.utils.clip_grad_norm_(net.parameters(), max_norm)

    def freeze_batchnorm(self) -> None:
        """Put every BatchNorm layer in eval mode (running statistics used, not updated) and stop its affine
        parameters' gradients, like the official Nested Co-teaching fine-tuning's ``--freeze-bn``. Lightning
        puts modules back in training mode after validation, so call it before each training forward."""
        for module in self.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()
                module.requires_grad_(False)


def check_input_fits(nets: Networks, backbone: str, input_shape: Sequence[int]) -> None:
    """One-line error when an image backbone cannot take the data's image size (a 5×5 kernel on a 2×2 map):
    a forward pass of two blank images, in eval mode so no statistics change. Feature vectors always fit."""
    if len(input_shape) != 3:
        return
    was_training = nets.training
    nets.eval()
    try:
        with torch.no_grad():
            nets(torch.zeros(2, *input_shape))
    except (RuntimeError, ValueError, AssertionError) as err:  # timm asserts a fixed image size
        reason = (str(err).splitlines() or [type(err).__name__])[0]
        raise InputError(f"backbone {backbone!r} cannot take the data's {'x'.join(map(str, input_shape))} inputs "
                         f"(C x H x W): {reason}") from None  # fmt: skip
    finally:
        nets.train(was_training)
