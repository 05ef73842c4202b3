"""Audit quality: F1 and precision@k of every audit method against the truly flipped labels, beside cleanlab's
standard recipe (5-fold scikit-learn ``LogisticRegression`` pred_probs, then ``find_label_issues``).

Each case runs ``python -m robustlabels.audit --method all`` as a user would (in-process), reading the per-method
metrics and times from its ``summary.json``; the baseline runs on the raw inputs' features (pixels / 255 for
images, the all-MiniLM-L6-v2 embeddings for text). Image cases audit a seeded stratified 20k subset of the
training split, written as an image ``.npz`` with ``inject``'s labels (Fashion-MNIST, exact symmetric noise) or
the CIFAR-10N labels of those images. Finished cases are kept in ``--work`` and skipped on rerun.

    python benchmarks/audit_quality.py --work runs/audit_quality --out docs/results/audit.md
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

CIFAR_N = "../shared/data/cifar_n/cifar10n_labels.npz"
SUBSET = 20_000  # images per image case: a seeded stratified subset of the training split (2-core budget)
CASES: dict[str, dict[str, Any]] = {
    "fashion_sym20": {"dataset": "fashion_mnist", "inject": 0.2, "label": "Fashion-MNIST 20k, 20 % symmetric"},
    "fashion_sym40": {"dataset": "fashion_mnist", "inject": 0.4, "label": "Fashion-MNIST 20k, 40 % symmetric"},
    "noisy_agnews": {"dataset": "noisy_agnews", "label": "NoisyAG-News (human, 19.75 %)"},
    "cifar10n_aggre": {"dataset": "cifar10", "key": "aggre_label", "label": "CIFAR-10N 20k, aggre"},
    "cifar10n_worst": {"dataset": "cifar10", "key": "worse_label", "label": "CIFAR-10N 20k, worst"},
}


def image_subset(name: str, case: dict[str, Any], work: Path) -> list[str]:
    """Write the case's inputs as a user would have them: an image ``.npz`` of a stratified ``SUBSET`` of the
    training split, the labels to audit (``inject``'s, or CIFAR-10N's) and the clean labels, as ``.npy``."""
    from robustlabels.data.catalog import load_arrays
    from robustlabels.data.datamodule import stratified_split

    folder = work / f"{name}_inputs"
    if not (folder / "labels.npy").exists():
        folder.mkdir(parents=True, exist_ok=True)
        arrays = load_arrays(case["dataset"], split="train")
        rows = stratified_split(arrays.labels, SUBSET / len(arrays.labels), seed=0)[1]
        np.savez(folder / "images.npz", images=arrays.inputs[rows], labels=arrays.labels[rows],
                 class_names=np.array(arrays.class_names))  # fmt: skip
        np.save(folder / "clean.npy", arrays.labels[rows])
        if "inject" in case:
            from robustlabels.inject import main as inject

            noise = ["--noise", "symmetric", "--rate", str(case["inject"]), "--exact", "--seed", "0"]
            assert inject(["--labels", str(folder / "clean.npy"), *noise, "--out", str(folder / "noise")]) == 0
            np.save(folder / "labels.npy", np.load(folder / "noise" / "labels.npy"))
        else:
            from robustlabels.data.readers import read_cifar_n

            assert np.array_equal(read_cifar_n(CIFAR_N, "clean_label"), arrays.labels)  # same image order
            np.save(folder / "labels.npy", read_cifar_n(CIFAR_N, case["key"])[rows])
    return ["--data", str(folder / "images.npz"), "--labels", str(folder / "labels.npy"),
            "--clean-labels", str(folder / "clean.npy")]  # fmt: skip


def audit_args(name: str, case: dict[str, Any], work: Path) -> list[str]:
    args = ["--method", "all", "--out", str(work / name), "--format", "json", "--force"]
    if case["dataset"] == "noisy_agnews":
        return ["--dataset", "noisy_agnews", "--split", "train", *args]
    return [*image_subset(name, case, work), *args]


def baseline(name: str, work: Path, folds: int = 5) -> dict[str, Any]:
    """cleanlab's standard recipe on the raw features: out-of-fold LogisticRegression, find_label_issues."""
    from cleanlab.filter import find_label_issues
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    from robustlabels.audit.cli import load, model_inputs, parser
    from robustlabels.audit.scoring import flag_metrics, precision_at_k

    data = load(parser().parse_args(audit_args(name, CASES[name], work)))
    x = model_inputs(data)
    x = x.reshape(len(x), -1).astype(np.float32) / 255.0 if x.dtype == np.uint8 else x
    start = time.perf_counter()
    cv = StratifiedKFold(folds, shuffle=True, random_state=0)
    probs = cross_val_predict(LogisticRegression(max_iter=200), x, data.labels, cv=cv, method="predict_proba")
    flagged = find_label_issues(data.labels, probs)
    seconds = time.perf_counter() - start
    is_error = data.labels != data.clean_labels
    scores = 1.0 - probs[np.arange(len(probs)), data.labels]
    return {"name": "cleanlab baseline (5-fold LogisticRegression)", "seconds": seconds,
            "flag_metrics": flag_metrics(flagged, is_error), "precision_at_k": precision_at_k(scores, is_error),
            "features": f"{x.shape[1]}-d raw"}  # fmt: skip


def run_case(name: str, work: Path) -> dict[str, Any]:
    from robustlabels.audit.cli import main

    start = time.perf_counter()
    assert main(audit_args(name, CASES[name], work)) == 0
    total = time.perf_counter() - start
    summary = json.loads((work / name / "summary.json").read_text())
    return {"case": name, "num_examples": summary["num_examples"], "true_noise_rate": summary["true_noise_rate"],
            "methods": summary["methods"], "ensemble": summary["final"], "timings": summary["timings_seconds"],
            "total_seconds": total, "baseline": baseline(name, work)}  # fmt: skip


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| data | N | method | flagged | precision | recall | F1 | P@num_errors | wall time (s) |",
             "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for row in rows:
        label, n = CASES[row["case"]]["label"], row["num_examples"]
        timings = row["timings"]
        entries = [(m["name"], m, timings.get(m["name"], m["seconds"])) for m in row["methods"]]
        entries.append(("ensemble (all three)", row["ensemble"], row["total_seconds"]))
        entries.append((row["baseline"]["name"], row["baseline"], row["baseline"]["seconds"]))
        best = max(e[1]["flag_metrics"]["f1"] for e in entries[:-1])
        for method, m, seconds in entries:
            f = m["flag_metrics"]
            p_at = m["precision_at_k"].get(str(f["num_errors"]), m["precision_at_k"].get(f["num_errors"], float("nan")))
            f1 = f"**{f['f1']:.3f}**" if f["f1"] == best else f"{f['f1']:.3f}"
            lines.append(f"| {label} | {n:,} | {method} | {f['num_flagged']:,} | {f['precision']:.3f} | "
                         f"{f['recall']:.3f} | {f1} | {p_at:.3f} | {seconds:.0f} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, from {', '.join(CASES)}")
    p.add_argument("--work", default="runs/audit_quality", help="audit outputs and per-case results (resumable)")
    p.add_argument("--out", help="write the markdown table here")
    args = p.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.cases.split(","):
        done = work / f"{name}.json"
        if not done.exists():
            done.write_text(json.dumps(run_case(name, work), indent=2, default=float))
        rows.append(json.loads(done.read_text()))
        print(markdown(rows[-1:]), flush=True)
    table = markdown(rows)
    print(table)
    if args.out:
        Path(args.out).write_text(table)


if __name__ == "__main__":
    main()
