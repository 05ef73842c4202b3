"""Text views of the audit (robustlabels/audit/views.py and ``--text-views``): a synthetic corpus whose class is
decided by a few words, the MiniLM encoder replaced by an uninformative fake."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from robustlabels.audit.cli import main
from robustlabels.audit.scoring import flag_metrics
from robustlabels.audit.views import (
    combine_probs,
    cross_val_linear_probs,
    joint_neighbour_features,
    parse_views,
    tfidf_matrix,
    tfidf_neighbour_features,
)
from robustlabels.errors import InputError
from robustlabels.features import text as text_features

FILLER = [f"w{i}" for i in range(60)]


def corpus(n: int = 600, classes: int = 3, rate: float = 0.2, seed: int = 0) -> tuple[list[str], np.ndarray,
                                                                                       np.ndarray]:  # fmt: skip
    """``(texts, noisy, clean)``: each text holds two of its class's five key words among ten filler words;
    ``rate`` of the labels moved to another class."""
    rng = np.random.default_rng(seed)
    clean = np.arange(n) % classes
    texts = []
    for y in clean:
        words = [f"key{y}x{j}" for j in rng.choice(5, 2)] + list(rng.choice(FILLER, 10))
        texts.append(" ".join(rng.permutation(words)))
    noisy = clean.copy()
    flip = rng.choice(n, int(rate * n), replace=False)
    noisy[flip] = (clean[flip] + rng.integers(1, classes, len(flip))) % classes
    return texts, noisy, clean


def fake_minilm(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """An encoder that knows nothing of the classes: a seeded unit vector per text, cached under ``tmp_path``."""

    def load(model: str = "") -> object:
        def encode(texts: list[str], batch_size: int) -> np.ndarray:
            x = np.stack([np.random.default_rng(abs(hash(t)) % 2**32).normal(size=16) for t in texts])
            return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

        return encode

    monkeypatch.setattr(text_features, "_load_encoder", load)
    monkeypatch.setenv("ROBUSTLABELS_CACHE", str(tmp_path / "cache"))


def test_linear_probs_are_out_of_sample() -> None:
    # Each row owns one indicator column and the labels are random: a model that saw a row's own label learns
    # it (in-sample p[i, y_i] near 1); one that never saw the row knows only the class frequencies.
    n, c = 300, 3
    labels = np.random.default_rng(0).integers(0, c, n)
    x = sp.hstack([sp.identity(n, format="csr", dtype=np.float32), sp.csr_matrix(np.ones((n, 1), np.float32))])
    probs = cross_val_linear_probs(x.tocsr(), labels, num_classes=c, folds=5, c=100.0)
    own = probs[np.arange(n), labels]
    assert probs.shape == (n, c) and np.allclose(probs.sum(1), 1, atol=1e-5)
    assert own.max() < 0.5 and abs(own.mean() - 1 / c) < 0.05, own.max()
    from sklearn.linear_model import LogisticRegression

    in_sample = LogisticRegression(C=100.0, max_iter=300).fit(x, labels).predict_proba(x)[np.arange(n), labels]
    assert in_sample.mean() > 0.9  # the same model in-sample would have learnt every label


def test_linear_probs_keep_sparse_input_sparse(monkeypatch: pytest.MonkeyPatch) -> None:
    texts, noisy, _ = corpus(150)
    x = tfidf_matrix(texts)
    assert sp.issparse(x)
    monkeypatch.setattr(sp.csr_matrix, "toarray", lambda *a, **k: pytest.fail("densified"))
    monkeypatch.setattr(sp.csr_matrix, "todense", lambda *a, **k: pytest.fail("densified"))
    assert cross_val_linear_probs(x, noisy, num_classes=3).shape == (150, 3)


def test_a_class_missing_from_the_labels_gets_zero_probability() -> None:
    labels = np.array([0, 2] * 10)
    probs = cross_val_linear_probs(np.eye(20, dtype=np.float32), labels, num_classes=3, folds=2)
    assert np.all(probs[:, 1] == 0) and np.allclose(probs.sum(1), 1, atol=1e-5)


def test_combine_probs_pools() -> None:
    a = np.array([[0.9, 0.1], [0.5, 0.5]])
    b = np.array([[0.1, 0.9], [0.8, 0.2]])
    assert np.allclose(combine_probs([a, b], "mean"), [[0.5, 0.5], [0.65, 0.35]])
    geo = combine_probs([a, b], "geometric")
    assert np.allclose(geo, [[0.5, 0.5], [2 / 3, 1 / 3]])  # √(0.5·0.8) : √(0.5·0.2) = 2 : 1
    with pytest.raises(InputError):
        combine_probs([a, b], "max")


def test_joint_neighbour_cosine_is_the_mean_of_the_views_cosines() -> None:
    rng = np.random.default_rng(0)
    u, v = rng.normal(size=(5, 4)), rng.normal(size=(5, 7)) * 3
    cos = lambda x: (x / np.linalg.norm(x, axis=1, keepdims=True)) @ (x / np.linalg.norm(x, axis=1, keepdims=True)).T  # noqa: E731
    joint = joint_neighbour_features([u, v])
    assert np.allclose(np.linalg.norm(joint, axis=1), 1, atol=1e-5)
    assert np.allclose(joint @ joint.T, (cos(u) + cos(v)) / 2, atol=1e-5)


def test_tfidf_neighbour_features_are_unit_rows_even_for_a_text_without_terms() -> None:
    texts, _, _ = corpus(100)
    z = tfidf_neighbour_features(tfidf_matrix([*texts, "zzz"]), dims=8)
    assert z.shape == (101, 8) and np.allclose(np.linalg.norm(z, axis=1), 1, atol=1e-5)


def test_tfidf_view_finds_the_injected_flips_far_better_than_chance() -> None:
    from robustlabels.audit.confident import confident_learning

    texts, noisy, clean = corpus(600)
    probs = cross_val_linear_probs(tfidf_matrix(texts), noisy, num_classes=3, c=10.0)
    flagged = confident_learning(noisy, probs).flagged
    f1 = flag_metrics(flagged, noisy != clean)["f1"]
    assert f1 > 0.8, f1  # flagging 20 % at random scores about 0.2


def write_csv(path: Path, texts: list[str], labels: np.ndarray) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows(zip(texts, labels.tolist(), strict=True))
    return path


@pytest.mark.parametrize(("views", "expect"), [("auto", ["minilm", "tfidf"]), ("tfidf", ["tfidf"])])
def test_cli_audits_text_on_views(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, views: str,
                                  expect: list[str]) -> None:  # fmt: skip
    fake_minilm(monkeypatch, tmp_path)
    texts, noisy, clean = corpus(600)
    np.save(tmp_path / "clean.npy", clean)
    out = tmp_path / "out"
    data = write_csv(tmp_path / "t.csv", texts, noisy)
    args = ["--data", str(data), "--clean-labels", str(tmp_path / "clean.npy"),
            "--method", "confident_learning,knn", "--text-views", views, "--out", str(out),
            "--threads", "1"]  # fmt: skip
    assert main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["text_views"] == expect
    assert "TF-IDF" in summary["model_inputs"] and ("MiniLM" in summary["model_inputs"]) == ("minilm" in expect)
    methods = {m["name"]: m for m in summary["methods"]}
    assert methods["confident_learning"]["params"]["text_views"] == expect
    assert "TF-IDF" in methods["knn"]["params"]["features"]
    # the MiniLM stand-in is noise, so the TF-IDF view carries the audit
    assert methods["confident_learning"]["flag_metrics"]["f1"] > 0.7
    assert summary["final"]["flag_metrics"]["f1"] > 0.5
    assert np.load(out / "pred_probs.npy").shape == (600, 3)
    assert "TF-IDF" in (out / "report.html").read_text()


def test_parse_views() -> None:
    assert parse_views(" TFIDF, minilm,tfidf") == ["tfidf", "minilm"]
    with pytest.raises(InputError, match="unknown view 'bow'"):
        parse_views("minilm,bow")


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (lambda d: ["--data", str(write_csv(d / "t.csv", ["a b", "c d"] * 5, np.array([0, 1] * 5))),
                    "--text-views", "minilm,bag"], "--text-views: unknown view 'bag'"),
        (lambda d: np.save(d / "y.npy", np.array([0, 1] * 5)) or np.save(d / "x.npy", np.ones((10, 2))) or
         ["--data", str(d / "x.npy"), "--labels", str(d / "y.npy"), "--text-views", "tfidf"], "needs text data"),
        (lambda d: ["--data", str(write_csv(d / "t.csv", ["", " "] * 5, np.array([0, 1] * 5))),
                    "--text-views", "tfidf", "--method", "confident_learning"], "TF-IDF view: no usable terms"),
    ],
)  # fmt: skip
def test_bad_text_view_input_is_one_line_and_exit_2(tmp_path: Path, capsys, make, needle: str) -> None:
    assert main([*make(tmp_path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and needle in err and "\n" not in err, err
    assert not (tmp_path / "out" / "issues.csv").exists()
