"""Suite datasets that report another number than the final test accuracy (``metric``, ``selection``)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from robustlabels.cli import package_path
from robustlabels.errors import InputError
from robustlabels.experiments import cli, report, runner
from robustlabels.experiments.suite import Cell, grid, load_suite
from tests.data.test_tables import write_storm_layout

SUITE = {
    "seeds": [0, 1],
    "datasets": {
        "digits": {"config": str(package_path("configs", "quickstart.yaml")),
                   "settings": [{"noise": "symmetric", "rate": 0.4}]},
        "sms": {"config": str(package_path("configs", "spam", "sms_ce.yaml")), "metric": "f1", "selection": "best_val",
                "settings": [{"noise": "flip", "rate": 0.3}]},
    },
    "strategies": {"cross_entropy": {}},
    "paper": [
        {"dataset": "digits", "noise": "symmetric", "rate": 0.4, "strategy": "cross_entropy", "final_test_acc": 60.0},
        {"dataset": "sms", "noise": "flip", "rate": 0.3, "strategy": "cross_entropy", "value": 63.6, "source": "STORM"},
    ],
}  # fmt: skip


def write(tmp_path: Path, suite: dict[str, Any]) -> Path:
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(suite))
    return path


def with_changes(dataset: str = "sms", paper: dict[str, Any] | None = None, **entry: Any) -> dict[str, Any]:
    suite = json.loads(json.dumps(SUITE))
    suite["datasets"][dataset].update(entry)
    if paper is not None:
        suite["paper"][1] = paper
    return suite


def test_datasets_declare_their_metric_and_selection(tmp_path: Path) -> None:
    suite = load_suite(write(tmp_path, SUITE))
    digits, sms = suite.datasets["digits"], suite.datasets["sms"]
    assert (digits.metric, digits.selection, digits.result_key) == ("accuracy", "final", "final_test_acc")
    assert (sms.metric, sms.selection, sms.result_key, sms.best_key) == (
        "f1", "best_val", "test_f1_at_best_val_f1", "best_test_f1")  # fmt: skip
    assert [n.value for n in suite.paper] == [60.0, 63.6] and suite.paper[0].final_test_acc == 60.0


PAPER = {"dataset": "sms", "noise": "flip", "rate": 0.3, "strategy": "cross_entropy"}


@pytest.mark.parametrize(
    ("suite", "message"),
    [
        (with_changes(metric="auc"), r"`datasets.sms.metric` must be one of accuracy, f1; got 'auc'"),
        (with_changes(selection="best"), r"`datasets.sms.selection` must be one of final, best_val; got 'best'"),
        (with_changes(paper={**PAPER, "final_test_acc": 63.6}), r"gives final_test_acc, but sms reports f1 at "
                                                                r"selection best_val: give it as value"),
        (with_changes(paper={**PAPER, "value": 63.6, "final_test_acc": 63.6}), r"`paper\[1\]` needs exactly one of "
                                                                               r"value or final_test_acc"),
        (with_changes(paper=PAPER), r"`paper\[1\]` needs exactly one of value or final_test_acc; got neither"),
        (with_changes(paper={**PAPER, "value": 0.636}), None),  # a fraction looks like a percentage: allowed
        (with_changes(paper={**PAPER, "value": 636}), r"`paper\[1\].value` is a percentage in \(0, 100\]"),
    ],
    ids=["metric", "selection", "old-key", "both-keys", "no-key", "fraction", "over-100"],
)
def test_bad_protocols_are_one_line_errors(tmp_path: Path, suite: dict[str, Any], message: str | None) -> None:
    if message is None:
        load_suite(write(tmp_path, suite))
        return
    with pytest.raises(InputError, match=message) as err:
        load_suite(write(tmp_path, suite))
    assert "\n" not in str(err.value)


def fake_f1_cell(out: Path, cell: Cell, at_best_val: float) -> None:
    run = runner.metrics_path(out, cell).parent
    run.mkdir(parents=True)
    history = [{"epoch": float(e), "test/acc": 0.9, "test/f1": at_best_val - 0.1 * e, "val/f1": 0.8 - 0.1 * e}
               for e in range(2)]  # fmt: skip
    summary = {"best_test_acc": 0.9, "final_test_acc": 0.9, "final_test_f1": at_best_val - 0.1, "epochs": 2,
               "best_test_f1": at_best_val, "best_val_f1": 0.8, "test_f1_at_best_val_f1": at_best_val}  # fmt: skip
    (run / "metrics.json").write_text(json.dumps({"summary": summary, "history": history}))
    (run / "noise.json").write_text(json.dumps({"realized_rate_train": 0.3}))


def test_report_shows_each_datasets_number_and_says_which(tmp_path: Path) -> None:
    suite = load_suite(write(tmp_path, SUITE))
    out = tmp_path / "out"
    for seed, value in ((0, 0.6), (1, 0.7)):
        fake_f1_cell(out, Cell("sms", "flip-0.3", "cross_entropy", seed), value)
    report.write_report(suite, grid(suite), out, command="python -m robustlabels.experiments ...")
    text = (out / "report.md").read_text()
    assert ("**Test F1 of class 1 at the best validation-F1 epoch (%)** (metric `f1`, selection `best_val`)\n\n"
            "| setting | realized noise (%) | cross_entropy |\n|---|---|---|\n"
            "| flip 0.3 | 30.0 | 65.0 ± 7.1 (paper 63.6) |") in text  # fmt: skip
    assert "**Best test F1 of class 1 (max over epochs) (%)**" in text
    assert "**Final test accuracy (%)**\n\n| setting" in text  # digits keeps its captions
    assert "- `sms` reports the test F1 of class 1 at the epoch of the best validation score" in text
    assert "in the dataset's metric and selection, for that setting (STORM)" in text
    assert "## Test metric per epoch" in text
    with open(out / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["metric"], r["selection"], r["value"]) for r in rows] == [("f1", "best_val", "0.6"),
                                                                          ("f1", "best_val", "0.7")]  # fmt: skip
    assert (out / "curves.png").stat().st_size > 10_000  # the sms panel plots test/f1
    assert report.mean_curve([json.loads(runner.metrics_path(out, Cell("sms", "flip-0.3", "cross_entropy", 0))
                                         .read_text())["history"]], "test/f1") == ([1, 2], [0.6, 0.5])  # fmt: skip


def test_a_spam_cell_end_to_end_reports_the_f1_at_the_best_val_epoch(tmp_path: Path) -> None:
    root = write_storm_layout(tmp_path / "spam", name="sms")
    suite = {"seeds": [0], "strategies": {"cross_entropy": {}}, "datasets": {"sms": {
        "config": str(package_path("configs", "spam", "sms_ce.yaml")), "metric": "f1", "selection": "best_val",
        "overrides": {"data": {"init_args": {"root": str(root)}}},
        "settings": [{"noise": "flip", "rate": 0.3}]}}}  # fmt: skip
    out = tmp_path / "out"
    assert cli.main(["--suite", str(write(tmp_path, suite)), "--out", str(out), "--limit-epochs", "2"]) == 0
    with open(out / "results.csv", newline="") as handle:
        (row,) = list(csv.DictReader(handle))
    metrics = json.loads(runner.metrics_path(out, Cell("sms", "flip-0.3", "cross_entropy", 0)).read_text())
    assert float(row["value"]) == pytest.approx(metrics["summary"]["test_f1_at_best_val_f1"], abs=1e-6)
    assert "selection `best_val`" in (out / "report.md").read_text()
