"""The compute floor of the pairs-cpu suite: one training step of the pairwise reward MLP, outside Lightning.

A step is the forward of both sides through the scorer (384 -> hidden -> 1), Bradley-Terry cross-entropy, backward and
AdamW, single-threaded as each suite cell runs. From it and the suite's cell counts follows the least time the suite
can take on 2 cores, whatever the framework does (docs/benchmarks.md, "Preference pairs").

    .venv/bin/python benchmarks/pairs_step.py --batch 128 512 --hidden 256 512
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from robustlabels.nn.backbones import create_backbone


def step_ms(batch: int, hidden: int, *, dim: int = 384, steps: int = 50) -> float:
    """Median milliseconds of one training step of a ``pairwise`` MLP on ``(batch, 2, dim)`` inputs."""
    torch.manual_seed(0)
    net = create_backbone("pairwise", input_shape=(2, dim), num_classes=2, hidden=hidden)
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3)
    x, y = torch.randn(batch, 2, dim), torch.randint(0, 2, (batch,))
    times = []
    for i in range(steps + 5):
        started = time.perf_counter()
        loss = F.cross_entropy(net(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if i >= 5:
            times.append(time.perf_counter() - started)
    return 1e3 * sorted(times)[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[128, 512])
    parser.add_argument("--hidden", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--pairs", type=int, default=30_108, help="training pairs (IMDB-Pref)")
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("| batch | hidden | step (ms) | one model, all epochs (s) |\n|---:|---:|---:|---:|")
    for batch in args.batch:
        for hidden in args.hidden:
            ms = step_ms(batch, hidden)
            steps = -(-args.pairs // batch) * args.epochs
            print(f"| {batch} | {hidden} | {ms:.2f} | {ms * steps / 1e3:.1f} |")


if __name__ == "__main__":
    main()
