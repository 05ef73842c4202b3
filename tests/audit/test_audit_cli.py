"""``python -m robustlabels.audit`` end to end: every input kind, the methods, the outputs and bad input."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from robustlabels.audit.cli import main
from robustlabels.audit.confident import FILTER_BY, confident_learning
from robustlabels.data.synthetic import make_blobs
from robustlabels.errors import InputError
from robustlabels.noise import SymmetricNoise

FAST = ["--epochs", "3", "--folds", "3", "--threads", "2"]


def noisy_blobs(n: int = 600, rate: float = 0.3, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(features, noisy labels, clean labels)`` of 4 well-separated Gaussian classes with exact noise."""
    x, clean = make_blobs(n, num_classes=4, dim=8, separation=6.0, seed=seed)
    noisy = SymmetricNoise(rate=rate, exact=True).apply(clean, num_classes=4, seed=seed).noisy
    return x, noisy, clean


def out_of_fold_probs(x: np.ndarray, labels: np.ndarray) -> np.ndarray:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_predict

    return cross_val_predict(LogisticRegression(max_iter=500), x, labels, cv=5, method="predict_proba")


def audit(*args: str) -> int:
    return main([str(a) for a in args])


def test_flags_equal_cleanlab_for_every_filter_by() -> None:
    from cleanlab.count import estimate_joint as cleanlab_joint
    from cleanlab.filter import find_label_issues

    x, noisy, _ = noisy_blobs()
    probs = out_of_fold_probs(x, noisy)
    for filter_by in FILTER_BY:
        ours = confident_learning(noisy, probs, filter_by=filter_by, n_jobs=1)
        assert np.array_equal(ours.flagged, find_label_issues(noisy, probs, filter_by=filter_by, n_jobs=1)), filter_by
    result = confident_learning(noisy, probs, n_jobs=1)
    assert result.joint.shape == (4, 4) and abs(result.joint.sum() - 1) < 1e-9
    reference = cleanlab_joint(noisy, probs).T  # cleanlab indexes [given][true]; ours rows = true
    assert np.abs(result.joint - reference).max() <= 1.0 / len(noisy)  # up to cleanlab's integer rounding
    assert abs(result.noise_rate - 0.3) < 0.05  # exact 30 % noise; the calibrated joint's off-diagonal mass


def test_the_cli_flags_by_prune_by_class_unless_told_otherwise(tmp_path: Path) -> None:
    """The audit's default ``--filter-by`` is ``prune_by_class`` (chosen by measurement, not cleanlab's default)."""
    from cleanlab.filter import find_label_issues

    x, noisy, _ = noisy_blobs(rate=0.4, seed=3)
    probs = out_of_fold_probs(x, noisy)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", noisy)
    np.save(tmp_path / "p.npy", probs)
    flags = {}
    for rule in (None, "prune_by_noise_rate"):
        out = tmp_path / str(rule)
        extra = ["--filter-by", rule] if rule else []
        assert audit("--data", tmp_path / "x.npy", "--labels", tmp_path / "y.npy", "--pred-probs",
                     tmp_path / "p.npy", "--out", out, *extra) == 0  # fmt: skip
        rows = list(csv.DictReader(open(out / "issues.csv")))
        flags[rule] = np.zeros(len(noisy), dtype=bool)
        flags[rule][[int(r["index"]) for r in rows if r["flagged"] == "True"]] = True
        used = json.loads((out / "summary.json").read_text())["methods"][0]["params"]["filter_by"]
        assert used == (rule or "prune_by_class")
    assert np.array_equal(flags[None], find_label_issues(noisy, probs, filter_by="prune_by_class"))
    assert np.array_equal(flags["prune_by_noise_rate"], find_label_issues(noisy, probs))  # cleanlab's default
    assert not np.array_equal(flags[None], flags["prune_by_noise_rate"])  # the default is not cleanlab's


def test_features_npy_with_pred_probs_writes_all_outputs_and_json(tmp_path: Path, capsys) -> None:
    x, noisy, clean = noisy_blobs()
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", noisy)
    np.save(tmp_path / "clean.npy", clean)
    np.save(tmp_path / "p.npy", out_of_fold_probs(x, noisy))
    out = tmp_path / "out"
    code = audit("--data", tmp_path / "x.npy", "--labels", tmp_path / "y.npy", "--pred-probs", tmp_path / "p.npy",
                 "--clean-labels", tmp_path / "clean.npy", "--out", out, "--format", "json")  # fmt: skip
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["num_examples"] == 600 and summary["methods"] == ["confident_learning"]
    assert summary["flag_metrics"]["f1"] > 0.8  # separable blobs: confident learning finds the flips
    rows = list(csv.DictReader(open(out / "issues.csv")))
    assert len(rows) == 600 and rows[0]["flagged"] == "True"
    assert [float(r["score"]) for r in rows] == sorted((float(r["score"]) for r in rows), reverse=True)
    assert not (out / "pred_probs.npy").exists()  # the user's own probabilities are not copied
    assert audit("--data", tmp_path / "x.npy", "--labels", tmp_path / "y.npy", "--pred-probs",
                 tmp_path / "p.npy", "--out", out) == 2  # fmt: skip  # no --force
    assert "--force" in capsys.readouterr().err


def test_kfold_confident_learning_on_digits_with_injected_labels(tmp_path: Path, capsys) -> None:
    from robustlabels.inject import main as inject

    assert inject(["--dataset", "digits", "--noise", "symmetric", "--rate", "0.3", "--exact", "--out",
                   str(tmp_path / "noise")]) == 0  # fmt: skip
    capsys.readouterr()  # inject's own report
    out = tmp_path / "audit"
    code = audit("--dataset", "digits", "--labels", tmp_path / "noise" / "labels.npy", "--clean-labels", "original",
                 "--method", "confident_learning", "--out", out, "--format", "json", *FAST)  # fmt: skip
    assert code == 0
    summary = json.loads(capsys.readouterr().out)  # stdout holds the JSON summary and nothing else
    assert summary["flag_metrics"]["precision"] > 0.7 and summary["flag_metrics"]["recall"] > 0.5
    probs = np.load(out / "pred_probs.npy")
    assert probs.shape == (1438, 10) and np.allclose(probs.sum(1), 1, atol=1e-4)
    full = json.loads((out / "summary.json").read_text())
    assert str(tmp_path / "noise" / "labels.npy") in full["input_hashes"]


def test_dynamics_and_image_inputs(tmp_path: Path, capsys) -> None:
    """An image .npz and an image folder of the same data give the same audit (dynamics: one training run)."""
    from robustlabels.data.catalog import load_arrays

    digits = load_arrays("digits", split="test")
    images = digits.inputs[:200]
    labels = digits.labels[:200].copy()
    flipped = np.arange(0, 200, 5)
    labels[flipped] = (labels[flipped] + 1) % 10
    np.savez(tmp_path / "d.npz", images=images, labels=labels)
    for i, (img, y) in enumerate(zip(images, labels, strict=True)):
        folder = tmp_path / "folder" / f"class{y}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(folder / f"{i:04d}.png")
    results = {}
    for name, source in (("npz", tmp_path / "d.npz"), ("folder", tmp_path / "folder")):
        assert audit("--data", source, "--method", "dynamics", "--out", tmp_path / name, "--epochs", "20",
                     "--threads", "2") == 0  # fmt: skip
        results[name] = json.loads((tmp_path / name / "summary.json").read_text())
    assert results["npz"]["num_examples"] == results["folder"]["num_examples"] == 200
    assert results["folder"]["class_names"][0] == "class0"
    rows = list(csv.DictReader(open(tmp_path / "npz" / "issues.csv")))
    top = {int(r["index"]) for r in rows[: len(flipped)]}
    assert len(top & set(flipped.tolist())) / len(flipped) > 0.6  # the flipped 20 % rank first
    assert "aum" in results["npz"]["final"]["params"]["components"]


@pytest.mark.parametrize("kind", ["csv", "jsonl.gz"])
def test_text_table_with_own_features(tmp_path: Path, kind: str) -> None:
    x, noisy, clean = noisy_blobs(400)
    texts = [f"review <b>{i}</b>" for i in range(len(noisy))]
    path = tmp_path / f"t.{kind}"
    if kind == "csv":
        with open(path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["body", "stars"])
            writer.writerows(zip(texts, noisy.tolist(), strict=True))
    else:
        with gzip.open(path, "wt") as f:
            f.writelines(json.dumps({"body": t, "stars": int(y), "stars_name": f"class-{y}"}) + "\n"
                         for t, y in zip(texts, noisy, strict=True))  # fmt: skip
    np.save(tmp_path / "f.npy", x)
    np.save(tmp_path / "clean.npy", clean)
    out = tmp_path / "out"
    assert audit("--data", path, "--text-column", "body", "--label-column", "stars", "--features",
                 tmp_path / "f.npy", "--clean-labels", tmp_path / "clean.npy", "--method", "confident_learning",
                 "--out", out, *FAST) == 0  # fmt: skip
    html = (out / "report.html").read_text()
    assert "review &lt;b&gt;" in html and "<b>0</b>" not in html
    summary = json.loads((out / "summary.json").read_text())
    assert summary["final"]["flag_metrics"]["f1"] > 0.6
    names = [f"class-{c}" for c in range(4)] if "jsonl" in kind else ["0", "1", "2", "3"]
    assert summary["class_names"] == names  # a JSONL's <label>_name field names the classes


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (lambda d: (d / "t.csv").write_text("text,label\nhello,1\n") and ["--data", d / "t.csv", "--label-column",
                                                                         "stars"], "no column 'stars'"),
        (lambda d: np.save(d / "y.npy", np.array([0, 1, 7])) or np.save(d / "x.npy", np.ones((3, 2))) or
         ["--data", d / "x.npy", "--labels", d / "y.npy", "--pred-probs", _probs(d, 3, 2)], "value 7 at index 2"),
        (lambda d: np.save(d / "y.npy", np.array([0, 1, 1])) or np.save(d / "x.npy", np.ones((3, 2))) or
         ["--data", d / "x.npy", "--labels", d / "y.npy", "--pred-probs", _probs(d, 3, 2, scale=0.5)],
         "p.npy' row 0 sums to 0.5, not 1"),
        (lambda d: np.save(d / "y.npy", np.array([0, 1, 1])) or np.save(d / "x.npy", np.ones((4, 2))) or
         ["--data", d / "x.npy", "--labels", d / "y.npy"], "has 3 labels but the data has 4 examples"),
        (lambda d: np.save(d / "y.npy", np.array([0, 1, 1])) or np.save(d / "x.npy", np.ones((3, 2))) or
         ["--data", d / "x.npy", "--labels", d / "y.npy", "--pred-probs", _probs(d, 2, 2)], "must have shape (3, 2)"),
        (lambda d: ["--data", d / "missing.npz"], "not found"),
        (lambda d: ["--dataset", "digits", "--method", "magic"], "unknown method 'magic'"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, capsys, make, needle: str) -> None:
    args = make(tmp_path)
    assert audit(*args, "--out", tmp_path / "out") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and needle in err and "\n" not in err, err
    assert not (tmp_path / "out" / "issues.csv").exists()


def _probs(folder: Path, n: int, c: int, scale: float = 1.0) -> Path:
    np.save(folder / "p.npy", np.full((n, c), scale / c))
    return folder / "p.npy"


@pytest.mark.parametrize("name", ["cnn_ce", "cnn_elr", "mlp_ce", "mlp_elr"])
def test_bundled_audit_configs_train_on_arrays(name: str, tmp_path: Path) -> None:
    from robustlabels.audit.training import fit_arrays, load_fit_config, predict

    rng = np.random.default_rng(0)
    inputs = rng.integers(0, 256, (64, 28, 28), dtype=np.uint8) if name.startswith("cnn") else rng.normal(
        size=(64, 6)).astype(np.float32)  # fmt: skip
    labels = np.arange(64) % 3
    rows = np.arange(64)
    module, _, dm = fit_arrays(load_fit_config(f"audit/{name}"), inputs, labels, num_classes=3,
                               train_rows=rows[:48], heldout_rows=rows[48:], seed=0, root_dir=tmp_path, epochs=1,
                               progress=False)  # fmt: skip
    probs, features = predict(module, dm, inputs, rows[48:])
    assert probs.shape == (16, 3) and np.allclose(probs.sum(1), 1, atol=1e-3) and features.shape[0] == 16
    assert ("ELR" in str([type(r).__name__ for r in module.regularizers])) == name.endswith("elr")


def test_default_fit_configs_are_package_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from robustlabels.audit.training import default_fit_config, load_fit_config
    from robustlabels.cli import package_path

    monkeypatch.chdir(tmp_path)  # outside the checkout
    images, features = np.zeros((4, 28, 28), dtype=np.uint8), np.zeros((4, 6), dtype=np.float32)
    assert default_fit_config(images, "knn") == package_path("configs", "audit", "cnn_ce.yaml")
    assert default_fit_config(images[:, :8, :8], "dynamics") == package_path("configs", "audit", "mlp_elr.yaml")
    assert default_fit_config(features, "confident_learning").name == "mlp_ce.yaml"
    assert load_fit_config("fashion_mnist/ce")["model"]["backbone"] == "small_cnn"  # a bundled name
    with pytest.raises(InputError, match="`--fit-config` 'no_such_config' is neither a file nor a bundled config"):
        load_fit_config("no_such_config")


def test_photographs_are_audited_on_pretrained_features(tmp_path: Path, capsys, monkeypatch) -> None:
    """32 px images get the EfficientNet-Lite0 features by default (the images extra is a dev dependency); the
    summary and report say so; ``--encoder none`` keeps the pixels; a bad encoder is one line, exit 2."""
    monkeypatch.setenv("ROBUSTLABELS_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(120, 32, 32, 3), dtype=np.uint8)
    np.savez(tmp_path / "c.npz", images=images, labels=rng.integers(0, 3, 120))
    assert audit("--data", tmp_path / "c.npz", "--method", "knn", "--encoder-resolution", "64", "--out",
                 tmp_path / "enc", "--format", "json") == 0  # fmt: skip
    summary = json.loads((tmp_path / "enc" / "summary.json").read_text())
    assert summary["model_inputs"] == "efficientnet_lite0 features at 64 px (1280 dims)"
    assert summary["methods"][0]["params"]["features"] == "pretrained image features"
    assert "efficientnet_lite0 features at 64 px" in (tmp_path / "enc" / "report.html").read_text()
    assert len(list((tmp_path / "cache" / "embeddings").glob("*.npy"))) == 1
    assert audit("--data", tmp_path / "c.npz", "--method", "knn", "--encoder", "none", "--epochs", "1", "--out",
                 tmp_path / "pix") == 0  # fmt: skip
    assert json.loads((tmp_path / "pix" / "summary.json").read_text())["model_inputs"].startswith("pixels")
    capsys.readouterr()
    assert audit("--data", tmp_path / "c.npz", "--encoder", "vgg", "--out", tmp_path / "bad") == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("error: --encoder 'vgg': unknown")
