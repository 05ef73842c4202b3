"""Memory layout × precision for conv backbones on CPU: NCHW vs channels-last, fp32 vs bf16 autocast.

Bare training steps (forward, cross-entropy, backward, SGD) on one random batch; the four variants are
interleaved round by round in one process and the median step time is reported with the speed-up over
NCHW fp32. This is why ``RobustModule(channels_last=True)`` is the default.

    python benchmarks/layout.py --threads 1
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time

import torch
import torch.nn.functional as F

from robustlabels.nn.backbones import create_backbone

SHAPES = {"small_cnn": (1, 28, 28), "preact_resnet18": (3, 32, 32)}


def step_seconds(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, bf16: bool, steps: int) -> float:
    """Median seconds of ``steps`` training steps."""
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(net(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="small_cnn", choices=list(SHAPES))
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    shape = SHAPES[args.model]
    x, y = torch.randn(args.batch_size, *shape), torch.randint(0, 10, (args.batch_size,))
    variants = list(itertools.product([False, True], [False, True]))  # (channels_last, bf16)
    nets = {}
    for channels_last, bf16 in variants:
        torch.manual_seed(0)
        net = create_backbone(args.model, input_shape=shape, num_classes=10)
        nets[channels_last, bf16] = net.to(memory_format=torch.channels_last) if channels_last else net
    inputs = {False: x, True: x.contiguous(memory_format=torch.channels_last)}
    timings: dict[tuple[bool, bool], list[float]] = {v: [] for v in variants}
    for _ in range(args.rounds + 1):  # the first round is warm-up
        for channels_last, bf16 in variants:
            timings[channels_last, bf16].append(step_seconds(nets[channels_last, bf16], inputs[channels_last], y, bf16,
                                                             args.steps))  # fmt: skip
    base = statistics.median(timings[False, False][1:])
    print(f"{args.model}, batch {args.batch_size}, {args.threads} thread(s), {args.rounds} rounds × {args.steps} steps")
    print("| layout | precision | step (ms) | samples/s | speed-up vs NCHW fp32 |\n|---|---|---:|---:|---:|")
    for channels_last, bf16 in variants:
        median = statistics.median(timings[channels_last, bf16][1:])
        print(f"| {'channels-last' if channels_last else 'NCHW'} | {'bf16 autocast' if bf16 else 'fp32'} | "
              f"{1e3 * median:.1f} | {args.batch_size / median:,.0f} | {base / median:.2f}× |")


if __name__ == "__main__":
    main()
