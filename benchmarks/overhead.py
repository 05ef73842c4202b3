"""Training-step time of each strategy relative to cross-entropy, side by side in one process.

Every variant trains the same backbone on the same pre-built batches (forward, loss, backward, SGD step);
variants are interleaved round by round so that drifts in machine speed hit them all alike, and the
ratio to CE is taken per round, then the median over rounds is reported.

NCR's dataset pool also rebuilds its neighbour lists once per ``refresh_every`` epochs. Each round times
one refresh over a full bank (saved real features with ``--bank``, else a seeded clustered mixture; random
features would make an approximate index look worse and exact search look no different) and adds it to
that round's NCR step time, amortised over an epoch's steps; recall@k of the refresh against exact search
is reported too.

    python benchmarks/overhead.py --out docs/overhead.md
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from robustlabels.memory import keep_freed_heap
from robustlabels.module import RobustModule
from robustlabels.nn.nested_dropout import NestedDropout
from robustlabels.regularizers import ELR, NeighborConsistency
from robustlabels.regularizers.base import combine_losses
from robustlabels.regularizers.neighbor_consistency import bank_index
from robustlabels.strategies import GCE, MKLSGD, SCE, AdaptiveK, CrossEntropy, Oracle, TrimmedLoss
from robustlabels.strategies.base import ManualStep, Strategy
from robustlabels.strategies.co_teaching import CoTeaching
from robustlabels.strategies.elr_plus import ELRPlus
from robustlabels.strategies.meta_weight_net import L2RW, MetaWeightNet
from robustlabels.strategies.storm import MetaLossRescaling
from robustlabels.types import Batch, Forward, StepResult, TrainData


class TwoNetworksCE(Strategy):
    """The floor of every two-network strategy: two networks, each with plain CE on the whole batch."""

    num_networks = 2

    def compute_loss(self, batch: Batch, out: Forward) -> StepResult:
        return StepResult(sum(F.cross_entropy(z.float(), batch.targets) for z in out.logits))


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
    "TwoNetworksCE": lambda: {"strategy": TwoNetworksCE()},
    "CoTeaching": lambda: {"strategy": CoTeaching(forget_rate=0.4)},  # two networks: ~2x CE by construction
    "NestedDropout": lambda: {"strategy": CrossEntropy(), "nested_dropout": NestedDropout(sigma=10.0)},
    # two networks trained on mixup batches, plus a no-grad forward of each weight average and its update
    "ELRPlus": lambda: {"strategy": ELRPlus()},
    # issue 13: look-ahead steps on a meta batch (manual optimisation)
    "MetaWeightNet": lambda: {"strategy": MetaWeightNet()},
    "L2RW": lambda: {"strategy": L2RW()},
    "STORM": lambda: {"strategy": MetaLossRescaling()},
    "STORM first-order": lambda: {"strategy": MetaLossRescaling(first_order=True)},
}
TARGETS = {"ELR": 1.05, "AdaptiveK": 1.10, "GCE": 1.05, "SCE": 1.05, "NCR (batch)": 1.15, "NCR (dataset)": 1.35}
TARGETS |= {"CoTeaching": 2.10, "NestedDropout": 1.05}  # issue 6
TARGETS |= {"MetaWeightNet": 3.6, "STORM": 4.0, "STORM first-order": 2.5}  # issue 13


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
    """The module of a variant, set up as ``fit`` would, and its optimizer: the networks' SGD, and for a strategy
    that optimises by hand the :class:`ManualStep` controls around it (with the strategy's own optimizers)."""
    torch.manual_seed(0)
    module = RobustModule(**VARIANTS[name](), backbone=backbone, num_classes=10, input_shape=shape).to(device)
    inputs = torch.zeros(1, *shape).expand(num_samples, *shape)  # a view: the strategies only read sizes here
    module.strategy.setup(TrainData(num_samples, 10, inputs, torch.zeros(num_samples, dtype=torch.long)))
    module.strategy.on_train_epoch_start(100)
    for reg in module.regularizers:
        reg.setup(num_samples=num_samples, num_classes=10)
        reg.on_train_epoch_start(100)
    module.to(device)
    optimizer = torch.optim.SGD(module.nets.parameters(), lr=0.01, momentum=0.9)
    if not module.strategy.manual_optimization:
        return module, optimizer
    return module, ManualStep(module.nets, optimizer, module.strategy.optimizers(), backward=torch.Tensor.backward,
                              after_step=module.strategy.after_optimizer_step,
                              add_regularizers=module.regularizers.combine)  # fmt: skip


def time_steps(module: Any, optimizer: Any, batches: list[Batch], device: str) -> float:
    """Seconds per step over ``batches``."""
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for i, batch in enumerate(batches):  # RobustModule.training_step's work, without Lightning's logging
        if isinstance(optimizer, ManualStep):  # the meta batch: another batch of the same kind
            module.strategy.manual_step(module.nets, batch, batches[i - 1], optimizer)
            continue
        result = module.strategy.step(module.nets, batch)
        loss = combine_losses(result.loss, module.regularizers, batch, result.out)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        module.strategy.after_optimizer_step(module.nets)  # ELR+'s weight averages
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / len(batches)


def clustered_bank(n: int, d: int, seed: int = 0, classes: int = 10, rank: int = 32) -> torch.Tensor:
    """``(n, d)`` unit-norm stand-in for trained features: ReLU of class centre + low-rank spread + noise."""
    gen = torch.Generator().manual_seed(seed)
    centres = 3 * torch.randn(classes, d, generator=gen)
    labels = torch.randint(0, classes, (n,), generator=gen)
    spread = torch.randn(n, rank, generator=gen) @ torch.randn(rank, d, generator=gen)
    x = torch.relu(centres[labels] + spread + 0.3 * torch.randn(n, d, generator=gen))
    return torch.nn.functional.normalize(x, dim=1)


def trained_bank(path: str, train_subset: int | None = 20_000) -> torch.Tensor:
    """``(N, D)`` real features: a saved ``.npy``, or a ``.ckpt`` of ``configs/fashion_mnist/ce.yaml``, whose
    penultimate features of the config's training subset (``None``: all 54k) are extracted, as NCR's bank
    would hold them."""
    if not path.endswith(".ckpt"):
        return torch.from_numpy(np.load(path)).float()
    from robustlabels.data.augment import normalize
    from robustlabels.data.images import FashionMNISTDataModule
    from robustlabels.noise import SymmetricNoise

    net = RobustModule(strategy=CrossEntropy(), backbone="small_cnn", num_classes=10, input_shape=(1, 28, 28))
    net.load_state_dict(torch.load(path, map_location="cpu", weights_only=False)["state_dict"])
    data = FashionMNISTDataModule(train_subset=train_subset, noise=SymmetricNoise(rate=0.4, exact=True))
    data.setup()
    with torch.no_grad():
        images = data.datasets["train"].inputs.split(2048)
        return torch.cat([net.nets[0].forward_features(normalize(x, data.mean, data.std)) for x in images])


def time_refresh(ncr: NeighborConsistency, bank: torch.Tensor) -> float:
    """Seconds of one ``refresh_neighbors`` over ``bank`` (restored first: training steps overwrite rows)."""
    ncr.bank_features = bank.clone()
    if ncr.bank_features.is_cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    ncr.refresh_neighbors()
    if ncr.bank_features.is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start


def compare_with_exact(ncr: NeighborConsistency, bank: torch.Tensor) -> tuple[float, float, float]:
    """Recall@k of ``ncr``'s neighbour lists over ``bank`` against an exact (``Flat``) refresh, and the seconds
    of both refreshes, run back to back."""
    approx_s = time_refresh(ncr, bank)
    exact = NeighborConsistency(k=ncr.k, pool="dataset", index="Flat")
    exact.setup(num_samples=ncr.num_samples, num_classes=ncr.num_classes)
    exact_s = time_refresh(exact, bank)
    hits = (ncr.bank_neighbors.unsqueeze(2) == exact.bank_neighbors.unsqueeze(1)).any(2)
    return float(hits.float().mean()), approx_s, exact_s


def run(args: argparse.Namespace) -> dict[str, Any]:
    shape = (1, 28, 28) if args.backbone == "small_cnn" else (3, 32, 32)
    bank = None
    if args.bank:
        bank = torch.nn.functional.normalize(trained_bank(args.bank), dim=1).to(args.device)
        args.num_samples = len(bank)
    batches = make_batches(args.steps, args.batch_size, shape, args.num_samples, args.device)
    built = {name: build(name, args.backbone, shape, args.num_samples, args.device) for name in args.variants}
    for module, optimizer in built.values():  # warm-up
        time_steps(module, optimizer, batches[:3], args.device)
    ncr = built["NCR (dataset)"][0].regularizers[0] if "NCR (dataset)" in built else None
    if ncr is not None:
        if bank is None:
            bank = clustered_bank(args.num_samples, ncr.bank_features.shape[1]).to(args.device)
        time_refresh(ncr, bank)  # a full bank and its neighbour lists, as after one epoch: steps use the term
    per_round: dict[str, list[float]] = {name: [] for name in built}
    refresh: list[float] = []
    for _ in range(args.rounds):
        for name, (module, optimizer) in built.items():
            per_round[name].append(time_steps(module, optimizer, batches, args.device))
        if ncr is not None:
            refresh.append(time_refresh(ncr, bank))
    ce = per_round["CE"]
    result: dict[str, Any] = {}
    if ncr is not None:  # NCR's dataset pool rebuilds its neighbours once per epoch: amortise over its steps
        steps_per_epoch = args.num_samples / args.batch_size
        result["ncr_steps_only_ratio"] = statistics.median(t / c for t, c in zip(per_round["NCR (dataset)"], ce,
                                                                                 strict=True))  # fmt: skip
        per_round["NCR (dataset)"] = [t + r / steps_per_epoch for t, r in zip(per_round["NCR (dataset)"], refresh,
                                                                              strict=True)]  # fmt: skip
        result["ncr_refresh_s"] = statistics.median(refresh)
        result["ncr_index"] = bank_index(ncr.index, args.num_samples, ncr.nprobe)
        result["ncr_refresh_recall"], result["ncr_refresh_again_s"], result["ncr_exact_refresh_s"] = (
            compare_with_exact(ncr, bank))  # fmt: skip
    result["ratio"] = {n: statistics.median(t / c for t, c in zip(ts, ce, strict=True)) for n, ts in per_round.items()}
    result["step_ms"] = {n: 1e3 * statistics.median(ts) for n, ts in per_round.items()}
    return result


def peak_memory_mib(name: str, args: argparse.Namespace) -> float:
    """MiB by which a variant's training steps raise the resident memory at its peak above where it stood before
    them (model and batches built): what a step holds at once. Measured in a fresh process with glibc's default
    trimming, so freed tensors go back to the system and a step's allocations show up as new resident pages."""
    command = [sys.executable, __file__, "--peak-of", name, "--glibc-trim", "--backbone", args.backbone,
               "--batch-size", str(args.batch_size), "--num-samples", str(args.num_samples), "--device",
               args.device]  # fmt: skip
    return float(subprocess.run(command, capture_output=True, text=True, check=True).stdout.split()[-1])


def status_kib(field: str) -> int:
    """A ``/proc/self/status`` field in KiB (Linux)."""
    line = next(ln for ln in Path("/proc/self/status").read_text().splitlines() if ln.startswith(field + ":"))
    return int(line.split()[1])


def measure_peak(name: str, args: argparse.Namespace) -> float:
    shape = (1, 28, 28) if args.backbone == "small_cnn" else (3, 32, 32)
    batches = make_batches(4, args.batch_size, shape, args.num_samples, args.device)
    module, optimizer = build(name, args.backbone, shape, args.num_samples, args.device)
    time_steps(module, optimizer, batches[:1], args.device)  # lazy allocations of the first step (optimizer state)
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM, the peak resident size, to the current one
    before = status_kib("VmRSS")
    time_steps(module, optimizer, batches, args.device)
    return (status_kib("VmHWM") - before) / 1024


def markdown(result: dict[str, Any], args: argparse.Namespace) -> str:
    lines = [
        f"Backbone `{args.backbone}`, batch {args.batch_size}, device {args.device}, "
        f"{torch.get_num_threads()} threads, {args.rounds} interleaved rounds of {args.steps} steps.",
        "",
        "| strategy | step (ms, median) | × CE (median of per-round ratios) | target |"
        + (" peak memory of a step (× CE) |" if "peak_mib" in result else ""),
        "|---|---|---|---|" + ("---|" if "peak_mib" in result else ""),
    ]
    for name in args.variants:
        target = f"≤ {TARGETS[name]:.2f}×" if name in TARGETS else ""
        memory = f" {result['peak_mib'][name]:.0f} MiB ({result['peak_mib'][name] / result['peak_mib']['CE']:.2f}×) |" \
            if "peak_mib" in result else ""  # fmt: skip
        lines.append(f"| {name} | {result['step_ms'][name]:.1f} | {result['ratio'][name]:.3f} | {target} |{memory}")
    if "ncr_index" in result:
        index, nprobe = result["ncr_index"]
        lines += ["", (
            f"NCR (dataset) includes its bank refresh (index `{index}`, nprobe {nprobe}), "
            f"{result['ncr_refresh_s']:.3f} s per epoch (median) over {args.num_samples} samples, amortised over "
            f"{args.num_samples // args.batch_size} steps ({result['ncr_steps_only_ratio']:.3f}× CE without it); "
            f"recall@10 against exact search {result['ncr_refresh_recall']:.4f}. Back to back, this refresh took "
            f"{result['ncr_refresh_again_s']:.3f} s and an exact one (`Flat`) {result['ncr_exact_refresh_s']:.3f} s."
        )]  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="small_cnn", choices=["small_cnn", "preact_resnet18"])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--num-samples", type=int, default=20_000, help="training-set size (per-sample state)")
    parser.add_argument("--bank", help="real features for NCR's refresh: (N, D) .npy, or a .ckpt of "
                        "configs/fashion_mnist/ce.yaml to extract them from (sets --num-samples)")  # fmt: skip
    parser.add_argument("--variants", type=lambda text: text.split(","), default=list(VARIANTS),
                        help=f"comma-separated subset of: {', '.join(VARIANTS)} (CE is always timed)")
    parser.add_argument("--glibc-trim", action="store_true",
                        help="keep glibc's default heap trimming (robustlabels.fit turns it off)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--memory", action="store_true", help="also measure each variant's peak memory per step")
    parser.add_argument("--peak-of", help=argparse.SUPPRESS)  # internal: one variant's peak, in a fresh process
    parser.add_argument("--out", help="write the markdown table here")
    parser.add_argument("--json", help="write raw numbers here")
    args = parser.parse_args()
    if not args.glibc_trim:
        keep_freed_heap()  # as `python -m robustlabels.fit` does
    unknown = [name for name in args.variants if name not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant {unknown[0]!r}; choose from: {', '.join(VARIANTS)}")
    if args.peak_of:
        print(measure_peak(args.peak_of, args))
        return
    args.variants = ["CE", *(name for name in args.variants if name != "CE")]
    result = run(args)
    if args.memory:
        result["peak_mib"] = {name: peak_memory_mib(name, args) for name in args.variants}
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
