"""F1 of the positive class in EvalMetrics: summed over the epoch (and over ranks), and its place in the summary."""

from __future__ import annotations

import pytest
import torch
from sklearn.metrics import f1_score
from torchmetrics.classification import BinaryF1Score

from robustlabels.metrics import EvalMetrics, format_summary, summarize_history
from robustlabels.types import Batch, Forward

# (predictions, given labels, true labels) of three validation batches; -1: true label unknown.
BATCHES = [
    ([1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 0, -1]),  # TP 1, FN 1: batch F1 2/3
    ([1, 1, 0], [0, 0, 0], [0, 1, 0]),  # FP 2: batch F1 0
    ([1, 1, 1], [1, 1, 1], [1, 1, 1]),  # TP 3: batch F1 1
]
EPOCH_F1 = 2 * 4 / (2 * 4 + 2 + 1)  # TP 4, FP 2, FN 1 over the epoch: 8/11


def forward_for(preds: list[int], num_classes: int = 2) -> Forward:
    """Logits whose argmax is ``preds``."""
    logits = torch.nn.functional.one_hot(torch.tensor(preds), num_classes).float()
    return Forward(features=(logits,), logits=(logits,))


def batch_of(preds: list[int], given: list[int], true: list[int]) -> Batch:
    n = len(preds)
    return Batch(torch.zeros(n, 3), torch.tensor(given), torch.arange(n), torch.tensor(true))


def test_f1_sums_counts_over_batches_and_is_not_a_mean_of_batch_scores() -> None:
    metrics = EvalMetrics()
    for preds, given, true in BATCHES:
        logs = metrics.update("val", forward_for(preds), batch_of(preds, given, true))
    all_preds = [p for b in BATCHES for p in b[0]]
    all_given = [y for b in BATCHES for y in b[1]]
    per_batch = [f1_score(b[1], b[0], zero_division=0) for b in BATCHES]
    assert float(logs["val/f1"].compute()) == pytest.approx(EPOCH_F1)  # type: ignore[operator]
    assert float(logs["val/f1"].compute()) == pytest.approx(f1_score(all_given, all_preds))  # type: ignore[operator]
    assert abs(EPOCH_F1 - sum(per_batch) / len(per_batch)) > 0.15  # 0.727 vs 0.556
    known = [(p, t) for b in BATCHES for p, t in zip(b[0], b[2], strict=True) if t >= 0]
    clean = f1_score([t for _, t in known], [p for p, _ in known])
    assert float(logs["val/f1_clean"].compute()) == pytest.approx(clean)  # type: ignore[operator]


def test_test_split_logs_f1_without_a_clean_copy_and_multiclass_logs_no_f1() -> None:
    metrics = EvalMetrics()
    preds, given, true = BATCHES[0]
    assert {"test/acc", "test/f1"} == set(metrics.update("test", forward_for(preds), batch_of(preds, given, true)))
    logs = metrics.update("val", forward_for([0, 2, 1], num_classes=3), batch_of([0, 2, 1], [0, 2, 2], [0, 2, 2]))
    assert not any("f1" in key for key in logs)


def test_f1_states_reduce_by_summing_as_under_ddp() -> None:
    """Two ranks' metrics merged the way DDP syncs them give the F1 of the union, not a mean of two F1s."""
    ranks = [BinaryF1Score(validate_args=False), BinaryF1Score(validate_args=False)]
    for i, (preds, given, _) in enumerate(BATCHES):
        ranks[i % 2].update(torch.tensor(preds), torch.tensor(given))
    separate = [float(r.clone().compute()) for r in ranks]  # 8/9 and 0
    ranks[0].merge_state(ranks[1])
    assert float(ranks[0].compute()) == pytest.approx(EPOCH_F1)
    assert sum(separate) / 2 != pytest.approx(EPOCH_F1)
    assert not EvalMetrics().state_dict()  # metric states are not persistent: checkpoints keep their keys


def test_summary_selects_the_test_f1_at_the_best_val_f1_epoch() -> None:
    history = [
        {"val/acc": 0.9, "test/acc": 0.8, "val/f1": 0.5, "test/f1": 0.4},
        {"val/acc": 0.8, "test/acc": 0.9, "val/f1": 0.7, "test/f1": 0.6},
        {"val/acc": 0.85, "test/acc": 0.85, "val/f1": 0.7, "test/f1": 0.65},  # a tie: the first epoch wins
    ]
    summary = summarize_history(history)
    assert summary["best_val_f1"] == 0.7 and summary["test_f1_at_best_val_f1"] == 0.6
    assert summary["final_test_f1"] == 0.65 and summary["best_test_f1"] == 0.65
    assert summary["best_val_acc"] == 0.9 and summary["test_acc_at_best_val"] == 0.8
    table = format_summary(summary, title="t")
    assert "test F1 (class 1) at best val F1 epoch    60.00%" in table and "best val F1 (class 1)" in table
    without = summarize_history([{k: v for k, v in row.items() if "f1" not in k} for row in history])
    assert not any("f1" in key for key in without) and "F1" not in format_summary(without, title="t")


def test_best_val_epoch_is_found_when_some_rows_lack_validation() -> None:
    history = [{"test/acc": 0.5}, {"val/acc": 0.6, "test/acc": 0.7}, {"val/acc": 0.4, "test/acc": 0.8}]
    summary = summarize_history(history)
    assert summary["best_val_acc"] == 0.6 and summary["test_acc_at_best_val"] == 0.7
