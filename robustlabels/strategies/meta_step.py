"""The virtual (look-ahead) step shared by the meta-learning strategies: ``θ′ = θ − Δ(∇θ L_in)``.

``θ′`` stays a differentiable function of whatever ``L_in`` depends on (per-sample weights, a weight
network's parameters), so a meta loss computed at ``θ′`` through ``Networks.functional`` back-propagates into
them: the second-order meta-gradient of Meta-Weight-Net, L2RW and STORM. ``torch.func`` replaces the
``higher`` library the reference codes use.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
from torch import Tensor

InnerUpdate = Literal["reset_adam", "sgd", "adam_state"]
INNER_UPDATES = ("reset_adam", "sgd", "adam_state")
ADAM_EPS = 1e-8


def inner_update(
    params: Mapping[str, Tensor],
    grads: Sequence[Tensor],
    *,
    rule: InnerUpdate,
    lr: float,
    optimizer: torch.optim.Optimizer | None = None,
) -> dict[str, Tensor]:
    """``θ′ = θ − Δ(g)`` for every parameter, differentiable in ``g``.

    Rules:
        ``sgd``: ``Δ = lr·g`` (Meta-Weight-Net's and L2RW's virtual step).
        ``reset_adam``: ``Δ = lr·g / (|g| + 1e-8)``, Adam's first step from an empty state: what STORM's
            classification code effectively takes every step, because ``higher`` never keeps Adam's state.
            It equals ``torch.optim.Adam``'s first step; written with ``|g|`` rather than ``sqrt(g²)`` so its
            derivative at ``g = 0`` is finite.
        ``adam_state``: Adam's next step with ``optimizer``'s moments as constants (our extension).
    """
    if rule == "adam_state" and not isinstance(optimizer, torch.optim.Adam | torch.optim.AdamW):
        raise ValueError(f"inner_update 'adam_state' needs an Adam optimizer; got {type(optimizer).__name__}")
    fast = {}
    for (name, param), grad in zip(params.items(), grads, strict=True):
        if rule == "sgd":
            step = grad
        elif rule == "reset_adam":
            step = grad / (grad.abs() + ADAM_EPS)
        else:
            step = adam_direction(param, grad, optimizer)  # type: ignore[arg-type]
        fast[name] = param - lr * step
    return fast


def adam_direction(param: Tensor, grad: Tensor, optimizer: torch.optim.Optimizer) -> Tensor:
    """``m̂ / (√v̂ + ε)`` of Adam's next step for ``param`` with gradient ``grad``, the stored moments constant."""
    group = next(g for g in optimizer.param_groups if any(p is param for p in g["params"]))
    beta1, beta2 = group["betas"]
    state: dict[str, Any] = optimizer.state.get(param, {})
    step = float(state.get("step", 0)) + 1
    m = beta1 * state.get("exp_avg", torch.zeros_like(param)) + (1 - beta1) * grad
    v = beta2 * state.get("exp_avg_sq", torch.zeros_like(param)) + (1 - beta2) * grad * grad
    m_hat, v_hat = m / (1 - beta1**step), v / (1 - beta2**step)
    return m_hat / (v_hat.clamp_min(1e-30).sqrt() + group["eps"])


def learning_rate(optimizer: Any) -> float:
    """The current learning rate of the networks' optimizer (its first parameter group)."""
    return float(optimizer.param_groups[0]["lr"])
