"""Text audits on two views (all-MiniLM-L6-v2 and TF-IDF) against cleanlab's standard recipe, per view.

    python benchmarks/audit_text.py [--work runs/audit_text] [--noise-seed 0] [--out docs/results/audit_text.md]
    python benchmarks/audit_text.py --validate --noise-seed 1     # the rule-choosing table (other noise draw)

Cases: the 20 Newsgroups test set (7,532) and the IMDB test set (25,000) from ``../shared/data``, each with 10 % and
20 % symmetric noise written by ``python -m robustlabels.inject --noise symmetric --exact --seed S`` (F1 against
the injected flips), and NoisyAG-News (10,000) with its human labels. For every case and every ``--text-views``
(``minilm``, ``tfidf``, ``minilm,tfidf``) it runs, as a user would (in-process),
``python -m robustlabels.audit --data FILE --labels noisy.npy --clean-labels clean.npy --method
confident_learning,knn --text-views VIEWS --threads 1`` and reads its ``summary.json``; then the standard recipe:
5-fold scikit-learn ``LogisticRegression(max_iter=200)`` out-of-fold probabilities on the same MiniLM embeddings
and ``cleanlab.filter.find_label_issues``. Finished audits are kept in ``--work`` and skipped on rerun.

``--validate`` instead prints, for the chosen noise seed, the candidates the combination rule was chosen from:
the TF-IDF model's ``C``, the mean or geometric pool of the two views' probabilities, and SimiFeat on each view
or on both (mean cosine).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CASES: dict[str, dict[str, Any]] = {
    "20news_sym10": {"file": "20news/20news_test.jsonl.gz", "rate": 0.1, "label": "20 Newsgroups test, 10 % sym."},
    "20news_sym20": {"file": "20news/20news_test.jsonl.gz", "rate": 0.2, "label": "20 Newsgroups test, 20 % sym."},
    "imdb_sym10": {"file": "imdb/imdb_test.jsonl.gz", "rate": 0.1, "label": "IMDB test, 10 % sym."},
    "imdb_sym20": {"file": "imdb/imdb_test.jsonl.gz", "rate": 0.2, "label": "IMDB test, 20 % sym."},
    "noisy_agnews": {"label": "NoisyAG-News (human, 19.75 %)"},
}
VIEWS = ("minilm", "tfidf", "minilm,tfidf")
VIEW_LABEL = {"minilm": "MiniLM", "tfidf": "TF-IDF", "minilm,tfidf": "both"}


def case_inputs(name: str, work: Path, seed: int) -> list[str]:
    """The audit's input arguments; for an injected case, write ``clean.npy`` and ``inject``'s ``labels.npy``."""
    case = CASES[name]
    if "file" not in case:
        return ["--dataset", "noisy_agnews", "--split", "train"]
    from robustlabels.data.readers import read_text_jsonl
    from robustlabels.inject import main as inject

    data = SHARED / case["file"]
    folder = work / "inputs" / f"{name}_seed{seed}"
    if not (folder / "noise" / "labels.npy").is_file():
        folder.mkdir(parents=True, exist_ok=True)
        _, clean = read_text_jsonl(data, text_key="text", label_key="label")
        np.save(folder / "clean.npy", clean)
        noise = ["--noise", "symmetric", "--rate", str(case["rate"]), "--exact", "--seed", str(seed)]
        assert inject(["--labels", str(folder / "clean.npy"), *noise, "--out", str(folder / "noise")]) == 0
    return ["--data", str(data), "--labels", str(folder / "noise" / "labels.npy"),
            "--clean-labels", str(folder / "clean.npy")]  # fmt: skip


def audit(name: str, views: str, work: Path, seed: int) -> dict[str, Any]:
    """``python -m robustlabels.audit`` on one case with ``--text-views views``; its ``summary.json``."""
    from robustlabels.audit.cli import main

    out = work / f"seed{seed}" / name / views.replace(",", "+")
    if not (out / "summary.json").is_file():
        args = [*case_inputs(name, work, seed), "--method", "confident_learning,knn", "--text-views", views,
                "--threads", "1", "--out", str(out), "--format", "json", "--force"]  # fmt: skip
        start = time.perf_counter()
        if main(args) != 0:
            raise SystemExit(f"the audit of {name} ({views}) failed")
        summary = json.loads((out / "summary.json").read_text())
        summary["wall_seconds"] = time.perf_counter() - start
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return json.loads((out / "summary.json").read_text())


def case_arrays(name: str, work: Path, seed: int) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """``(texts, labels, clean labels, MiniLM embeddings)`` exactly as the audit reads them."""
    from robustlabels.audit.cli import load, model_inputs, parser

    data = load(parser().parse_args([*case_inputs(name, work, seed), "--out", str(work / "unused")]))
    assert data.texts is not None and data.clean_labels is not None
    return data.texts, data.labels, data.clean_labels, model_inputs(data)


def standard_recipe(labels: np.ndarray, clean: np.ndarray, embeddings: np.ndarray, folds: int = 5) -> dict[str, Any]:
    """cleanlab's recipe: out-of-fold ``LogisticRegression(max_iter=200)`` on the embeddings, find_label_issues."""
    from cleanlab.filter import find_label_issues
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    start = time.perf_counter()
    cv = StratifiedKFold(folds, shuffle=True, random_state=0)
    probs = cross_val_predict(LogisticRegression(max_iter=200), embeddings, labels, cv=cv, method="predict_proba")
    flagged = find_label_issues(labels, probs)
    return entry("cleanlab standard recipe (5-fold LogisticRegression, MiniLM)", flagged,
                 1.0 - probs[np.arange(len(labels)), labels], labels != clean, time.perf_counter() - start)  # fmt: skip


def entry(name: str, flagged: np.ndarray, scores: np.ndarray, is_error: np.ndarray, seconds: float) -> dict[str, Any]:
    from robustlabels.audit.scoring import flag_metrics, precision_at_k

    errors = int(is_error.sum())
    return {"name": name, "flag_metrics": flag_metrics(flagged, is_error), "seconds": seconds,
            "p_at_errors": precision_at_k(scores, is_error, [errors])[min(errors, len(scores))]}  # fmt: skip


def rows_of(name: str, work: Path, seed: int) -> list[dict[str, Any]]:
    """Every method of every view, then the standard recipe, for one case (cached in ``--work``)."""
    done = work / f"seed{seed}" / f"{name}.json"
    if done.is_file():
        return list(json.loads(done.read_text()))
    rows = []
    for views in VIEWS:
        summary = audit(name, views, work, seed)
        errors = summary["final"]["flag_metrics"]["num_errors"]
        timings = summary["timings_seconds"]
        for m in (*summary["methods"], summary["final"]):
            method = "ensemble (rank average)" if m is summary["final"] else m["name"]
            seconds = summary.get("wall_seconds") if m is summary["final"] else timings.get(m["name"])
            rows.append({"views": VIEW_LABEL[views], "name": method, "flag_metrics": m["flag_metrics"],
                         "n": summary["num_examples"],
                         "seconds": seconds, "p_at_errors": m["precision_at_k"][str(errors)]})  # fmt: skip
    _, labels, clean, embeddings = case_arrays(name, work, seed)
    rows.append({"views": "MiniLM", "n": len(labels), **standard_recipe(labels, clean, embeddings)})
    done.write_text(json.dumps(rows, indent=2))
    return rows


def markdown(results: dict[str, list[dict[str, Any]]], seed: int) -> str:
    lines = ["| data | N | views | method | flagged | precision | recall | F1 | P@num_errors | seconds |",
             "|---|---:|---|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    gains = []
    for name, rows in results.items():
        best = max(r["flag_metrics"]["f1"] for r in rows[:-1])
        base = rows[-1]["flag_metrics"]["f1"]
        winner = next(r for r in rows[:-1] if r["flag_metrics"]["f1"] == best)
        gains.append(f"{CASES[name]['label']}: best {winner['name']} on {winner['views']} {best:.3f} vs standard "
                     f"recipe {base:.3f} ({best - base:+.3f})")  # fmt: skip
        for r in rows:
            f = r["flag_metrics"]
            f1 = f"**{f['f1']:.3f}**" if f["f1"] == best else f"{f['f1']:.3f}"
            seconds = "" if r.get("seconds") is None else f"{r['seconds']:.0f}"
            lines.append(f"| {CASES[name]['label']} | {r['n']:,} | {r['views']} | {r['name']} | "
                         f"{f['num_flagged']:,} | {f['precision']:.3f} | {f['recall']:.3f} | {f1} | "
                         f"{r['p_at_errors']:.3f} | {seconds} |")  # fmt: skip
    return "\n".join(lines) + f"\n\nNoise seed {seed}. " + "; ".join(gains) + ".\n"


def validate(name: str, work: Path, seed: int) -> list[str]:
    """The candidate rules on one case: F1 and P@num_errors of each, one markdown row apiece."""
    from robustlabels.audit.confident import confident_learning
    from robustlabels.audit.simifeat import simifeat
    from robustlabels.audit.views import (
        combine_probs,
        cross_val_linear_probs,
        joint_neighbour_features,
        tfidf_matrix,
        tfidf_neighbour_features,
    )

    texts, labels, clean, emb = case_arrays(name, work, seed)
    c, is_error = int(max(labels.max(), clean.max()) + 1), labels != clean
    x = tfidf_matrix(texts)
    p_minilm = cross_val_linear_probs(emb, labels, num_classes=c, c=1.0)
    candidates: dict[str, Any] = {"CL, MiniLM (C=1)": p_minilm}
    for c_tfidf in (1.0, 10.0, 30.0):
        p_tfidf = cross_val_linear_probs(x, labels, num_classes=c, c=c_tfidf)
        candidates[f"CL, TF-IDF (C={c_tfidf:g})"] = p_tfidf
        for rule in ("mean", "geometric"):
            candidates[f"CL, {rule} of both (TF-IDF C={c_tfidf:g})"] = combine_probs([p_minilm, p_tfidf], rule)
    out = []
    for label, probs in candidates.items():
        r = confident_learning(labels, probs)
        out.append((label, entry(label, r.flagged, r.scores, is_error, 0.0)))
    lsa = tfidf_neighbour_features(x)
    for label, feats in (("knn, MiniLM", emb), ("knn, TF-IDF (LSA)", lsa),
                         ("knn, both (mean cosine)", joint_neighbour_features([emb, lsa]))):  # fmt: skip
        r = simifeat(feats, labels, num_classes=c, threads=1)
        out.append((label, entry(label, r.flagged, r.scores, is_error, 0.0)))
    return [f"| {CASES[name]['label']} | {label} | {e['flag_metrics']['num_flagged']:,} | "
            f"{e['flag_metrics']['f1']:.3f} | {e['p_at_errors']:.3f} |" for label, e in out]  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, from {', '.join(CASES)}")
    p.add_argument("--work", default="runs/audit_text", help="inputs, audit outputs, per-case rows (resumable)")
    p.add_argument("--noise-seed", type=int, default=0, help="inject's --seed for the injected cases")
    p.add_argument("--validate", action="store_true", help="print the candidate rules' table instead")
    p.add_argument("--out", help="also write the markdown table here")
    args = p.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    names = [n.strip() for n in args.cases.split(",") if n.strip()]
    if args.validate:
        lines = ["| data | candidate | flagged | F1 | P@num_errors |", "|---|---|---:|---:|---:|"]
        for name in names:
            lines += validate(name, work, args.noise_seed)
            print("\n".join(lines[-16:]), file=sys.stderr, flush=True)
        table = "\n".join(lines) + "\n"
    else:
        results = {}
        for name in names:
            results[name] = rows_of(name, work, args.noise_seed)
            print(markdown({name: results[name]}, args.noise_seed), file=sys.stderr, flush=True)
        table = markdown(results, args.noise_seed)
    print(table)
    if args.out:
        from robustlabels.io import atomic_write_text

        atomic_write_text(Path(args.out), table)


if __name__ == "__main__":
    main()
