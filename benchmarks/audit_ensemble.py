"""How the audit's ensemble should flag: candidate rules on every data set of docs/results/audit.md.

    python benchmarks/audit_ensemble.py [--work runs/audit_ensemble] [--cases ...] [--pred-probs-from DIR]

Per case it runs, as a user would (in-process), ``python -m robustlabels.audit <case inputs> --method all
--threads 1`` (the cases and their inputs are those of benchmarks/audit_text.py, audit_quality.py (Fashion-MNIST
on pixels, ``--encoder none``, as in that table) and audit_cifar_n.py), whose ``issues.csv`` holds every member's
score and flags (``flagged_by``). Then it re-flags the same three rankings by each candidate rule and prints the F1
of each against the true labels, beside the best single method. Finished audits are kept in ``--work``.
``--pred-probs-from DIR``: reuse ``DIR/<case>/pred_probs.npy`` for CIFAR-10N (confident learning's five fold
models, computed by an earlier full audit), so the rerun costs the dynamics run and the kNN votes only.

Rules (``k`` = a flag count, top ``k`` of a ranking, ``votes`` = how many methods flag an example):
- ``own_flags_vote``: a majority of the methods' own flags (the ensemble until 2026-12-04);
- ``calibrated_vote``: a majority of every method's top ``k``, ``k`` the median of the methods' flag counts (the
  ensemble since 2026-12-04);
- ``top_k_median``: the averaged ranking's top ``k`` (same ``k``);
- ``top_k_cl_noise``: the averaged ranking's top ``N · η̂``, ``η̂`` confident learning's estimated noise rate;
- ``vote_median_rate``: a majority of every method's top ``N · η̃``, ``η̃`` the median of the methods' estimated
  noise rates (the off-diagonal mass of each method's estimated joint);
- ``oracle_k``: the averaged ranking's top ``#wrong labels`` (needs the truth: a ceiling for count rules).

A second table re-flags confident learning alone on each case's out-of-fold probabilities by every
``filter_by`` of cleanlab's ``find_label_issues`` (the audit's ``--filter-by``).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

CIFAR_N = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar_n" / "cifar10n_labels.npz"
CIFAR_CASES = {"cifar10n_worst": "worse_label", "cifar10n_aggre": "aggre_label"}
FILTERS = ("prune_by_noise_rate", "prune_by_class", "both", "confident_learning", "predicted_neq_given")
CASES = ("cifar10n_worst", "cifar10n_aggre", "noisy_agnews", "20news_sym10", "20news_sym20", "imdb_sym10",
         "imdb_sym20", "fashion_sym20", "fashion_sym40")  # fmt: skip


def case_args(name: str, work: Path, pred_probs_from: Path | None) -> list[str]:
    """The audit's input arguments of one case."""
    if name in CIFAR_CASES:
        args = ["--dataset", "cifar10", "--labels", f"{CIFAR_N}:{CIFAR_CASES[name]}", "--clean-labels", "original"]
        probs = pred_probs_from / CIFAR_CASES[name] / "pred_probs.npy" if pred_probs_from else None
        return [*args, "--pred-probs", str(probs)] if probs and probs.is_file() else args
    import audit_text

    if name in audit_text.CASES:
        return audit_text.case_inputs(name, work / "inputs", 0)
    import audit_quality

    args = audit_quality.image_subset(name, audit_quality.CASES[name], work / "inputs")
    return [*args, "--encoder", "none"]


def run_audit(name: str, work: Path, pred_probs_from: Path | None) -> Path:
    from robustlabels.audit.cli import main

    out = work / name
    if not (out / "summary.json").is_file():
        args = [*case_args(name, work, pred_probs_from), "--method", "all", "--threads", "1", "--out", str(out),
                "--force"]  # fmt: skip
        if main(args) != 0:
            raise SystemExit(f"the audit of {name} failed")
    return out


def read_members(out: Path) -> tuple[list[Any], np.ndarray, dict[str, float]]:
    """``(member MethodResults, is_error, {member: its estimated noise rate})`` from an audit's files."""
    from robustlabels.audit.types import MethodResult

    summary = json.loads((out / "summary.json").read_text())
    names = [m["name"] for m in summary["methods"]]
    with open(out / "issues.csv", newline="") as handle:
        rows = sorted(csv.DictReader(handle), key=lambda r: int(r["index"]))
    given = np.array([int(r["given_label"]) for r in rows])
    is_error = given != np.array([int(r["true_label"]) for r in rows])
    members = [MethodResult(m, scores=np.array([float(r[f"{m}_score"]) for r in rows]),
                            flagged=np.array([m in r["flagged_by"].split(";") for r in rows]),
                            suggested=given) for m in names]  # fmt: skip
    return members, is_error, {m["name"]: m["noise_rate"] for m in summary["methods"]}


def rule_f1s(members: list[Any], is_error: np.ndarray, noise_rates: dict[str, float]) -> dict[str, float]:
    from robustlabels.audit.ensemble import ensemble, normalized_rank, top_k_mask
    from robustlabels.audit.scoring import flag_metrics

    def f1(flags: np.ndarray) -> float:
        return float(flag_metrics(flags, is_error)["f1"])

    n = len(is_error)
    num_classes = int(max(m.suggested.max() for m in members)) + 1
    calibrated = ensemble(members, members[0].suggested, num_classes)
    ranking, k = calibrated.scores, calibrated.params["flag_count"]
    own_votes = np.sum([m.flagged for m in members], axis=0)
    mean_count = round(float(np.mean([m.flagged.sum() for m in members])))
    own = (2 * own_votes > len(members)) | ((2 * own_votes == len(members)) & top_k_mask(ranking, mean_count))
    row = {"best_single": max(f1(m.flagged) for m in members), "own_flags_vote": f1(own),
           "calibrated_vote": f1(calibrated.flagged), "top_k_median": f1(top_k_mask(ranking, k))}  # fmt: skip
    if "confident_learning" in noise_rates:
        row["top_k_cl_noise"] = f1(top_k_mask(ranking, round(n * noise_rates["confident_learning"])))
    k_rates = round(n * float(np.median(list(noise_rates.values()))))
    rate_votes = np.sum([top_k_mask(normalized_rank(m.scores), k_rates) for m in members], axis=0)
    row["vote_median_rate"] = f1((2 * rate_votes > len(members)) |
                                 ((2 * rate_votes == len(members)) & top_k_mask(ranking, k_rates)))  # fmt: skip
    row["oracle_k"] = f1(top_k_mask(ranking, int(is_error.sum())))
    assert np.allclose(ranking, np.mean([normalized_rank(m.scores) for m in members], axis=0))
    return row


def filter_f1s(out: Path, case: str, is_error: np.ndarray, pred_probs_from: Path | None) -> dict[str, float]:
    """Confident learning's F1 under each of cleanlab's ``filter_by`` rules, on the case's out-of-fold
    probabilities (``pred_probs.npy`` of the audit, or the reused ones of ``--pred-probs-from``)."""
    from cleanlab.filter import find_label_issues

    from robustlabels.audit.scoring import flag_metrics

    path = out / "pred_probs.npy"
    if not path.is_file() and pred_probs_from is not None and case in CIFAR_CASES:
        path = pred_probs_from / CIFAR_CASES[case] / "pred_probs.npy"
    if not path.is_file():
        return {}
    with open(out / "issues.csv", newline="") as handle:
        given = np.array([int(r["given_label"]) for r in sorted(csv.DictReader(handle), key=lambda r: int(r["index"]))])
    pred_probs = np.load(path)
    return {rule: float(flag_metrics(find_label_issues(given, pred_probs, filter_by=rule), is_error)["f1"])
            for rule in FILTERS}  # fmt: skip


def print_table(rows: list[dict[str, Any]], baseline: str) -> None:
    columns = [k for k in rows[0] if k not in ("case", "N", "wrong")]
    print("| case | N | wrong labels | " + " | ".join(columns) + " |")
    print("|---|---:|---:|" + "---:|" * len(columns))
    for r in rows:
        print(f"| {r['case']} | {r['N']:,} | {r['wrong']:,} | " + " | ".join(f"{r[k]:.3f}" if k in r else "–"
                                                                        for k in columns) + " |")  # fmt: skip
    means = {k: np.mean([r[k] - r[baseline] for r in rows if k in r]) for k in columns}
    print(f"| mean gain over {baseline} | | | " + " | ".join(f"{v:+.3f}" for v in means.values()) + " |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", type=Path, default=Path("runs/audit_ensemble"))
    p.add_argument("--cases", default=",".join(CASES))
    p.add_argument("--pred-probs-from", type=Path, help="folder with <label set>/pred_probs.npy for CIFAR-10N")
    args = p.parse_args()
    rows, filters = [], []
    for name in args.cases.split(","):
        out = run_audit(name, args.work, args.pred_probs_from)
        members, is_error, rates = read_members(out)
        case = {"case": name, "N": len(is_error), "wrong": int(is_error.sum())}
        rows.append({**case, **rule_f1s(members, is_error, rates)})
        filters.append({**case, **filter_f1s(out, name, is_error, args.pred_probs_from)})
        print(f"[ensemble] {name} done", file=sys.stderr, flush=True)
    print_table(rows, "own_flags_vote")
    print("\nconfident learning alone, by cleanlab's filter_by:\n")
    print_table(filters, "prune_by_noise_rate")


if __name__ == "__main__":
    main()
