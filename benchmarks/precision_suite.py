"""Final accuracy in fp32 against bf16-mixed: one experiment suite run once per trainer precision, compared cell by
cell (docs/benchmarks.md, "CPU training precision").

    python benchmarks/precision_suite.py --suite storm-spam --out runs/precision-storm \
        --only meta_loss_rescaling --settings flip-0.2,flip-0.4 [--jobs 2] [--precisions 32-true,bf16-mixed]

Each precision gets a copy of the suite whose every dataset sets ``trainer.precision``; the runs go one after the
other into ``OUT/<precision>/`` (rerunning resumes them, as the suite runner does). It then prints, per dataset,
setting and strategy, each precision's mean ± sd over the seeds of the suite's reported value (``value`` where
the suite selects a metric, else ``final_test_acc``), the difference of the means, the larger of the two seed
spreads, the difference in units of its standard error (Welch) and the ratio of training seconds.
GPU variant: benchmarks/gpu_precision.sh.
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]


def suite_path(name: str) -> Path:
    path = Path(name)
    shipped = REPO / "robustlabels" / "experiments" / "suites" / f"{name}.yaml"
    return path if path.suffix in (".yaml", ".yml") else shipped


def suite_with_precision(source: Path, precision: str, target: Path) -> Path:
    """Write ``source`` with ``trainer.precision: precision`` in every dataset's overrides to ``target``."""
    suite = yaml.safe_load(source.read_text())
    for dataset in suite["datasets"].values():
        dataset.setdefault("overrides", {}).setdefault("trainer", {})["precision"] = precision
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(yaml.safe_dump(suite, sort_keys=False))
    return target


def read_values(results: Path) -> dict[tuple[str, str, str], list[tuple[float, float]]]:
    """``{(dataset, setting, strategy): [(value, train_seconds) per seed]}`` of a suite's results.csv."""
    cells: dict[tuple[str, str, str], list[tuple[float, float]]] = defaultdict(list)
    with results.open() as file:
        for row in csv.DictReader(file):
            value = row.get("value") or row["final_test_acc"]
            key = (row["dataset"], f"{row['noise']}-{row['rate']}", row["strategy"])
            cells[key].append((100 * float(value), float(row["train_seconds"])))
    return cells


def compare(runs: dict[str, Path]) -> str:
    """A markdown table comparing the first precision's results with the others'."""
    (base_name, base), *others = [(p, read_values(folder / "results.csv")) for p, folder in runs.items()]
    lines = []
    for name, other in others:
        lines += [f"| dataset | setting | strategy | seeds | {base_name} (%) | {name} (%) | difference | "
                  "larger seed sd | difference / its standard error | seconds ratio |",
                  "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
        for key in sorted(set(base) & set(other)):
            a, b = np.array(base[key]), np.array(other[key])
            sd_a, sd_b = (x[:, 0].std(ddof=1) if len(x) > 1 else 0.0 for x in (a, b))
            diff, se = b[:, 0].mean() - a[:, 0].mean(), np.sqrt(sd_a**2 / len(a) + sd_b**2 / len(b))
            lines.append(f"| {' | '.join(key)} | {len(a)}/{len(b)} | {a[:, 0].mean():.2f} ± {sd_a:.2f} | "
                         f"{b[:, 0].mean():.2f} ± {sd_b:.2f} | {diff:+.2f} | "
                         f"{max(sd_a, sd_b):.2f} | {diff / se if se else float('nan'):+.1f} | "
                         f"{b[:, 1].sum() / a[:, 1].sum():.2f} |")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--suite", required=True)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--precisions", default="32-true,bf16-mixed")
    p.add_argument("--jobs", default="2")
    args, suite_args = p.parse_known_args()
    runs = {}
    for precision in args.precisions.split(","):
        suite = suite_with_precision(suite_path(args.suite), precision, args.out / f"suite-{precision}.yaml")
        runs[precision] = args.out / precision
        command = [sys.executable, "-m", "robustlabels.experiments", "--suite", str(suite), "--out",
                   str(runs[precision]), "--jobs", args.jobs, "--reuse-processes", *suite_args]  # fmt: skip
        print("+", " ".join(command), flush=True)
        subprocess.run(command, cwd=REPO, check=True)
    print(compare(runs))


if __name__ == "__main__":
    main()
