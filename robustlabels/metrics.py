"""Evaluation metrics shared by every strategy, and the end-of-fit summary (table + ``metrics.json``)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from robustlabels.io import atomic_write_text


def memorization_counts(preds: Tensor, targets: Tensor, clean_targets: Tensor) -> Tensor:
    """Counts behind the ELR paper's memorization plot (Liu et al., 2020, Fig. 1).

    Args:
        preds: ``(B,)`` predicted classes.
        targets: ``(B,)`` given (noisy) labels.
        clean_targets: ``(B,)`` true labels, ``-1`` where unknown.
    Returns:
        ``(3,)`` float: number of flipped samples, of those predicted as their true label, and of those
        predicted as their noisy label.
    """
    flipped = (targets != clean_targets) & (clean_targets >= 0)
    return torch.stack(
        [flipped.sum(), (flipped & (preds == clean_targets)).sum(), (flipped & (preds == targets)).sum()]
    ).float()


def summarize_history(history: Sequence[Mapping[str, float]]) -> dict[str, Any]:
    """Best and final accuracies from per-epoch rows (keys like ``test/acc``, ``val/acc``)."""

    def column(key: str) -> list[tuple[int, float]]:
        return [(i, row[key]) for i, row in enumerate(history) if _finite(row.get(key))]

    summary: dict[str, Any] = {"epochs": len(history)}
    test, val = column("test/acc"), column("val/acc")
    if test:
        summary["best_test_acc"] = max(v for _, v in test)
        summary["final_test_acc"] = test[-1][1]
    if val:
        best_val_epoch = max(val, key=lambda iv: iv[1])[0]
        summary["best_val_acc"] = val[best_val_epoch][1] if best_val_epoch < len(val) else None
        summary["test_acc_at_best_val"] = history[best_val_epoch].get("test/acc")
    for key in ("train/mem_true", "train/mem_noisy", "train/noise_rate"):
        if column(key):
            summary["final_" + key.split("/")[1]] = column(key)[-1][1]
    return summary


def format_summary(summary: Mapping[str, Any], *, title: str) -> str:
    """A small fixed-width table for stdout."""
    labels = {
        "best_test_acc": "best test accuracy",
        "final_test_acc": "final test accuracy",
        "test_acc_at_best_val": "test accuracy at best val epoch",
        "final_noise_rate": "realized noise rate (train)",
        "final_mem_true": "flipped samples predicted as true label",
        "final_mem_noisy": "flipped samples predicted as noisy label (memorized)",
    }
    rows = [(text, summary[key]) for key, text in labels.items() if _finite(summary.get(key))]
    width = max([len(title)] + [len(text) for text, _ in rows]) + 2
    lines = [title, "-" * (width + 8)]
    lines += [f"{text:<{width}}{100 * value:7.2f}%" for text, value in rows]
    return "\n".join(lines)


def write_metrics_json(path: Path, summary: Mapping[str, Any], history: Sequence[Mapping[str, float]]) -> None:
    """Write ``{"summary": ..., "history": [...]}`` atomically."""
    payload = {"summary": dict(summary), "history": [dict(row) for row in history]}
    atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=True, default=float) + "\n")


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)
