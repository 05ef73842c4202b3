"""The storm-spam suite beside STORM's Table 2: ours and the paper's mean ± sd, each gap in paper standard
deviations, and STORM's gain over "no rescaling" in our seed standard deviations (the larger of the two).

    python experiments/storm_spam_table.py runs/experiments/storm-spam/results.csv
"""

from __future__ import annotations

import sys

import pandas as pd

# Heck et al., AAAI 2025, Table 2 (TF-IDF; Youtube accuracy, SMS F1 of spam): (no rescaling, STORM), (mean, sd)
PAPER = {
    ("youtube", 0.0): ((93.4, 0.3), (93.8, 0.7)), ("sms", 0.0): ((93.7, 1.3), (92.1, 2.3)),
    ("youtube", 0.1): ((92.9, 0.7), (93.5, 0.4)), ("sms", 0.1): ((76.9, 0.5), (88.1, 1.0)),
    ("youtube", 0.2): ((92.9, 1.1), (93.6, 0.9)), ("sms", 0.2): ((71.6, 3.2), (85.3, 1.3)),
    ("youtube", 0.3): ((89.5, 1.5), (91.0, 0.7)), ("sms", 0.3): ((63.6, 4.5), (82.3, 3.1)),
    ("youtube", 0.4): ((81.8, 3.7), (83.6, 2.5)), ("sms", 0.4): ((48.6, 3.7), (64.9, 4.1)),
}  # fmt: skip
NO_RESCALING, STORM = "meta_loss_rescaling-no_rescaling", "meta_loss_rescaling"


def main(path: str) -> None:
    results = pd.read_csv(path)
    values = results.assign(value=results["value"] * 100).groupby(["dataset", "rate", "strategy"])["value"]
    mean, sd, count = values.mean(), values.std(), values.count()

    def shown(key: tuple[str, float, str]) -> str:
        return f"{mean[key]:.1f} ± {sd[key]:.1f} (n={count[key]})" if key in mean else "—"

    print(
        "| data | noise | no rescaling: paper | ours | gap (paper sd) | STORM: paper | ours | gap (paper sd) "
        "| STORM − no rescaling | in our seed sd | MW-Net (clean) | L2RW (clean) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for (dataset, rate), ((paper_nr, sd_nr), (paper_st, sd_st)) in sorted(
        PAPER.items(), key=lambda kv: (kv[0][0] == "sms", kv[0][1])
    ):
        nr, st = (dataset, rate, NO_RESCALING), (dataset, rate, STORM)
        if nr not in mean or st not in mean:
            continue
        gain = mean[st] - mean[nr]
        print(
            f"| {dataset} | {rate:.0%} | {paper_nr} ± {sd_nr} | {shown(nr)} | {(mean[nr] - paper_nr) / sd_nr:+.1f} "
            f"| {paper_st} ± {sd_st} | {shown(st)} | {(mean[st] - paper_st) / sd_st:+.1f} | {gain:+.1f} "
            f"| {gain / max(sd[nr], sd[st]):+.1f} | {shown((dataset, rate, 'meta_weight_net'))} "
            f"| {shown((dataset, rate, 'l2rw'))} |"
        )


if __name__ == "__main__":
    main(sys.argv[1])
