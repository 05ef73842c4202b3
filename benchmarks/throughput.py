"""Training throughput (samples/s): data pipeline, model step and end-to-end Lightning fit, fp32 vs bf16.

Two workloads:

* ``small_cnn`` on Fashion-MNIST (28×28×1): the real IDX files when installed, else random uint8 images of
  the same shape and size;
* ``preact_resnet18`` on CIFAR-10 (32×32×3): random uint8 images of CIFAR-10's shape and size by default
  (``--cifar-data jpeg`` decodes the real JPEG npz instead, ~5 s); random crop + flip either way.

Each is timed three ways, for ``32-true`` (fp32) and ``bf16-mixed`` precision:

* **data pipeline**: iterate the train DataLoader (fancy indexing of whole batches), move the batch to the
  device and run the data module's ``on_after_batch_transfer`` (normalise, crop/flip) — nothing else;
  it is the same for both precisions (Lightning does not autocast that hook), so it is timed once;
* **model**: forward + cross-entropy + backward + SGD step of the bare backbone on pre-built batches
  (``torch.autocast(..., dtype=torch.bfloat16)`` for bf16);
* **end to end**: ``pytorch_lightning.Trainer.fit`` of a ``RobustModule`` with the data module, timed by a
  callback from the end of warm-up step W to the end of the last step.

Other processes on a shared CPU make single timings swing by several times, so the variants run side by
side in one process: the model loop alternates fp32 and bf16 step by step (ABBA), the end-to-end fits
alternate by round (ABA...), and every throughput is the batch size over the seconds per batch of the
least-loaded stretch: the timings are cut into ``--rounds`` consecutive chunks (for end to end: the fits),
and the smallest chunk median is kept (the raw timings go to ``--json``). The loss at step N of the model
loop (same seed, same batches) is reported for both precisions as a cheap parity check. The model and
end-to-end measurements use ``RobustModule``'s memory layout (channels-last by default;
``--no-channels-last``: NCHW).

Usage::

    python benchmarks/throughput.py --device cpu --threads 2 --out throughput.md --json throughput.json
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import io
import json
import logging
import os
import platform
import statistics
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustlabels.data.datamodule import NoisyLabelDataModule
from robustlabels.data.images import CIFAR10DataModule, FashionMNISTDataModule
from robustlabels.errors import InputError
from robustlabels.module import RobustModule
from robustlabels.nn.backbones import create_backbone
from robustlabels.types import Batch

PRECISIONS = ("32-true", "bf16-mixed")
DEFAULT_STEPS = {"small_cnn": 60, "preact_resnet18": 6}  # timed steps per variant, sized for a 2-core CPU
LR, MOMENTUM, SEED = 0.05, 0.9, 0
CHANNELS_LAST: bool = inspect.signature(RobustModule).parameters["channels_last"].default


# ---- data --------------------------------------------------------------------------------------------
class _RandomImages:
    """Mixin: random uint8 images with the data module's shape and the real dataset's size.

    Stands in for the real files (same tensor shapes and sizes, so the same indexing and augmentation cost).
    """

    num_classes: int
    input_shape: tuple[int, ...]
    split_sizes: ClassVar[dict[str, int]]

    def load_split(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(0 if split == "train" else 1)
        n = self.split_sizes[split]
        c, h, w = self.input_shape
        shape = (n, h, w) if c == 1 else (n, h, w, c)
        return rng.integers(0, 256, size=shape, dtype=np.uint8), np.arange(n) % self.num_classes


class RandomFashionMNIST(_RandomImages, FashionMNISTDataModule):
    """Fashion-MNIST-shaped random data (60k train / 10k test, 1×28×28)."""

    split_sizes: ClassVar[dict[str, int]] = {"train": 60_000, "test": 10_000}


class RandomCIFAR10(_RandomImages, CIFAR10DataModule):
    """CIFAR-10-shaped random data (50k train / 10k test, 3×32×32), crop + flip like the real module."""

    split_sizes: ClassVar[dict[str, int]] = {"train": 50_000, "test": 10_000}


def fashion_mnist(batch_size: int, cifar_data: str) -> tuple[NoisyLabelDataModule, str]:
    """The real Fashion-MNIST when installed, else random data of its shape; set up."""
    try:
        datamodule: NoisyLabelDataModule = FashionMNISTDataModule(batch_size=batch_size)
        datamodule.setup("fit")
        return datamodule, "Fashion-MNIST (real IDX files)"
    except InputError:
        datamodule = RandomFashionMNIST(batch_size=batch_size)
        datamodule.setup("fit")
        return datamodule, "random uint8, Fashion-MNIST shape (files not found)"


def cifar10(batch_size: int, cifar_data: str) -> tuple[NoisyLabelDataModule, str]:
    """Random CIFAR-10-shaped data (default), or the real JPEG npz with ``cifar_data='jpeg'``; set up."""
    if cifar_data == "jpeg":
        datamodule: NoisyLabelDataModule = CIFAR10DataModule(batch_size=batch_size)
        datamodule.setup("fit")
        return datamodule, "CIFAR-10 (real, decoded JPEG)"
    datamodule = RandomCIFAR10(batch_size=batch_size)
    datamodule.setup("fit")
    return datamodule, "random uint8 (N,3,32,32), CIFAR-10 size"


@dataclass(frozen=True)
class Workload:
    """A backbone, its input shape and the data module it trains on."""

    backbone: str
    dataset: str
    input_shape: tuple[int, int, int]
    make_datamodule: Callable[[int, str], tuple[NoisyLabelDataModule, str]]


WORKLOADS = {
    "small_cnn": Workload("small_cnn", "Fashion-MNIST", (1, 28, 28), fashion_mnist),
    "preact_resnet18": Workload("preact_resnet18", "CIFAR-10", (3, 32, 32), cifar10),
}


# ---- timing helpers ----------------------------------------------------------------------------------
def synchronize(device: torch.device) -> None:
    """Wait for queued device work, so wall-clock times are complete."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def to_device(batch: Batch, device: torch.device) -> Batch:
    """The batch with every tensor on ``device`` (what Lightning's transfer does)."""
    return Batch(*(t.to(device, non_blocking=True) for t in batch))


@contextlib.contextmanager
def training_mode(datamodule: NoisyLabelDataModule) -> Iterator[None]:
    """Make ``on_after_batch_transfer`` augment as in training, without a Trainer."""
    saved = datamodule.trainer
    datamodule.trainer = SimpleNamespace(training=True)  # type: ignore[assignment]
    try:
        yield
    finally:
        datamodule.trainer = saved


def pipeline_batches(datamodule: NoisyLabelDataModule, device: torch.device) -> Iterator[Batch]:
    """Training batches as the model sees them: indexed, moved, normalised and augmented."""
    for batch in datamodule.train_dataloader():
        yield datamodule.on_after_batch_transfer(to_device(batch, device), 0)


# ---- the three measurements --------------------------------------------------------------------------
def timed(device: torch.device, fn: Callable[[], Any]) -> tuple[Any, float]:
    """``fn()`` and its wall-clock seconds, device work included."""
    synchronize(device)
    start = time.perf_counter()
    value = fn()
    synchronize(device)
    return value, time.perf_counter() - start


def time_data_pipeline(
    datamodule: NoisyLabelDataModule, device: torch.device, *, batches: int, warmup: int
) -> list[float]:
    """Seconds per batch of the data pipeline alone, for ``batches`` batches after ``warmup``."""
    times: list[float] = []
    with training_mode(datamodule):
        loader = iter(pipeline_batches(datamodule, device))
        for i in range(warmup + batches):
            batch, seconds = timed(device, lambda: next(loader, None))
            if batch is None:
                break
            if i >= warmup:
                times.append(seconds)
    return times


def prebuilt_batches(datamodule: NoisyLabelDataModule, device: torch.device, count: int) -> list[Batch]:
    """``count`` pipeline batches kept on the device, for timing the model alone."""
    with training_mode(datamodule):
        batches = []
        for batch in pipeline_batches(datamodule, device):
            batches.append(batch)
            if len(batches) == count:
                break
    return batches


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast for ``bf16-mixed``, nothing for ``32-true``."""
    if precision == "bf16-mixed":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def train_step(
    model: nn.Module, optimizer: torch.optim.Optimizer, batch: Batch, precision: str, channels_last: bool
) -> Tensor:
    """One forward + fp32 cross-entropy + backward + SGD step; returns the detached loss.

    With ``channels_last`` the batch is converted to NHWC inside the step, as ``RobustModule`` does.
    """
    optimizer.zero_grad(set_to_none=True)
    inputs = batch.inputs.contiguous(memory_format=torch.channels_last) if channels_last else batch.inputs
    with autocast(inputs.device, precision):
        logits = model(inputs)
    loss = F.cross_entropy(logits.float(), batch.targets)
    loss.backward()
    optimizer.step()
    return loss.detach()


def time_models(
    workload: Workload,
    batches: list[Batch],
    precisions: list[str],
    *,
    steps: int,
    warmup: int,
    channels_last: bool,
) -> dict[str, tuple[list[float], float]]:
    """Seconds per training step of the bare backbone, per precision, and the loss at the last step.

    The precisions alternate step by step (ABBA order), each on its own copy of the same seeded model
    fed the same batches, so that a change of machine load hits every variant alike.
    """
    device = batches[0].inputs.device
    runs = {}
    for precision in precisions:
        torch.manual_seed(SEED)
        model = create_backbone(workload.backbone, input_shape=workload.input_shape, num_classes=10)
        model.to(device).train()
        if channels_last:
            model.to(memory_format=torch.channels_last)
        runs[precision] = (model, torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM))
    times: dict[str, list[float]] = {p: [] for p in precisions}
    losses = dict.fromkeys(precisions, torch.zeros(()))
    for i in range(warmup + steps):
        batch = batches[i % len(batches)]
        for precision in precisions if i % 2 == 0 else precisions[::-1]:
            model, optimizer = runs[precision]
            losses[precision], seconds = timed(
                device, partial(train_step, model, optimizer, batch, precision, channels_last)
            )
            if i >= warmup:
                times[precision].append(seconds)
    return {p: (times[p], float(losses[p])) for p in precisions}


class StepTimer(pl.Callback):
    """Seconds between the ends of consecutive training steps after step ``warmup`` (data included)."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.times, self.last = warmup, [], 0.0

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, outputs: Any, batch: Any,
                           batch_idx: int) -> None:  # fmt: skip
        synchronize(pl_module.device)
        now = time.perf_counter()
        if trainer.global_step > self.warmup:
            self.times.append(now - self.last)
        self.last = now


def fit_once(
    workload: Workload, datamodule: NoisyLabelDataModule, precision: str, device: torch.device, *,
    steps: int, warmup: int, channels_last: bool,
) -> tuple[list[float], float]:  # fmt: skip
    """One seeded ``Trainer.fit`` of ``warmup + steps`` steps: seconds per timed step, last training loss."""
    pl.seed_everything(SEED, verbose=False)
    module = RobustModule(backbone=workload.backbone, num_classes=10, input_shape=workload.input_shape,
                          optimizer=partial(torch.optim.SGD, lr=LR, momentum=MOMENTUM),
                          channels_last=channels_last)  # fmt: skip
    timer = StepTimer(warmup)
    trainer = pl.Trainer(
        max_steps=warmup + steps, accelerator=device.type, devices=1, precision=precision, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0, limit_val_batches=0, callbacks=[timer],
    )  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):  # RunSummary's table of an epoch-less run
        trainer.fit(module, datamodule=datamodule)
    loss = trainer.callback_metrics.get("train/loss")
    return timer.times, float(loss) if loss is not None else float("nan")


def time_end_to_end(
    workload: Workload, datamodule: NoisyLabelDataModule, precisions: list[str], device: torch.device, *,
    steps: int, warmup: int, rounds: int, channels_last: bool,
) -> dict[str, tuple[list[float], float]]:  # fmt: skip
    """Seconds per end-to-end step per precision over ``rounds`` alternating fits; the first fit's loss."""
    times: dict[str, list[float]] = {p: [] for p in precisions}
    losses: dict[str, float] = {}
    for r in range(rounds):
        for precision in precisions if r % 2 == 0 else precisions[::-1]:
            step_times, loss = fit_once(workload, datamodule, precision, device, steps=steps, warmup=warmup,
                                        channels_last=channels_last)  # fmt: skip
            times[precision] += step_times
            losses.setdefault(precision, loss)
    return {p: (times[p], losses[p]) for p in precisions}


# ---- orchestration -----------------------------------------------------------------------------------
@dataclass
class Result:
    """One (model, precision) row: seconds per batch of each measurement, and the losses at step N."""

    model: str
    dataset: str
    data_source: str
    precision: str
    batch_size: int
    steps: int
    data_times: list[float]
    model_times: list[float]
    e2e_times: list[float]
    model_loss: float
    e2e_loss: float
    chunks: int  # timings are split into this many consecutive chunks (the end-to-end fits)
    ratio_model: float = float("nan")  # bf16 samples/s over fp32 samples/s; on the bf16 row
    ratio_e2e: float = float("nan")

    def samples_per_s(self, times: list[float]) -> float:
        """Batch size over :func:`least_loaded_seconds` of the timings."""
        return self.batch_size / least_loaded_seconds(times, self.chunks) if times else float("nan")

    @property
    def data_sps(self) -> float:
        return self.samples_per_s(self.data_times)

    @property
    def model_sps(self) -> float:
        return self.samples_per_s(self.model_times)

    @property
    def e2e_sps(self) -> float:
        return self.samples_per_s(self.e2e_times)

    @property
    def data_share(self) -> float:
        """Share of an end-to-end step taken by the data pipeline (data seconds / end-to-end seconds)."""
        return self.e2e_sps / self.data_sps

    def summary(self) -> dict[str, Any]:
        """Everything, for ``--json``; ``*_sps_all`` use the median over all timings instead."""
        overall = {f"{name}_sps_all": self.batch_size / statistics.median(times)
                   for name, times in (("data", self.data_times), ("model", self.model_times),
                                       ("e2e", self.e2e_times)) if times}  # fmt: skip
        return asdict(self) | {"data_sps": self.data_sps, "model_sps": self.model_sps,
                               "e2e_sps": self.e2e_sps, "data_share": self.data_share} | overall  # fmt: skip


def least_loaded_seconds(times: list[float], chunks: int) -> float:
    """Seconds per batch in the least-loaded stretch: the smallest median of ``chunks`` consecutive slices.

    Other processes on a shared machine slow every variant for tens of seconds at a time; the median
    within a slice ignores single outliers, the minimum over slices ignores a slice swallowed by a burst.
    """
    slices = [part for part in np.array_split(np.asarray(times, dtype=float), max(chunks, 1)) if len(part)]
    return float(min(np.median(part) for part in slices)) if slices else float("nan")


def benchmark_workload(workload: Workload, args: argparse.Namespace, device: torch.device) -> list[Result]:
    """Data, model and end-to-end throughput of one workload for every precision."""
    steps = args.steps or DEFAULT_STEPS[workload.backbone]
    datamodule, source = workload.make_datamodule(args.batch_size, args.cifar_data)
    data_times = time_data_pipeline(datamodule, device, batches=args.data_batches, warmup=args.warmup)
    batches = prebuilt_batches(datamodule, device, count=8)
    model = time_models(workload, batches, args.precisions, steps=steps, warmup=args.warmup,
                        channels_last=args.channels_last)  # fmt: skip
    e2e = time_end_to_end(workload, datamodule, args.precisions, device, steps=steps, warmup=args.warmup,
                          rounds=args.rounds, channels_last=args.channels_last)  # fmt: skip
    rows = [
        Result(workload.backbone, workload.dataset, source, p, args.batch_size, steps, data_times,
               model[p][0], e2e[p][0], model[p][1], e2e[p][1], args.rounds)
        for p in args.precisions
    ]  # fmt: skip
    by_precision = {r.precision: r for r in rows}
    if set(PRECISIONS) <= set(by_precision):
        fp32, bf16 = by_precision["32-true"], by_precision["bf16-mixed"]
        bf16.ratio_model = bf16.model_sps / fp32.model_sps
        bf16.ratio_e2e = bf16.e2e_sps / fp32.e2e_sps
    for r in rows:
        print(f"  {r.model:16s} {r.precision:10s} data {r.data_sps:9.0f}/s  model {r.model_sps:8.1f}/s  "
              f"e2e {r.e2e_sps:8.1f}/s  loss@{args.warmup + steps} {r.model_loss:.4f}",
              flush=True)  # fmt: skip
    return rows


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (or the platform's best guess)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def load_average() -> str:
    """1/5/15-minute load averages: other processes on the machine skew CPU timings."""
    with contextlib.suppress(OSError):
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    return "unknown"


def environment(device: torch.device) -> dict[str, Any]:
    """What the numbers depend on: versions, threads, device and CPU."""
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "torch": torch.__version__,
        "lightning": pl.__version__,
        "threads": torch.get_num_threads(),
        "cpu_cores": os.cpu_count(),
        "cpu": cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model(),
        "load_average_start": load_average(),
    }


def fmt(value: float, digits: int = 0) -> str:
    """A number for the table; ``–`` for missing values."""
    return "–" if value != value else f"{value:,.{digits}f}"


def markdown_table(rows: list[Result]) -> str:
    """The results as a GitHub markdown table."""
    lines = [
        "| model (data) | precision | data pipeline (samples/s) | model (samples/s) | end to end (samples/s) "
        "| bf16/fp32 model | bf16/fp32 end to end | data share of step | loss @ step N (model loop) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ratios = [f"{fmt(x, 2)}×" if x == x else "–" for x in (r.ratio_model, r.ratio_e2e)]
        lines.append(f"| {r.model} ({r.dataset}) | {r.precision} | {fmt(r.data_sps)} | {fmt(r.model_sps)} "
                     f"| {fmt(r.e2e_sps)} | {ratios[0]} | {ratios[1]} | {r.data_share:.1%} "
                     f"| {r.model_loss:.4f} |")  # fmt: skip
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default_device = "cuda" if torch.cuda.is_available() else "cpu"
    parser.add_argument("--device", choices=("cpu", "cuda"), default=default_device)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=None,
                        help=f"timed steps per variant (default per model: {DEFAULT_STEPS})")  # fmt: skip
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps before timing (default 3)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="end-to-end fits per precision (alternating order); timings are split in as "
                             "many chunks and the least-loaded chunk's median is reported")  # fmt: skip
    parser.add_argument("--data-batches", type=int, default=100, help="batches timed for the data pipeline")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch.set_num_threads")
    parser.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        default=CHANNELS_LAST,
        help=f"NHWC weights and batches (default as RobustModule: {CHANNELS_LAST})",
    )
    parser.add_argument("--models", nargs="+", choices=sorted(WORKLOADS), default=list(WORKLOADS))
    parser.add_argument("--precisions", nargs="+", choices=PRECISIONS, default=list(PRECISIONS))
    parser.add_argument("--cifar-data", choices=("random", "jpeg"), default="random",
                        help="CIFAR-10: random uint8 of its shape (default) or the real JPEGs")  # fmt: skip
    parser.add_argument("--out", type=Path, help="write the markdown table here")
    parser.add_argument("--json", type=Path, help="write the raw numbers here")
    return parser.parse_args(argv)


def quiet_lightning() -> None:
    """Keep Lightning's banners and advice out of the benchmark's output."""
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*max_steps.*")


def main(argv: list[str] | None = None) -> list[Result]:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    quiet_lightning()
    device = torch.device(args.device)
    env = environment(device) | {"layout": "channels_last (NHWC)" if args.channels_last else "NCHW"}
    print("environment: " + ", ".join(f"{k}={v}" for k, v in env.items()), flush=True)
    rows = [row for name in args.models for row in benchmark_workload(WORKLOADS[name], args, device)]
    env["load_average_end"] = load_average()
    print(f"load average at the end: {env['load_average_end']}")
    sources = sorted({f"{r.model}: {r.data_source}" for r in rows})
    table = markdown_table(rows)
    print("\n" + table + "\n\ndata: " + "; ".join(sources))
    if args.out is not None:
        args.out.write_text(table + "\n")
    if args.json is not None:
        records = [r.summary() for r in rows]
        raw = {"environment": env, "args": vars(args), "results": records}
        args.json.write_text(json.dumps(raw, indent=2, default=str) + "\n")
    return rows


if __name__ == "__main__":
    main()
