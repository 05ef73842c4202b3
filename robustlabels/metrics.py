"""Evaluation metrics shared by every strategy, and the end-of-fit summary (table + ``metrics.json``)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MeanMetric, Metric
from torchmetrics.classification import BinaryF1Score

from robustlabels.io import atomic_write_text
from robustlabels.types import Batch, Forward


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


def training_sums(loss: Tensor, logits: Tensor, targets: Tensor, clean_targets: Tensor) -> Tensor:
    """``(6,)`` float64 sums of one training batch, added up over an epoch without host syncs:
    ``[loss·B, B, correct, flipped, flipped predicted as true label, flipped predicted as noisy label]``.

    ``logits`` are the ``(B, C)`` mean logits, ``targets`` and ``clean_targets`` ``(B,)``.
    """
    preds = logits.argmax(1)
    size = torch.full((1,), float(len(targets)), device=preds.device)
    correct = (preds == targets).sum().view(1).float()
    memorization = memorization_counts(preds, targets, clean_targets)
    return torch.cat([loss.detach().float().view(1) * size, size, correct, memorization]).double()


def training_row(sums: Sequence[float], epoch: int) -> dict[str, float]:
    """The epoch's training metrics from the summed :func:`training_sums`: loss, accuracy and, when some labels
    are known to be flipped, the memorization split ``train/mem_true`` and ``train/mem_noisy``."""
    loss_sum, count, correct, flipped, true, noisy = sums
    row = {"epoch": float(epoch), "train/loss": loss_sum / max(count, 1.0), "train/acc": correct / max(count, 1.0)}
    if flipped > 0:
        row["train/mem_true"], row["train/mem_noisy"] = true / flipped, noisy / flipped
    return row


class EvalMetrics(nn.Module):
    """Running means, per evaluation split, of the accuracy against the given labels, the clean accuracy (where
    the true labels are known) and, on ``val``, the loss; plus each network's own accuracy with several.

    Binary tasks (``C = 2``) also get ``f1``, the F1 score of class 1 (SMS spam in STORM, Heck et al. 2025) against
    the given labels, and on ``val`` ``f1_clean`` against the true ones. It is the F1 of the whole epoch: true and
    false positives and false negatives are summed over batches (and over DDP ranks) before the ratio, never a mean
    of per-batch scores.
    """

    def __init__(self, splits: Sequence[str] = ("val", "test")) -> None:
        super().__init__()
        self.means = nn.ModuleDict({f"{split}_{name}": MeanMetric() for split in splits
                                    for name in ("acc", "acc_clean", "loss")})  # fmt: skip
        # States are sums (reduced by summing across ranks) and not persistent: checkpoints keep their keys.
        self.f1 = nn.ModuleDict({f"{split}_{name}": BinaryF1Score(validate_args=False) for split in splits
                                 for name in ("f1", "f1_clean")})  # fmt: skip

    def update(self, split: str, out: Forward, batch: Batch) -> dict[str, Metric | Tensor]:
        """Add one batch; return what to log under ``{split}/...`` (metric objects aggregate over the epoch)."""
        logits = out.mean_logits()
        preds = logits.argmax(1)
        known = batch.clean_targets >= 0
        values = {"acc": ((preds == batch.targets).float(), 1)}
        if split == "val":  # the test labels are clean, so test/acc is already the clean accuracy
            values["loss"] = (F.cross_entropy(logits, batch.targets), len(batch.targets))
            if bool(known.any()):
                values["acc_clean"] = ((preds[known] == batch.clean_targets[known]).float(), 1)
        logs: dict[str, Metric | Tensor] = {}
        for name, (value, weight) in values.items():
            metric = self.means[f"{split}_{name}"]
            assert isinstance(metric, MeanMetric)
            metric.update(value, weight)
            logs[f"{split}/{name}"] = metric
        if logits.shape[1] == 2:  # binary: F1 of class 1
            pairs = {"f1": (preds, batch.targets)}
            if split == "val" and bool(known.any()):
                pairs["f1_clean"] = (preds[known], batch.clean_targets[known])
            for name, (predicted, target) in pairs.items():
                score = self.f1[f"{split}_{name}"]
                assert isinstance(score, BinaryF1Score)
                score.update(predicted, target)
                logs[f"{split}/{name}"] = score
        for i, z in enumerate(out.logits if len(out.logits) > 1 else ()):
            logs[f"{split}/acc_net{i}"] = (z.argmax(1) == batch.targets).float().mean()
        return logs


def summarize_history(history: Sequence[Mapping[str, float]]) -> dict[str, Any]:
    """Best and final scores from per-epoch rows (keys like ``test/acc``, ``val/acc``, ``test/f1``).

    Accuracy: ``best_test_acc``, ``final_test_acc``, ``best_val_acc`` and ``test_acc_at_best_val``. With an F1
    (binary tasks): ``best_test_f1``, ``final_test_f1``, ``best_val_f1`` and ``test_f1_at_best_val_f1``, the model
    selected by its validation F1. The best validation epoch is the first of equal ones.
    """

    def column(key: str) -> list[tuple[int, float]]:
        return [(i, row[key]) for i, row in enumerate(history) if _finite(row.get(key))]

    summary: dict[str, Any] = {"epochs": len(history)}
    for metric, at_best in (("acc", "test_acc_at_best_val"), ("f1", "test_f1_at_best_val_f1")):
        test, val = column(f"test/{metric}"), column(f"val/{metric}")
        if test:
            summary[f"best_test_{metric}"] = max(v for _, v in test)
            summary[f"final_test_{metric}"] = test[-1][1]
        if val:
            best_val_epoch, summary[f"best_val_{metric}"] = max(val, key=lambda iv: iv[1])
            summary[at_best] = history[best_val_epoch].get(f"test/{metric}")
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
        "final_test_f1": "final test F1 (class 1)",
        "best_val_f1": "best val F1 (class 1)",
        "test_f1_at_best_val_f1": "test F1 (class 1) at best val F1 epoch",
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
