"""The GPU reproduction suites of issue 18 (``cifar100-gpu``, ``cifar10n-gpu``, ``clothing1m-gpu``, ``animal10n-gpu``,
``webvision-mini-gpu``): every cell builds, the papers' settings and numbers are where the suite files say, a few cells
run one epoch on fake data, and data that is not here is skipped with what to provide."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from robustlabels.errors import InputError
from robustlabels.experiments import cli, report
from robustlabels.experiments.suite import load_suite, missing_dataset

FAKE_RUN = ["--data-fake", "--limit-epochs", "1", "--seeds", "0", "--reuse-processes"]


def run_cli(*args: str) -> int:
    return cli.main(list(args))


def paper_suite(tmp_path: Path, **paper: object) -> Path:
    """A one-cell digits suite with one paper entry (plus ``paper``'s keys)."""
    cell = {"dataset": "digits", "noise": "symmetric", "rate": 0.4, "strategy": "cross_entropy"}
    digits = {"config": "configs/quickstart.yaml", "settings": [{"noise": "symmetric", "rate": 0.4}]}
    strategies = {"cross_entropy": {"overrides": {"model": {"strategy": {"class_path": "CrossEntropy"}}}}}
    suite = {"seeds": [0], "datasets": {"digits": digits}, "strategies": strategies,
             "paper": [{**cell, "value": 90.0, **paper}]}  # fmt: skip
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(suite))
    return path


# ---- what the runner gained for these suites ------------------------------------------------------------
def test_a_paper_tolerance_prints_our_gap_and_whether_it_is_within(tmp_path: Path) -> None:
    number = load_suite(paper_suite(tmp_path, tolerance=2.0)).paper[0]
    assert number.tolerance == 2.0
    assert report.format_accuracy([0.885, 0.895], expected=2, paper=90.0, tolerance=2.0).endswith(
        "(paper 90; Δ -1.0 ≤ 2)"
    )
    assert report.format_accuracy([0.85], expected=1, paper=90.0, tolerance=2.0) == "85.0 (paper 90; Δ -5.0 > 2)"
    assert report.format_accuracy([], expected=1, paper=90.0, tolerance=2.0) == "— (paper 90)"
    assert report.format_accuracy([0.85], expected=1, paper=90.0) == "85.0 (paper 90)"  # no tolerance: as before
    assert load_suite(paper_suite(tmp_path)).paper[0].tolerance is None
    with pytest.raises(InputError, match=r"`paper\[0\]\.tolerance` is a gap in points, >= 0; got -1"):
        load_suite(paper_suite(tmp_path, tolerance=-1))


def test_requires_names_file_based_datasets_by_their_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROBUSTLABELS_DATA", str(tmp_path / "store"))
    monkeypatch.setattr("robustlabels.experiments.suite.repo_root", lambda: tmp_path)
    why = missing_dataset("clothing1m")
    assert why is not None and "\n" not in why
    assert why.startswith("Clothing1M: no copy found") and str(tmp_path / "store" / "clothing1m") in why
    assert "noisy_label" in why and "data/clothing1m" in why  # where to get it and where it goes
    (tmp_path / "store" / "clothing1m").mkdir(parents=True)  # $ROBUSTLABELS_DATA/<folder>, as the module looks
    assert missing_dataset("clothing1m") is None
    (tmp_path / "data" / "animal10n").mkdir(parents=True)  # data/<folder> of the checkout the cells run in
    assert missing_dataset("animal10n") is None and missing_dataset("webvision") is not None
    with pytest.raises(InputError, match=r"unknown dataset 'clothing1M'; known: digits, .*, clothing1m"):
        missing_dataset("clothing1M")
