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


def ranked_completions(prompts: int = 40, per_prompt: int = 8, rate: float = 0.2, seed: int = 0):
    """Every pair of ``per_prompt`` completions of each prompt, the better (by a latent quality) chosen, then a
    ``rate`` share swapped: the responses recur, so the comparison graph can vouch for each pair."""
    rng = np.random.default_rng(seed)
    rows, swapped = [], []
    for p in range(prompts):
        quality = rng.permutation(per_prompt)
        for a in range(per_prompt):
            for b in range(a + 1, per_prompt):
                better, worse = (a, b) if quality[a] > quality[b] else (b, a)
                swap = bool(rng.random() < rate)
                chosen, rejected = f"answer {better}", f"answer {worse}"
                if swap:
                    chosen, rejected = rejected, chosen
                rows.append({"prompt": f"question {p}", "chosen": chosen, "rejected": rejected})
                swapped.append(swap)
    return rows, np.array(swapped)


def test_rank_consistency_finds_swaps_the_features_cannot_see(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Constant features (a fake encoder) carry no signal; the other comparisons of each response do."""
    monkeypatch.setattr(text_features, "_load_encoder",
                        lambda model=None: lambda texts, batch_size: np.ones((len(texts), 4), np.float32))  # fmt: skip
    monkeypatch.setenv("ROBUSTLABELS_CACHE", str(tmp_path / "cache"))
    rows, swapped = ranked_completions()
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    np.save(tmp_path / "swapped.npy", swapped.astype(np.int64))  # as inject --pairs writes its labels
    out = tmp_path / "audit"
    assert main(["--data", str(tmp_path / "pairs.jsonl"), "--method", "rank_consistency", "--swapped",
                 str(tmp_path / "swapped.npy"), "--out", str(out)]) == 0  # fmt: skip
    flagged = flagged_rows(out)
    precision, recall = swapped[flagged].mean(), flagged[swapped].mean()
    assert precision > 2 * swapped.mean() and recall > 0.6, (precision, recall)  # 0.46 and 0.70 when written
    summary = json.loads((out / "summary.json").read_text())
    scored = summary["final"]["flag_metrics"]  # --swapped turned the swap flags into the true preferred side
    assert scored["num_errors"] == swapped.sum() and abs(scored["precision"] - precision) < 1e-9
    params = summary["methods"][0]["params"]
    assert params["responses"] == 40 * 8 and params["pairs_with_a_recurring_response"] == 1.0


def test_a_pairs_own_label_never_reaches_its_margin() -> None:
    """Cross-fitting: flipping the labels of one fold leaves that fold's margins unchanged."""
    from robustlabels.audit.rank_consistency import cross_fitted_margins

    rng = np.random.default_rng(1)
    items = np.stack([rng.integers(0, 30, 400), rng.integers(30, 60, 400)], axis=1)
    labels = rng.integers(0, 2, 400)
    fold_of = np.random.default_rng(7).integers(0, 4, 400)  # the folds cross_fitted_margins draws with seed 7
    before = cross_fitted_margins(items, labels, folds=4, l2=1.0, seed=7)
    flipped = np.where(fold_of == 2, 1 - labels, labels)
    after = cross_fitted_margins(items, flipped, folds=4, l2=1.0, seed=7)
    assert np.allclose(before[fold_of == 2], after[fold_of == 2])
    assert not np.allclose(before[fold_of != 2], after[fold_of != 2])


def test_rank_consistency_refuses_data_it_cannot_audit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sides, _ = swapped_pairs(n=50)  # every response distinct
    np.save(tmp_path / "pairs.npy", sides)
    out = str(tmp_path / "a")
    assert main(["--data", str(tmp_path / "pairs.npy"), "--method", "rank_consistency", "--out", out]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress line: one error line
    assert error.startswith("error:") and "no response of the 50 pairs" in error and "pairs.npy" in error
    np.save(tmp_path / "x.npy", sides[:, 0])
    np.save(tmp_path / "y.npy", np.zeros(50, np.int64))
    assert main(["--data", str(tmp_path / "x.npy"), "--labels", str(tmp_path / "y.npy"), "--method",
                 "rank_consistency", "--out", str(tmp_path / "b")]) == 2  # fmt: skip
    assert "needs preference pairs" in capsys.readouterr().err
