"""Per-sample weight diagnostics of a suite's weighting strategies (STORM-style, Meta-Weight-Net, L2RW).

Reads every finished cell's ``metrics.json`` under a suite's output folder and prints, per dataset, setting and
strategy (mean over seeds): the weight AUC (clean vs flipped) and the two groups' mean weights in the last
epoch, and the median over epochs of ω's two gradient-path norms (STORM only) and their ratio.

    python experiments/weight_diagnostics.py runs/experiments/storm-spam
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path


def main(out: Path) -> None:
    rows: dict[tuple[str, str, str], list[dict[str, float]]] = defaultdict(list)
    for path in sorted(out.glob("cells/*/*/*/seed*/run/version_*/metrics.json")):
        dataset, setting, strategy = path.parts[-7:-4]
        history = json.loads(path.read_text())["history"]
        if "train/weight_auc" not in history[-1]:
            continue
        paths = [
            (h["train/grad_path_theta"], h["train/grad_path_direct"]) for h in history if "train/grad_path_theta" in h
        ]
        row = {key: history[-1][f"train/{key}"] for key in ("weight_auc", "weight_mean_clean", "weight_mean_flipped")}
        if paths:
            theta, direct = (statistics.median(p) for p in zip(*paths, strict=True))
            row.update(
                path_theta=theta, path_direct=direct, ratio=statistics.median(t / max(d, 1e-30) for t, d in paths)
            )
        rows[(dataset, setting, strategy)].append(row)
    columns = ["weight_auc", "weight_mean_clean", "weight_mean_flipped", "path_theta", "path_direct", "ratio"]
    print("| dataset | setting | strategy | seeds | " + " | ".join(columns) + " |")
    print("|---|---|---|---:|" + "---:|" * len(columns))
    for (dataset, setting, strategy), cells in sorted(rows.items()):
        means = [statistics.mean(c[k] for c in cells) if k in cells[0] else None for k in columns]
        shown = ["" if m is None else f"{m:.3g}" for m in means]
        print(f"| {dataset} | {setting} | {strategy} | {len(cells)} | " + " | ".join(shown) + " |")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
