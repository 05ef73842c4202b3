"""The audit on all 50,000 CIFAR-10 training images with CIFAR-10N's human labels, on pretrained features.

    python benchmarks/audit_cifar_n.py [--work runs/audit_cifar_n] [--labels aggre_label,worse_label]

For each label set it runs, as a user would, ``python -m robustlabels.audit --dataset cifar10 --labels
../shared/data/cifar_n/cifar10n_labels.npz:<set> --clean-labels original --method all`` (EfficientNet-Lite0
features: the ``images`` extra), then cleanlab's standard recipe on the same embeddings (5-fold scikit-learn
``LogisticRegression`` out-of-fold probabilities, ``find_label_issues``), and prints one markdown table
(docs/results/audit.md, "CIFAR-10N on pretrained features").
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

LABELS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar_n" / "cifar10n_labels.npz"


def audit(label_set: str, out: Path) -> dict[str, Any]:
    from robustlabels.audit.cli import main

    if not (out / "summary.json").is_file():
        args = ["--dataset", "cifar10", "--labels", f"{LABELS}:{label_set}", "--clean-labels", "original",
                "--method", "all", "--out", str(out), "--force"]  # fmt: skip
        if main(args) != 0:
            raise SystemExit(f"the audit of {label_set} failed")
    return json.loads((out / "summary.json").read_text())


def standard_recipe(label_set: str, folds: int = 5) -> dict[str, Any]:
    """5-fold LogisticRegression on the cached encoder features, then cleanlab's find_label_issues."""
    from cleanlab.filter import find_label_issues
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    from robustlabels.audit.scoring import flag_metrics, precision_at_k
    from robustlabels.data.catalog import load_arrays
    from robustlabels.features.image import encode_images

    data = load_arrays("cifar10", split="train")
    labels = np.load(LABELS)[label_set].astype(np.int64)
    features = encode_images(data.inputs)  # the audit's cache
    start = time.perf_counter()
    cv = StratifiedKFold(folds, shuffle=True, random_state=0)
    probs = cross_val_predict(LogisticRegression(max_iter=500), features, labels, cv=cv, method="predict_proba")
    flagged = find_label_issues(labels, probs)
    is_error = labels != data.labels
    scores = 1.0 - probs[np.arange(len(labels)), labels]
    return {"name": "cleanlab standard recipe (5-fold LogisticRegression, same features)",
            "seconds": time.perf_counter() - start, "flag_metrics": flag_metrics(flagged, is_error),
            "precision_at_k": precision_at_k(scores, is_error, [int(is_error.sum())])}  # fmt: skip


def row(label_set: str, entry: dict[str, Any]) -> str:
    m = entry["flag_metrics"]
    p_at = next(iter(entry.get("precision_at_k", {}).values()), float("nan"))
    return (f"| {label_set} | {entry['name']} | {m['num_flagged']:,} | {m['precision']:.3f} | {m['recall']:.3f} | "
            f"{m['f1']:.3f} | {p_at:.3f} | {entry.get('seconds', float('nan')):.0f} |")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="runs/audit_cifar_n")
    parser.add_argument("--labels", default="aggre_label,worse_label")
    args = parser.parse_args()
    lines = ["| labels | method | flagged | precision | recall | F1 | P@num_errors | seconds |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for label_set in args.labels.split(","):
        summary = audit(label_set, Path(args.work) / label_set)
        errors = summary["final"]["flag_metrics"]["num_errors"]
        for method in (*summary["methods"], summary["final"]):
            entry = {"name": method["name"], "flag_metrics": method["flag_metrics"], "seconds": method.get("seconds"),
                     "precision_at_k": {k: v for k, v in method.get("precision_at_k", {}).items()
                                        if int(k) == errors}}  # fmt: skip
            lines.append(row(label_set, entry))
        lines.append(row(label_set, standard_recipe(label_set)))
        print("\n".join(lines), flush=True)
        lines = lines[:2]


if __name__ == "__main__":
    main()
