"""The audit on preference pairs: a flagged pair is one whose chosen and rejected look swapped."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from robustlabels.audit.cli import main
from robustlabels.features import text as text_features


def swapped_pairs(n: int = 400, rate: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(n, 2, 8)`` pairs, side 0 the file's chosen; the true reward is linear; a ``rate`` share is swapped."""
    rng = np.random.default_rng(seed)
    sides = rng.normal(size=(n, 2, 8)).astype(np.float32)
    w = rng.normal(size=8)
    better_second = sides[:, 1] @ w > sides[:, 0] @ w
    sides[better_second] = sides[better_second][:, ::-1]  # chosen first, truly better
    swapped = rng.random(n) < rate
    sides[swapped] = sides[swapped][:, ::-1]
    return sides, swapped


def flagged_rows(out: Path) -> np.ndarray:
    rows = list(csv.DictReader((out / "issues.csv").open()))
    flagged = np.zeros(len(rows), bool)
    for row in rows:
        flagged[int(row["index"])] = row["flagged"] == "True" or row["flagged"] == "1"
    return flagged


def test_confident_learning_and_knn_find_swapped_feature_pairs(tmp_path: Path) -> None:
    sides, swapped = swapped_pairs()
    np.save(tmp_path / "pairs.npy", sides)
    out = tmp_path / "audit"
    assert main(["--data", str(tmp_path / "pairs.npy"), "--method", "confident_learning,knn", "--folds", "3",
                 "--epochs", "15", "--out", str(out)]) == 0  # fmt: skip
    flagged = flagged_rows(out)
    precision, recall = swapped[flagged].mean(), flagged[swapped].mean()
    assert precision > 0.6 and recall > 0.5, (precision, recall)
    assert "preference pairs" in json.loads((out / "summary.json").read_text())["source"]


def test_text_pairs_are_detected_and_encoded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A jsonl with chosen/rejected is audited as pairs (the encoder replaced by a fake: no model needed)."""
    monkeypatch.setattr(text_features, "_load_encoder", lambda model=None: lambda texts, batch_size: np.array(
        [[len(t), t.count("good"), t.count("bad"), 1.0] for t in texts], np.float32))  # fmt: skip
    monkeypatch.setenv("ROBUSTLABELS_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    rows, swapped = [], rng.random(200) < 0.2
    for i in range(200):
        good, bad = "good " * int(rng.integers(2, 6)) + f"{i}", "bad " * int(rng.integers(2, 6)) + f"{i}"
        chosen, rejected = (bad, good) if swapped[i] else (good, bad)
        rows.append(json.dumps({"prompt": f"q{i}", "chosen": chosen, "rejected": rejected}))
    (tmp_path / "pairs.jsonl").write_text("\n".join(rows) + "\n")
    out = tmp_path / "audit"
    assert main(["--data", str(tmp_path / "pairs.jsonl"), "--method", "knn", "--out", str(out)]) == 0
    flagged = flagged_rows(out)
    assert swapped[flagged].mean() > 0.8 and flagged[swapped].mean() > 0.8
    assert "preference pairs" in json.loads((out / "summary.json").read_text())["source"]
