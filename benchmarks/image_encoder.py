"""How fast does the pretrained image encoder embed images on this machine? Variants side by side, one process.

    python benchmarks/image_encoder.py [--images 512] [--threads 2] [--onnx] [--device cuda] [--full]

Each variant embeds the same CIFAR-10 test images (``../shared/data/cifar10_jpeg``) after one warm-up batch and
reports images per second, and the ratio to the default (128 px, channels-last, batch 128, fp32). Quote the
ratios: absolute speeds on shared machines are noisy. ``--full`` also times the library call
(:func:`robustlabels.features.image.encode_images`, its default settings) on all 60,000 CIFAR-10 images, into an
empty cache and then from it, and the cosine of its features to the CPU's on the first 256 images. Results:
docs/features.md.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robustlabels.data.readers import read_cifar10
from robustlabels.features import image

CIFAR10 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar10_jpeg"


def rate(run: Any, images: np.ndarray, batch: int) -> float:
    run(images[:batch])  # warm-up: allocator, kernels, compilation
    start = time.perf_counter()
    for first in range(0, len(images), batch):
        run(images[first : first + batch])
    return len(images) / (time.perf_counter() - start)


def torch_runner(model: Any, spec: image.EncoderSpec, resolution: int, channels_last: bool, bf16: bool) -> Any:
    device = next(model.parameters()).device
    model = model.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)

    def run(batch: np.ndarray) -> np.ndarray:
        x = image.as_rgb_batch(batch, resolution, spec, str(device))
        x = x if channels_last else x.contiguous()
        autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        with torch.inference_mode(), autocast:
            return model(x).float().cpu().numpy()

    return run


def onnx_runner(model: Any, spec: image.EncoderSpec, resolution: int, threads: int) -> Any:
    import onnxruntime as ort

    path = Path("/tmp/robustlabels-effnet-lite0.onnx")
    torch.onnx.export(model.to(memory_format=torch.contiguous_format), torch.zeros(1, 3, resolution, resolution),
                      str(path), input_names=["x"], output_names=["f"], dynamic_axes={"x": {0: "b"}},
                      dynamo=False)  # fmt: skip
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda batch: session.run(None, {"x": image.as_rgb_batch(batch, resolution, spec).contiguous().numpy()})[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--onnx", action="store_true", help="also ONNX Runtime (pip install onnxruntime)")
    parser.add_argument("--compile", action="store_true", help="also torch.compile (minutes of compilation)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--full", action="store_true", help="also encode_images on all 60,000 images (above)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    images = read_cifar10(CIFAR10, "test")[0][: args.images]
    spec = image.resolve_encoder()
    model = image.load_encoder(spec).to(args.device)
    # Factories: each variant sets the shared model's memory format when it is built, right before it runs.
    variants: list[tuple[str, Any, int]] = [
        ("128 px, channels-last, batch 128, fp32 (default)", lambda: torch_runner(model, spec, 128, True, False), 128),
        ("128 px, contiguous (NCHW)", lambda: torch_runner(model, spec, 128, False, False), 128),
        ("128 px, batch 32", lambda: torch_runner(model, spec, 128, True, False), 32),
        ("128 px, batch 512", lambda: torch_runner(model, spec, 128, True, False), 512),
        ("128 px, batch 512, bf16 autocast", lambda: torch_runner(model, spec, 128, True, True), 512),
        ("128 px, bf16 autocast", lambda: torch_runner(model, spec, 128, True, True), 128),
        ("96 px", lambda: torch_runner(model, spec, 96, True, False), 128),
        ("160 px", lambda: torch_runner(model, spec, 160, True, False), 128),
        ("224 px", lambda: torch_runner(model, spec, 224, True, False), 128),
    ]
    if args.compile:
        variants.append(("128 px, torch.compile", lambda: torch_runner(torch.compile(model), spec, 128, True, False),
                         128))  # fmt: skip
    if args.onnx:
        variants.append(("128 px, ONNX Runtime", lambda: onnx_runner(model, spec, 128, args.threads), 128))
    print(f"| variant ({args.images} CIFAR-10 images, {args.device}, {args.threads} threads) | images/s | vs default | "
          "60,000 images |\n|---|---:|---:|---:|")  # fmt: skip
    base = None
    for name, build, batch in variants:
        speed = rate(build(), images, batch)
        base = base or speed
        print(f"| {name} | {speed:.0f} | {speed / base:.2f} | {60000 / speed / 60:.1f} min |", flush=True)
    if args.full:
        time_library_call(spec, model)


def time_library_call(spec: image.EncoderSpec, model: Any) -> None:
    """``encode_images`` on CIFAR-10's 60,000 images as a user calls it: cold cache, then warm; cosine to the CPU."""
    start = time.perf_counter()
    train, test = read_cifar10(CIFAR10, "train")[0], read_cifar10(CIFAR10, "test")[0]
    images = np.concatenate([train, test])
    print(f"\ndecoding {len(images)} JPEGs: {time.perf_counter() - start:.1f} s")
    with tempfile.TemporaryDirectory() as cache:
        for what in ("into an empty cache", "from the cache"):
            start = time.perf_counter()
            features = image.encode_images(images, cache_dir=cache)
            print(f"encode_images, {what}: {time.perf_counter() - start:.1f} s ({features.shape})", flush=True)
    cpu = torch_runner(model.cpu(), spec, 128, True, False)(images[:256])
    cosine = (cpu * features[:256]).sum(1) / np.linalg.norm(cpu, axis=1) / np.linalg.norm(features[:256], axis=1)
    print(f"cosine to the CPU's features, first 256 images: min {cosine.min():.5f}, mean {cosine.mean():.5f}")


if __name__ == "__main__":
    main()
