"""The run summary: noise saved with the run, a table on stdout, ``metrics.json`` (and a strategy's per-sample
``issues.csv``) at the end of fit."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch import Tensor

from robustlabels.io import atomic_save_npy, atomic_write_text
from robustlabels.metrics import format_summary, summarize_history, write_metrics_json


def noise_record(datamodule: Any) -> dict[str, Any]:
    """JSON-able description of the noise a data module drew (model, parameters, realized rates)."""
    noisy = datamodule.noisy
    noise = datamodule.noise
    return {
        "noise_model": getattr(noise, "name", "none") if noise is not None else "none",
        "params": noise.params() if noise is not None else {},
        "noise_seed": datamodule.noise_seed,
        "num_samples": len(noisy.noisy),
        "realized_rate_full_train_split": float(noisy.realized_rate),
        "realized_rate_train": datamodule.realized_noise_rate,
        "empirical_matrix": np.round(noisy.empirical_matrix, 6).tolist(),
        "convention": "T[i, j] = P(noisy = j | true = i)",
    }


def issues_csv(table: Mapping[str, Tensor], datamodule: Any) -> str:
    """A strategy's per-sample table as CSV, most suspicious first (ties by position): ``rank``, ``index`` (the
    position in the full training split, as in ``noisy_labels.npy``), ``given_label``, ``true_label`` (when
    known) and the table's columns."""
    columns = {name: values.detach().float().cpu().numpy() for name, values in table.items()}
    train = datamodule.datasets["train"] if datamodule is not None and hasattr(datamodule, "datasets") else None
    n = len(next(iter(columns.values())))
    order = np.lexsort((np.arange(n), -columns["suspicion"])) if "suspicion" in columns else np.arange(n)
    positions = np.asarray(getattr(datamodule, "train_positions", np.arange(n)))
    head = ["rank", "index"]
    rows: list[np.ndarray] = [np.arange(1, n + 1), positions[order]]
    if train is not None:
        head.append("given_label")
        rows.append(train.targets.numpy()[order])
        if bool((train.clean_targets >= 0).all()):
            head.append("true_label")
            rows.append(train.clean_targets.numpy()[order])
    head += list(columns)
    rows += [columns[name][order] for name in columns]
    lines = [",".join(head)]
    for values in zip(*rows, strict=True):
        lines.append(",".join(f"{v:.6g}" if isinstance(v, float | np.floating) else str(int(v)) for v in values))
    return "\n".join(lines) + "\n"


def run_dir(trainer: pl.Trainer) -> Path | None:
    """The logger's version folder, or None when logging is off (nothing is written then)."""
    return Path(trainer.log_dir) if trainer.logger is not None and trainer.log_dir else None


class RunSummary(pl.Callback):
    """Saves the noisy labels with the run, and the accuracy summary (``metrics.json``) after fit."""

    summary: dict[str, Any] | None = None

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.started = time.perf_counter()
        folder, datamodule = run_dir(trainer), getattr(trainer, "datamodule", None)
        self.folder = folder  # trainer.log_dir is a collective under DDP: asked here, on every rank, once
        if folder is None or not trainer.is_global_zero or getattr(datamodule, "noisy", None) is None:
            return
        folder.mkdir(parents=True, exist_ok=True)
        assert datamodule is not None
        atomic_save_npy(folder / "noisy_labels.npy", datamodule.noisy.noisy.astype(np.int64))
        record = noise_record(datamodule)
        atomic_write_text(folder / "noise.json", json.dumps(record, indent=2, sort_keys=True) + "\n")

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        """Ctrl-C: write ``metrics.json`` of the epochs finished so far (``summary.interrupted`` is true)."""
        if isinstance(exception, KeyboardInterrupt) and trainer.is_global_zero:
            self.write_metrics(trainer, pl_module, interrupted=True)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        folder = self.write_metrics(trainer, pl_module)
        if folder is not None:
            strategy = getattr(pl_module, "strategy", None)
            diagnostics = strategy.diagnostics() if strategy is not None else {}
            if diagnostics:  # e.g. the histograms of a weighting strategy's weights, clean vs flipped
                atomic_write_text(folder / "diagnostics.json", json.dumps(diagnostics, indent=1) + "\n")
            table = strategy.sample_table() if strategy is not None else {}
            if table:  # e.g. CRM's pair audit
                atomic_write_text(folder / "issues.csv", issues_csv(table, getattr(trainer, "datamodule", None)))

    def write_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *, interrupted: bool = False
                      ) -> Path | None:  # fmt: skip
        """Summarise the module's history into :attr:`summary`, and write ``metrics.json``; return the run folder."""
        history = getattr(pl_module, "history", [])
        self.summary = summarize_history(history)
        self.summary["strategy"] = type(getattr(pl_module, "strategy", None)).__name__
        self.summary["train_seconds"] = round(time.perf_counter() - getattr(self, "started", time.perf_counter()), 3)
        if interrupted:
            self.summary["interrupted"] = True
        folder = self.folder if hasattr(self, "folder") else run_dir(trainer)
        if folder is not None:
            write_metrics_json(folder / "metrics.json", self.summary, history)
        return folder

    def report(self, trainer: pl.Trainer) -> str:
        """The summary table (and where the run's files are), for printing after fit."""
        assert self.summary is not None, "report() comes after fit"
        text = format_summary(self.summary, title=f"robustlabels: {self.summary['strategy']}")
        folder = self.folder if hasattr(self, "folder") else run_dir(trainer)
        return text + (f"\nmetrics.json, noisy labels and checkpoints: {folder}" if folder else "")


class AccuracyByRewardGap(pl.Callback):
    """Test pairwise accuracy by latent reward gap, at the end of fit: ``accuracy_by_gap.json`` in the run folder.

    For pair data modules that know each test pair's gap (``reward_gaps("test")``, e.g. IMDB-Pref's rating gap):
    pairs with a small gap are the ambiguous ones, where swap noise hurts most (docs/pairs.md).
    """

    result: dict[str, Any] | None = None

    @torch.no_grad()
    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        datamodule = getattr(trainer, "datamodule", None)
        if not trainer.is_global_zero or "test" not in getattr(datamodule, "gaps", {}):
            return
        assert datamodule is not None
        test = datamodule.datasets["test"]
        gaps = np.asarray(datamodule.reward_gaps("test"))
        was_training = pl_module.training
        pl_module.eval()
        logits = torch.cat([pl_module(x.to(pl_module.device)).cpu() for x in test.inputs.split(4096)])
        pl_module.train(was_training)
        correct = (logits.argmax(1) == test.targets).numpy()
        if len(np.unique(gaps)) > 12:  # continuous scores: quintiles of the gap
            edges = np.unique(np.quantile(gaps, np.linspace(0, 1, 6)))
            gaps = np.array([f"{edges[i]:.3g}-{edges[i + 1]:.3g}" for i in np.clip(np.searchsorted(edges, gaps,
                             side="right") - 1, 0, len(edges) - 2)])  # fmt: skip
        by_gap = {f"{g:g}" if isinstance(g, float | np.floating) else str(g): {"pairs": int((gaps == g).sum()),
                  "accuracy": float(correct[gaps == g].mean())} for g in np.unique(gaps)}  # fmt: skip
        self.result = {"overall": {"pairs": len(correct), "accuracy": float(correct.mean())}, "by_gap": by_gap}
        folder = run_dir(trainer)
        if folder is not None:
            atomic_write_text(folder / "accuracy_by_gap.json", json.dumps(self.result, indent=1) + "\n")
