"""Training-step time inside a real Lightning ``fit`` (data loading, logging and hooks included), per strategy.

Each round fits every variant for ``--epochs`` on a Fashion-MNIST subset with the small CNN, interleaved round
by round, and records three times:

- **step**: the median time between ``on_train_batch_start`` and ``on_train_batch_end`` (first 5 steps skipped);
- **epoch / step**: each epoch's wall time from ``on_train_epoch_start`` to ``on_train_epoch_end`` divided by its
  steps, median over the epochs from ``--ncr-start`` on. This includes what runs once per epoch, such as NCR's
  dataset-pool refresh (called from the module's ``on_train_epoch_start``), and the data loading between steps;
- **refresh**: the median seconds of NCR's ``refresh_neighbors`` (dataset pool only).

Ratios to the first variant are per round, then the median over rounds. Besides the registry's strategy names,
``ncr_batch`` and ``ncr_dataset`` are cross-entropy plus NCR (the CPU suite's settings: α 0.3, T 2, k 10) with the
batch or the dataset pool, switched on at epoch ``--ncr-start``. Complements ``overhead.py``, which times bare steps.

    python benchmarks/fit_steps.py                                  # heap kept, as robustlabels.fit does
    ROBUSTLABELS_KEEP_FREED_HEAP=0 python benchmarks/fit_steps.py   # glibc's default trimming
    OMP_NUM_THREADS=1 python benchmarks/fit_steps.py --strategies cross_entropy,ncr_dataset --train-subset 20000 \
        --val-fraction 0.05 --epochs 4 --rounds 3 --threads 1       # NCR's dataset pool (docs/benchmarks.md)
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
from typing import Any

import pytorch_lightning as pl
import torch

from robustlabels.data import FashionMNISTDataModule
from robustlabels.memory import keep_freed_heap
from robustlabels.module import RobustModule
from robustlabels.noise import SymmetricNoise
from robustlabels.regularizers import NeighborConsistency
from robustlabels.strategies import STRATEGIES, CrossEntropy


class Timer(pl.Callback):
    """Per-step and per-epoch wall times (epoch: seconds and the number of steps it ran)."""

    def __init__(self) -> None:
        self.steps: list[float] = []
        self.epochs: list[tuple[float, int]] = []
        self.step_start = self.epoch_start = 0.0
        self.epoch_steps = 0

    def on_train_epoch_start(self, *args: Any) -> None:  # runs before the module's hook (and NCR's refresh)
        self.epoch_start, self.epoch_steps = time.perf_counter(), 0

    def on_train_batch_start(self, *args: Any) -> None:
        self.step_start = time.perf_counter()

    def on_train_batch_end(self, *args: Any) -> None:
        self.steps.append(time.perf_counter() - self.step_start)
        self.epoch_steps += 1

    def on_train_epoch_end(self, *args: Any) -> None:
        self.epochs.append((time.perf_counter() - self.epoch_start, self.epoch_steps))


def build_module(name: str, args: argparse.Namespace) -> RobustModule:
    """A registry strategy by name, or cross-entropy plus NCR for ``ncr_batch`` / ``ncr_dataset``."""
    regularizers = []
    if name.startswith("ncr_"):
        pool = name.removeprefix("ncr_")
        strategy = CrossEntropy()
        regularizers = [NeighborConsistency(weight=0.3, temperature=2.0, k=10, start_epoch=args.ncr_start, pool=pool)]
    else:
        strategy = STRATEGIES.get(name)()
    return RobustModule(strategy, backbone="small_cnn", num_classes=10, input_shape=(1, 28, 28),
                        regularizers=regularizers,
                        optimizer=lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9))  # fmt: skip


def timed_refreshes(module: RobustModule) -> list[float]:
    """Wrap every NCR regularizer's ``refresh_neighbors`` of ``module`` to record its seconds in the returned list."""
    seconds: list[float] = []
    for reg in module.regularizers:
        if isinstance(reg, NeighborConsistency):
            original = reg.refresh_neighbors

            @functools.wraps(original)
            def refresh(original: Any = original) -> None:
                start = time.perf_counter()
                original()
                seconds.append(time.perf_counter() - start)

            reg.refresh_neighbors = refresh  # type: ignore[method-assign]
    return seconds


def fit_times(name: str, args: argparse.Namespace) -> dict[str, float]:
    """One fit of ``name``: median step seconds, median epoch seconds per step, median refresh seconds."""
    pl.seed_everything(0, verbose=False)
    held_out = {} if args.val_fraction is None else {"val_fraction": args.val_fraction}
    data = FashionMNISTDataModule(batch_size=128, train_subset=args.train_subset, noise=SymmetricNoise(rate=0.4),
                                  **held_out)  # fmt: skip
    model = build_module(name, args)
    refreshes = timed_refreshes(model)
    timer = Timer()
    trainer = pl.Trainer(max_epochs=args.epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[timer], limit_val_batches=0,
                         num_sanity_val_steps=0)  # fmt: skip
    trainer.fit(model, datamodule=data)
    epochs = timer.epochs[args.ncr_start :] or timer.epochs
    return {
        "step": statistics.median(timer.steps[5:]),
        "epoch_per_step": statistics.median(seconds / steps for seconds, steps in epochs),
        "refresh": statistics.median(refreshes) if refreshes else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strategies", default="cross_entropy,co_teaching,elr_plus",
                        help="registry names, ncr_batch or ncr_dataset; the first is the reference")  # fmt: skip
    parser.add_argument("--train-subset", type=int, default=6000)
    parser.add_argument("--val-fraction", type=float, help="held out of the subset (the suite: 0.05; default: "
                        "the data module's)")  # fmt: skip
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--ncr-start", type=int, default=1, help="NCR's start_epoch; epoch times from here on")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.ncr_start >= args.epochs:
        parser.error("--ncr-start must be below --epochs")
    if args.threads:
        torch.set_num_threads(args.threads)
    kept = keep_freed_heap()
    names = args.strategies.split(",")
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    for _ in range(args.rounds):
        for name in names:
            runs[name].append(fit_times(name, args))

    def ratio(name: str, key: str) -> float:
        return statistics.median(r[key] / c[key] for r, c in zip(runs[name], runs[names[0]], strict=True))

    print(
        f"heap kept: {kept}; {torch.get_num_threads()} threads; {args.rounds} rounds of {args.epochs} epochs; "
        f"{args.train_subset} samples (val fraction {args.val_fraction}); NCR from epoch {args.ncr_start}\n"
    )
    print(f"| strategy | step (ms, median) | × {names[0]} | epoch / step (ms, median) | × {names[0]} | "
          "refresh (s, median) |\n|---|---|---|---|---|---|")  # fmt: skip
    for name in names:
        step = 1e3 * statistics.median(r["step"] for r in runs[name])
        epoch = 1e3 * statistics.median(r["epoch_per_step"] for r in runs[name])
        refresh = statistics.median(r["refresh"] for r in runs[name])
        refresh_text = f"{refresh:.3f}" if refresh == refresh else ""
        print(
            f"| {name} | {step:.1f} | {ratio(name, 'step'):.3f} | {epoch:.1f} | {ratio(name, 'epoch_per_step'):.3f} "
            f"| {refresh_text} |"
        )


if __name__ == "__main__":
    main()
