"""Training-step time of each strategy relative to cross-entropy, side by side in one process.

Every variant trains the same backbone on the same pre-built batches (forward, loss, backward, SGD step);
variants are interleaved round by round so that drifts in machine speed hit them all alike, and the
ratio to CE is taken per round, then the median over rounds is reported.

    python benchmarks/overhead.py --out docs/overhead.md
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from robustlabels.module import RobustModule
from robustlabels.regularizers import ELR, NeighborConsistency
from robustlabels.strategies import GCE, MKLSGD, SCE, AdaptiveK, CrossEntropy, Oracle, TrimmedLoss
from robustlabels.types import Batch

VARIANTS: dict[str, Callable[[], dict[str, Any]]] = {
    "CE": lambda: {"strategy": CrossEntropy()},
    "Oracle": lambda: {"strategy": Oracle()},
    "ELR": lambda: {"strategy": CrossEntropy(), "regularizers": [ELR()]},
    "NCR (batch)": lambda: {"strategy": CrossEntropy(), "regularizers": [NeighborConsistency(start_epoch=0)]},
    "NCR (dataset)": lambda: {
        "strategy": CrossEntropy(),
        "regularizers": [NeighborConsistency(start_epoch=0, pool="dataset")],
    },
    "AdaptiveK": lambda: {"strategy": AdaptiveK(vanilla_epochs=0)},
    "TrimmedLoss": lambda: {"strategy": TrimmedLoss(keep_fraction=0.6)},
    "MKLSGD": lambda: {"strategy": MKLSGD(k=2)},
    "GCE": lambda: {"strategy": GCE()},
    "SCE": lambda: {"strategy": SCE()},
}
TARGETS = {"ELR": 1.05, "AdaptiveK": 1.10, "GCE": 1.05, "SCE": 1.05, "NCR (batch)": 1.15, "NCR (dataset)": 1.35}


def make_batches(n: int, batch_size: int, shape: tuple[int, ...], num_samples: int, device: str) -> list[Batch]:
    """Random normalised inputs with noisy and clean labels; indices spread over ``num_samples``."""
    gen = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(n):
        clean = torch.randint(0, 10, (batch_size,), generator=gen)
        targets = torch.where(torch.rand(batch_size, generator=gen) < 0.4, torch.randint(0, 10, (batch_size,)), clean)
        index = torch.randint(0, num_samples, (batch_size,), generator=gen)
        x = torch.randn(batch_size, *shape, generator=gen)
        batches.append(Batch(x, targets, index, clean))
    return [Batch(*(t.to(device) for t in b)) for b in batches]


def build(name: str, backbone: str, shape: tuple[int, ...], num_samples: int, device: str) -> tuple[Any, Any]:
    torch.manual_seed(0)
    module = RobustModule(**VARIANTS[name](), backbone=backbone, num_classes=10, input_shape=shape).to(device)
    for part in (module.strategy, *module.regularizers):
        part.setup(num_samples=num_samples, num_classes=10)
        part.on_train_epoch_start(100)
    module.to(device)
    return module, torch.optim.SGD(module.nets.parameters(), lr=0.01, momentum=0.9)


def time_steps(module: Any, optimizer: Any, batches: list[Batch], device: str) -> float:
    """Seconds per step over ``batches``."""
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for batch in batches:
        loss = module.compute_loss(batch)[0]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / len(batches)


def run(args: argparse.Namespace) -> dict[str, Any]:
    shape = (1, 28, 28) if args.backbone == "small_cnn" else (3, 32, 32)
    batches = make_batches(args.steps, args.batch_size, shape, args.num_samples, args.device)
    built = {name: build(name, args.backbone, shape, args.num_samples, args.device) for name in VARIANTS}
    for module, optimizer in built.values():  # warm-up
        time_steps(module, optimizer, batches[:3], args.device)
    per_round: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for _ in range(args.rounds):
        for name, (module, optimizer) in built.items():
            per_round[name].append(time_steps(module, optimizer, batches, args.device))
    ce = per_round["CE"]
    ratios = {n: statistics.median(t / c for t, c in zip(ts, ce, strict=True)) for n, ts in per_round.items()}
    result = {"step_ms": {n: 1e3 * statistics.median(ts) for n, ts in per_round.items()}, "ratio": ratios}
    # NCR's dataset pool rebuilds its neighbour lists once per epoch: amortise that over an epoch's steps.
    ncr = built["NCR (dataset)"][0].regularizers[0]
    bank = torch.randn(ncr.bank_features.shape, generator=torch.Generator().manual_seed(0))
    ncr.bank_features = torch.nn.functional.normalize(bank, dim=1)  # a full bank, as after one epoch
    start = time.perf_counter()
    ncr.refresh_neighbors()
    refresh = time.perf_counter() - start
    steps_per_epoch = args.num_samples / args.batch_size
    extra = refresh / steps_per_epoch / statistics.median(ce)
    result["ncr_refresh_s"] = refresh
    result["ratio"]["NCR (dataset)"] += extra
    result["step_ms"]["NCR (dataset)"] += 1e3 * refresh / steps_per_epoch
    return result


def markdown(result: dict[str, Any], args: argparse.Namespace) -> str:
    lines = [
        f"Backbone `{args.backbone}`, batch {args.batch_size}, device {args.device}, "
        f"{torch.get_num_threads()} threads, {args.rounds} interleaved rounds of {args.steps} steps.",
        "",
        "| strategy | step (ms, median) | × CE (median of per-round ratios) | target |",
        "|---|---|---|---|",
    ]
    refresh_note = (f"NCR (dataset) includes its bank refresh, {result['ncr_refresh_s']:.2f} s per epoch over "
                    f"{args.num_samples} samples, amortised over {args.num_samples // args.batch_size} steps.")
    for name in VARIANTS:
        target = f"≤ {TARGETS[name]:.2f}×" if name in TARGETS else ""
        lines.append(f"| {name} | {result['step_ms'][name]:.1f} | {result['ratio'][name]:.3f} | {target} |")
    return "\n".join([*lines, "", refresh_note]) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="small_cnn", choices=["small_cnn", "preact_resnet18"])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--num-samples", type=int, default=20_000, help="training-set size (per-sample state)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", help="write the markdown table here")
    parser.add_argument("--json", help="write raw numbers here")
    args = parser.parse_args()
    result = run(args)
    table = markdown(result, args)
    print(table)
    if args.out:
        with open(args.out, "w") as f:
            f.write(table)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
