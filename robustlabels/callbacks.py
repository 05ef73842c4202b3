"""The run summary: noise saved with the run, a table on stdout and ``metrics.json`` at the end of fit."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl

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


class RunSummary(pl.Callback):
    """Saves the noisy labels with the run, and the accuracy summary (``metrics.json``) after fit."""

    summary: dict[str, Any] | None = None

    def run_dir(self, trainer: pl.Trainer) -> Path | None:
        """The logger's version folder, or None when logging is off (nothing is written then)."""
        return Path(trainer.log_dir) if trainer.logger is not None and trainer.log_dir else None

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.started = time.perf_counter()
        run_dir, datamodule = self.run_dir(trainer), getattr(trainer, "datamodule", None)
        if run_dir is None or not trainer.is_global_zero or getattr(datamodule, "noisy", None) is None:
            return
        run_dir.mkdir(parents=True, exist_ok=True)
        assert datamodule is not None
        atomic_save_npy(run_dir / "noisy_labels.npy", datamodule.noisy.noisy.astype(np.int64))
        record = noise_record(datamodule)
        atomic_write_text(run_dir / "noise.json", json.dumps(record, indent=2, sort_keys=True) + "\n")

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        history = getattr(pl_module, "history", [])
        self.summary = summarize_history(history)
        self.summary["strategy"] = type(getattr(pl_module, "strategy", None)).__name__
        self.summary["train_seconds"] = round(time.perf_counter() - self.started, 3)
        run_dir = self.run_dir(trainer)
        if run_dir is not None:
            write_metrics_json(run_dir / "metrics.json", self.summary, history)
            strategy = getattr(pl_module, "strategy", None)
            diagnostics = strategy.diagnostics() if strategy is not None else {}
            if diagnostics:  # e.g. the histograms of a weighting strategy's weights, clean vs flipped
                atomic_write_text(run_dir / "diagnostics.json", json.dumps(diagnostics, indent=1) + "\n")

    def report(self, trainer: pl.Trainer) -> str:
        """The summary table (and where the run's files are), for printing after fit."""
        assert self.summary is not None, "report() comes after fit"
        text = format_summary(self.summary, title=f"robustlabels: {self.summary['strategy']}")
        run_dir = self.run_dir(trainer)
        return text + (f"\nmetrics.json, noisy labels and checkpoints: {run_dir}" if run_dir else "")
