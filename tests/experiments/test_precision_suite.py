"""benchmarks/precision_suite.py: the per-precision copy of a suite and the cell-by-cell comparison."""

import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import precision_suite


def test_every_dataset_of_the_copy_sets_the_precision_and_keeps_its_own_overrides(tmp_path: Path) -> None:
    source = precision_suite.suite_path("cpu")
    copy = precision_suite.suite_with_precision(source, "bf16-mixed", tmp_path / "s.yaml")
    original, derived = yaml.safe_load(source.read_text()), yaml.safe_load(copy.read_text())
    assert derived["datasets"].keys() == original["datasets"].keys()
    for name, dataset in derived["datasets"].items():
        assert dataset["overrides"]["trainer"]["precision"] == "bf16-mixed"
        own = original["datasets"][name]["overrides"]["trainer"]
        assert dataset["overrides"]["trainer"]["max_epochs"] == own["max_epochs"]
    assert derived["strategies"] == original["strategies"]


def write_results(folder: Path, values: list[float], seconds: float) -> Path:
    folder.mkdir(parents=True)
    rows = ["dataset,noise,rate,realized_rate,strategy,seed,best_test_acc,final_test_acc,train_seconds"]
    rows += [f"d,symmetric,0.4,0.4,ce,{i},0,{v},{seconds}" for i, v in enumerate(values)]
    (folder / "results.csv").write_text("\n".join(rows) + "\n")
    return folder


def test_the_comparison_reports_means_the_difference_and_its_standard_error(tmp_path: Path) -> None:
    runs = {"32-true": write_results(tmp_path / "a", [0.80, 0.82, 0.84], 10.0),
            "bf16-mixed": write_results(tmp_path / "b", [0.84, 0.86, 0.88], 15.0)}  # fmt: skip
    row = precision_suite.compare(runs).splitlines()[-1].split(" | ")
    assert row[3:5] == ["3/3", "82.00 ± 2.00"]
    assert row[5:8] == ["86.00 ± 2.00", "+4.00", "2.00"]
    assert float(row[8]) == pytest.approx(4 / (2 * (2 / 3) ** 0.5), abs=0.05)  # Welch: sqrt(4/3 + 4/3)
    assert row[9].rstrip(" |") == "1.50"
