"""Batched, on-device image preprocessing: uint8 → normalised float, random crop and flip.

Everything here works on whole ``(B, C, H, W)`` batches on the training device, so augmentation never runs
per sample through PIL in the data-loading loop.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def normalize(images: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """``(B, C, H, W)`` uint8 → float32 in ``[0, 1]``, then per-channel ``(x − mean) / std``."""
    x = images.float().div_(255.0)
    return (x - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)


def random_crop(images: Tensor, padding: int) -> Tensor:
    """Zero-pad by ``padding`` and crop back to ``(H, W)`` at a random offset per sample.

    ``(B, C, H, W)`` → ``(B, C, H, W)``; the same as torchvision's ``RandomCrop(H, padding)``, batched.
    """
    if padding <= 0:
        return images
    b, _, h, w = images.shape
    padded = F.pad(images, (padding, padding, padding, padding))
    top = torch.randint(0, 2 * padding + 1, (b, 1), device=images.device)
    left = torch.randint(0, 2 * padding + 1, (b, 1), device=images.device)
    rows = (top + torch.arange(h, device=images.device)).view(b, 1, h, 1)
    cols = (left + torch.arange(w, device=images.device)).view(b, 1, 1, w)
    batch = torch.arange(b, device=images.device).view(b, 1, 1, 1)
    channels = torch.arange(images.shape[1], device=images.device).view(1, -1, 1, 1)
    return padded[batch, channels, rows, cols]


def random_hflip(images: Tensor) -> Tensor:
    """Flip each ``(C, H, W)`` image left-right with probability 1/2."""
    flip = torch.rand(images.shape[0], device=images.device) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), images.flip(-1), images)


def center_crop(images: Tensor, size: int) -> Tensor:
    """``(B, C, H, W)`` → ``(B, C, size, size)``, the central square (torchvision's ``CenterCrop(size)``)."""
    top, left = (images.shape[-2] - size) // 2, (images.shape[-1] - size) // 2
    return images[..., top : top + size, left : left + size]


def random_crop_to(images: Tensor, size: int) -> Tensor:
    """``(B, C, H, W)`` → ``(B, C, size, size)`` at a random offset per sample, without padding (torchvision's
    ``RandomCrop(size)`` on images larger than ``size``), batched."""
    b, c, h, w = images.shape
    top = torch.randint(0, h - size + 1, (b, 1), device=images.device)
    left = torch.randint(0, w - size + 1, (b, 1), device=images.device)
    rows = (top + torch.arange(size, device=images.device)).view(b, 1, size, 1)
    cols = (left + torch.arange(size, device=images.device)).view(b, 1, 1, size)
    batch = torch.arange(b, device=images.device).view(b, 1, 1, 1)
    channels = torch.arange(c, device=images.device).view(1, -1, 1, 1)
    return images[batch, channels, rows, cols]
