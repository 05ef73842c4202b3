"""The pairs-cpu suite's tables (docs/results/pairs-cpu/README.md): accuracy of every method, CRM against its
controls (the done-when test: more than two seed standard deviations), accuracy by rating gap, and the CRM audit
table's flags against the true swaps; then the pair audits (cleanlab on 5-fold out-of-sample probabilities, and
rank_consistency) against the true swaps.

    python experiments/pairs_tables.py runs/experiments/pairs-cpu            # tables from the finished cells
    python experiments/pairs_tables.py runs/experiments/pairs-cpu --cleanlab # + the two pair audits
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

CRM, ENSEMBLE, WIDE = "collaborative_reward_filter", "reward_ensemble", "bradley_terry-2x_width"
SORTED = f"{CRM}-curriculum_sort"
ORDER = ["bradley_terry", WIDE, ENSEMBLE, "conservative_bradley_terry", "co_teaching", CRM, f"{CRM}-estimate",
         f"{CRM}-self_review", f"{CRM}-short_ramp", SORTED, f"{SORTED}-estimate", f"{SORTED}-self_review",
         f"{CRM}-epoch_selection", "oracle"]  # fmt: skip


def accuracy_table(results: pd.DataFrame) -> str:
    stats = results.assign(v=results["final_test_acc"] * 100).groupby(["noise", "rate", "strategy"])["v"]
    mean, sd, count = stats.mean(), stats.std(), stats.count()
    settings = sorted({(n, r) for n, r, _ in mean.index}, key=lambda s: (s[0] != "symmetric", s[1]))
    head = "| method | " + " | ".join(f"{n} {r:g}" for n, r in settings) + " |"
    lines = [head, "|---" + "|---:" * len(settings) + "|"]

    def shown(key: tuple[str, float, str]) -> str:
        if key not in mean:
            return "—"
        return f"{mean[key]:.2f} ± {sd[key]:.2f}" + ("" if count[key] == 5 else f" (n={count[key]})")

    for strategy in ORDER:
        cells = [shown((n, r, strategy)) for n, r in settings]
        lines.append(f"| {strategy} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def crm_against_controls(results: pd.DataFrame) -> str:
    stats = results.assign(v=results["final_test_acc"] * 100).groupby(["noise", "rate", "strategy"])["v"]
    mean, sd = stats.mean(), stats.std()
    lines = ["| setting | CRM | control | control acc. | CRM − control | 2 × larger seed sd | CRM better by > 2 sd? |",
             "|---|---:|---|---:|---:|---:|---|"]  # fmt: skip
    for noise in ("symmetric", "difficulty"):
        for variant in (CRM, f"{CRM}-short_ramp", SORTED, f"{CRM}-epoch_selection"):
            for control in (ENSEMBLE, WIDE, "bradley_terry"):
                crm, other = (noise, 0.4, variant), (noise, 0.4, control)
                if crm not in mean or other not in mean:
                    continue
                diff, bar = mean[crm] - mean[other], 2 * max(sd[crm], sd[other])
                lines.append(f"| {noise} 0.4 | {variant}: {mean[crm]:.2f} ± {sd[crm]:.2f} "
                             f"| {control} | {mean[other]:.2f} ± {sd[other]:.2f} | {diff:+.2f} | {bar:.2f} | "
                             f"{'yes' if diff > bar else 'no'} |")  # fmt: skip
    return "\n".join(lines)


def by_gap_table(out: Path, noise: str, rate: float) -> str:
    rows = []
    setting = out / "cells" / "imdb_pref" / f"{noise}-{rate:g}"
    for path in sorted(setting.glob("*/seed*/run/version_0/accuracy_by_gap.json")):
        strategy = path.parents[3].name
        for gap, entry in json.loads(path.read_text())["by_gap"].items():
            rows.append({"strategy": strategy, "gap": int(float(gap)), "acc": entry["accuracy"] * 100,
                         "n": entry["pairs"]})  # fmt: skip
    if not rows:
        return "(no accuracy_by_gap.json found)"
    frame = pd.DataFrame(rows).groupby(["strategy", "gap"]).agg(acc=("acc", "mean"), n=("n", "first")).reset_index()
    gaps = sorted(frame["gap"].unique())
    pairs = frame.drop_duplicates("gap").set_index("gap")["n"]
    lines = ["| method | " + " | ".join(f"Δ={g} ({pairs[g]})" for g in gaps) + " |", "|---" + "|---:" * len(gaps) + "|"]
    for strategy in ORDER:
        part = frame[frame["strategy"] == strategy].set_index("gap")["acc"]
        if len(part):
            lines.append(f"| {strategy} | " + " | ".join(f"{part.get(g, float('nan')):.1f}" for g in gaps) + " |")
    return "\n".join(lines)


def flag_scores(flagged: np.ndarray, swapped: np.ndarray) -> tuple[float, float, float]:
    """Precision, recall and F1 of ``flagged`` against the true ``swapped`` pairs."""
    hits = float((flagged & swapped).sum())
    precision, recall = hits / max(flagged.sum(), 1), hits / max(swapped.sum(), 1)
    return precision, recall, 2 * precision * recall / max(precision + recall, 1e-12)


def audit_table(out: Path) -> tuple[str, dict[tuple[str, float, str], list[float]]]:
    """Flags of the CRM audit tables (issues.csv) against the true swaps, and the kept set's precision/recall."""
    rows, f1s = [], {}
    for path in sorted((out / "cells" / "imdb_pref").glob(f"*-0.[24]/{CRM}*/seed*/run/version_0/issues.csv")):
        table = pd.read_csv(path)
        swapped = (table["given_label"] != table["true_label"]).to_numpy()
        flagged = table["flagged"].to_numpy().astype(bool)
        precision, recall, f1 = flag_scores(flagged, swapped)
        kept_precision, kept_recall, _ = flag_scores(~flagged, ~swapped)
        setting, strategy = path.parents[4].name, path.parents[3].name
        noise, rate = setting.rsplit("-", 1)
        f1s.setdefault((noise, float(rate), strategy), []).append(f1)
        rows.append({"setting": setting, "strategy": strategy, "flagged": flagged.mean(), "P": precision,
                     "R": recall, "F1": f1, "kept P": kept_precision, "kept R": kept_recall})  # fmt: skip
    frame = pd.DataFrame(rows).groupby(["setting", "strategy"]).mean().reset_index()
    lines = ["| setting | method | flagged share | precision | recall | F1 | kept: clean share | kept: clean recall |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for row in frame.itertuples():
        lines.append(f"| {row.setting} | {row.strategy} | {row.flagged:.3f} | {row.P:.3f} | {row.R:.3f} | {row.F1:.3f} "
                     f"| {row[7]:.3f} | {row[8]:.3f} |")  # fmt: skip
    return "\n".join(lines), f1s


def pair_audits(noise: str, rate: float, folds: int = 5) -> dict[str, dict[str, float]]:
    """The two audits of the IMDB-Pref training pairs (the suite's swaps: noise seed 1) against the true swaps:
    cleanlab's ``find_label_issues`` on 5-fold out-of-sample probabilities of the suite's Bradley–Terry MLP on the
    MiniLM embeddings, and ``rank_consistency`` (the comparison graph of the same pairs; identical embeddings =
    one review)."""
    from cleanlab.filter import find_label_issues

    from robustlabels.audit.confident import cross_val_pred_probs
    from robustlabels.audit.rank_consistency import item_ids, rank_consistency
    from robustlabels.audit.training import load_fit_config
    from robustlabels.data import IMDBPrefDataModule
    from robustlabels.noise import DifficultySwapNoise, SymmetricNoise

    model = SymmetricNoise(rate) if noise == "symmetric" else DifficultySwapNoise(rate)
    data = IMDBPrefDataModule(noise=model, noise_seed=1)
    data.setup()
    train = data.datasets["train"]
    inputs, labels = train.inputs.numpy(), train.targets.numpy()
    swapped = (train.targets != train.clean_targets).numpy()
    found = {}
    started = time.perf_counter()
    probs = cross_val_pred_probs(inputs, labels, num_classes=2, config=load_fit_config("audit/pairs_bt"), folds=folds,
                                 seed=0, root_dir="/tmp/pairs-cleanlab", progress=False)  # fmt: skip
    found["cleanlab"] = (find_label_issues(labels, probs), time.perf_counter() - started)
    started = time.perf_counter()
    found["rank_consistency"] = (rank_consistency(item_ids(inputs), labels).flagged, time.perf_counter() - started)
    scores = {}
    for name, (flagged, seconds) in found.items():
        precision, recall, f1 = flag_scores(flagged, swapped)
        scores[name] = {"precision": precision, "recall": recall, "F1": f1, "flagged": float(flagged.mean()),
                        "seconds": seconds}  # fmt: skip
    return scores


def main(out_dir: str, with_cleanlab: bool) -> None:
    out = Path(out_dir)
    results = pd.read_csv(out / "results.csv")
    print("### Final clean-test pairwise accuracy (%), mean ± sd over 5 seeds\n\n" + accuracy_table(results))
    print("\n### CRM against its controls at η = 0.4\n\n" + crm_against_controls(results))
    for noise in ("symmetric", "difficulty"):
        print(f"\n### Accuracy by rating gap Δ, {noise} 0.4 (mean over seeds; test pairs per gap)\n")
        print(by_gap_table(out, noise, 0.4))
    table, f1s = audit_table(out)
    print("\n### The CRM audit table (issues.csv: the round(η·N) most doubted pairs flagged) against the true swaps\n")
    print(table)
    if with_cleanlab:
        print("\n### Pair audits against the true swaps (IMDB-Pref training pairs)\n")
        print("| setting | audit | F1 | precision | recall | flagged share | seconds |")
        print("|---|---|---:|---:|---:|---:|---:|")
        for noise, rate in (("symmetric", 0.2), ("symmetric", 0.4), ("difficulty", 0.2), ("difficulty", 0.4)):
            for variant in (CRM, f"{CRM}-short_ramp", SORTED):
                ours = f1s.get((noise, rate, variant), [])
                if ours:
                    print(f"| {noise} {rate:g} | {variant} audit table (5 training seeds) | {np.mean(ours):.3f} ± "
                          f"{np.std(ours, ddof=1):.3f} | | | {rate:.3f} | |")  # fmt: skip
            for name, m in pair_audits(noise, rate).items():
                label = "cleanlab find_label_issues, 5-fold BT MLP" if name == "cleanlab" else name
                print(f"| {noise} {rate:g} | {label} | {m['F1']:.3f} | {m['precision']:.3f} | {m['recall']:.3f} | "
                      f"{m['flagged']:.3f} | {m['seconds']:.0f} |", flush=True)  # fmt: skip

if __name__ == "__main__":
    main(sys.argv[1], "--cleanlab" in sys.argv[2:])
