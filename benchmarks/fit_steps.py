"""Training-step time inside a real Lightning ``fit`` (data loading, logging and hooks included), per strategy.

Each round fits every strategy for ``--epochs`` on a Fashion-MNIST subset with the small CNN and takes the
median time between ``on_train_batch_start`` and ``on_train_batch_end`` (the first 5 steps skipped); the
ratio to CE is the median over rounds. Complements ``overhead.py``, which times bare steps.

    python benchmarks/fit_steps.py                                  # heap kept, as robustlabels.fit does
    ROBUSTLABELS_KEEP_FREED_HEAP=0 python benchmarks/fit_steps.py   # glibc's default trimming
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import pytorch_lightning as pl
import torch

from robustlabels.data import FashionMNISTDataModule
from robustlabels.memory import keep_freed_heap
from robustlabels.module import RobustModule
from robustlabels.noise import SymmetricNoise
from robustlabels.strategies import STRATEGIES


class StepTimer(pl.Callback):
    def __init__(self) -> None:
        self.seconds: list[float] = []
        self.start = 0.0

    def on_train_batch_start(self, *args: Any) -> None:
        self.start = time.perf_counter()

    def on_train_batch_end(self, *args: Any) -> None:
        self.seconds.append(time.perf_counter() - self.start)


def median_step(strategy: str, args: argparse.Namespace) -> float:
    pl.seed_everything(0, verbose=False)
    data = FashionMNISTDataModule(batch_size=128, train_subset=args.train_subset, noise=SymmetricNoise(rate=0.4))
    model = RobustModule(STRATEGIES.get(strategy)(), backbone="small_cnn", num_classes=10, input_shape=(1, 28, 28),
                         optimizer=lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9))  # fmt: skip
    timer = StepTimer()
    trainer = pl.Trainer(max_epochs=args.epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[timer], limit_val_batches=0,
                         num_sanity_val_steps=0)  # fmt: skip
    trainer.fit(model, datamodule=data)
    return statistics.median(timer.seconds[5:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strategies", default="cross_entropy,co_teaching,elr_plus",
                        help="registry names; the first is the reference")  # fmt: skip
    parser.add_argument("--train-subset", type=int, default=6000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    kept = keep_freed_heap()
    names = args.strategies.split(",")
    steps: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(args.rounds):
        for name in names:
            steps[name].append(median_step(name, args))
    print(f"heap kept: {kept}; {torch.get_num_threads()} threads; {args.rounds} rounds of {args.epochs} epochs\n")
    print(f"| strategy | step (ms, median) | × {names[0]} |\n|---|---|---|")
    for name in names:
        ratio = statistics.median(t / c for t, c in zip(steps[name], steps[names[0]], strict=True))
        print(f"| {name} | {1e3 * statistics.median(steps[name]):.1f} | {ratio:.3f} |")


if __name__ == "__main__":
    main()
