"""The cifar-n-cpu suite read as gains: each strategy's final clean-test accuracy minus cross-entropy's, per label set.

    python experiments/cifar_n_table.py runs/experiments/cifar-n-cpu/results.csv

Prints one markdown table: per label set, cross-entropy's final and best-epoch accuracy (mean over the finished seeds),
then each strategy's final accuracy as a difference from cross-entropy's final, in points, with the number of seeds.
"""

from __future__ import annotations

import csv
import statistics
import sys
from collections import defaultdict


def main(path: str) -> None:
    final: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    best: dict[tuple[str, str], list[float]] = defaultdict(list)
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            key = (row["dataset"], row["noise"], row["strategy"])
            final[key].append(100 * float(row["final_test_acc"]))
            if row["strategy"] == "cross_entropy":
                best[key[:2]].append(100 * float(row["best_test_acc"]))
    strategies = list(dict.fromkeys(k[2] for k in final if k[2] != "cross_entropy"))
    print("| labels | CE final | CE best epoch | " + " | ".join(strategies) + " |")
    print("|---|---:|---:|" + "---:|" * len(strategies))
    for dataset, setting in dict.fromkeys(k[:2] for k in final):
        ce = final.get((dataset, setting, "cross_entropy"))
        if not ce:
            continue
        base = statistics.fmean(ce)
        cells = []
        for strategy in strategies:
            values = final.get((dataset, setting, strategy))
            cells.append(f"{statistics.fmean(values) - base:+.1f} (n={len(values)})" if values else "—")
        print(f"| {dataset} {setting} | {base:.1f} (n={len(ce)}) | {statistics.fmean(best[dataset, setting]):.1f} | "
              + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1])
