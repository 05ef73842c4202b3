"""``precision: auto``: bf16-mixed where the hardware computes in bf16 natively, fp32 elsewhere.

Measured in docs/benchmarks.md: on a CPU with AVX512_BF16, ``bf16-mixed`` trained 1.28× (small CNN) to 1.97×
(PreAct ResNet-18) faster end to end than fp32 at equal accuracy; on a CPU without it, bf16 is emulated and
slower than fp32; on an H200 it gained 1.14× on PreAct ResNet-18 (docs/results/gpu). ``auto`` is the fit CLI's
default; it logs its choice and the reason.
"""

from __future__ import annotations

from pathlib import Path

AUTO = "auto"
NATIVE_BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})  # /proc/cpuinfo names


def cpu_bf16_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> frozenset[str]:
    """The native-bf16 flags this CPU lists (empty where none, or where ``cpuinfo`` cannot be read)."""
    from robustlabels.neighbors._blas import cpu_flags

    return NATIVE_BF16_CPU_FLAGS & cpu_flags(cpuinfo)


def uses_cuda(accelerator: object) -> bool:
    """Whether a Trainer given ``accelerator`` (a name or an Accelerator) trains on a CUDA GPU; ``auto`` (or
    ``None``) picks one when it is there."""
    import torch

    name = accelerator if isinstance(accelerator, str) else type(accelerator).__name__ if accelerator else AUTO
    return torch.cuda.is_available() and (name.lower() in ("gpu", "cuda", AUTO) or "cuda" in name.lower())


def auto_precision(accelerator: object = AUTO, *, cpuinfo: str | Path = "/proc/cpuinfo") -> tuple[str, str]:
    """What ``precision: auto`` means for a Trainer given ``accelerator``: ``("bf16-mixed" | "32-true", why)``."""
    if uses_cuda(accelerator):
        import torch

        native = torch.cuda.is_bf16_supported()
        reason = f"{torch.cuda.get_device_name()} {'computes' if native else 'does not compute'} in bf16"
    else:
        flags = cpu_bf16_flags(cpuinfo)
        native = bool(flags)
        reason = f"this CPU lists {', '.join(sorted(flags))}" if native else "this CPU has no avx512_bf16 or amx_bf16"
    return ("bf16-mixed" if native else "32-true"), reason


def announce(chosen: str, reason: str) -> None:
    """Log what ``auto`` chose and why, once (rank zero) per run."""
    from pytorch_lightning.utilities import rank_zero_info

    rank_zero_info(f"precision auto -> {chosen} ({reason})")
