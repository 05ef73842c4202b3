"""Suite cells under recipe variants, side by side: wall time and the reported number of each.

Runs the chosen cells of a suite in this process (as ``--reuse-processes`` workers do, so imports are paid once),
once per variant and round, interleaved, after one untimed warm-up fit; each variant is a YAML mapping
deep-merged last into every cell's config (``{}`` is the suite as shipped). Prints one row per variant: the
median wall seconds per cell over the rounds, its ratio to the first variant, and the mean reported number (final
test accuracy). Run it with one torch thread per process, as a suite cell runs (``--jobs 2`` on 2 cores).

    OMP_NUM_THREADS=1 python benchmarks/suite_cells.py --suite pairs-cpu --strategies bradley_terry,co_teaching \\
        --settings symmetric-0.4 --seeds 0 --variants '{}' \\
        '{model: {optimizer: {init_args: {fused: true}}}}'
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import yaml

from robustlabels.experiments.configs import build_config, with_logger
from robustlabels.experiments.runner import _fit_here, fit_command
from robustlabels.experiments.suite import grid, load_suite


def run_cell(config: dict, folder: Path) -> tuple[float, float]:
    """``(wall seconds, final test accuracy)`` of one fit of ``config`` in this process, written under ``folder``."""
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(with_logger(config, folder), sort_keys=False), encoding="utf-8")
    with open(folder / "log.txt", "w", encoding="utf-8") as log:
        started = time.perf_counter()
        code = _fit_here(fit_command(path, config)[3:], log)  # the arguments a suite cell runs with
        seconds = time.perf_counter() - started
    if code != 0:
        raise SystemExit(f"error: a cell failed (exit {code}); see {folder / 'log.txt'}")
    summary = json.loads((folder / "run" / "version_0" / "metrics.json").read_text(encoding="utf-8"))
    return seconds, float(summary["summary"]["final_test_acc"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", required=True)
    parser.add_argument("--strategies", required=True, help="comma-separated suite strategy keys")
    parser.add_argument("--settings", required=True, help="comma-separated NOISE-RATE labels")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--variants", nargs="+", default=["{}"], help="YAML mappings merged into every cell")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    suite = load_suite(args.suite)
    cells = grid(suite, strategies=args.strategies.split(","), settings=args.settings.split(","),
                 seeds=[int(s) for s in args.seeds.split(",")])  # fmt: skip
    variants = [yaml.safe_load(v) or {} for v in args.variants]
    seconds: dict[int, list[float]] = {i: [] for i in range(len(variants))}
    scores: dict[int, list[float]] = {i: [] for i in range(len(variants))}
    with tempfile.TemporaryDirectory(prefix="suite_cells_") as tmp:
        warmup = Path(tmp) / "warmup"  # the first fit in a process pays one-time costs: not timed
        warmup.mkdir()
        run_cell(build_config(suite, cells[0], variants[0]), warmup)
        for round_ in range(args.rounds):
            for i, variant in enumerate(variants):
                for cell in cells:
                    folder = Path(tmp) / f"r{round_}" / f"v{i}" / cell.path
                    folder.mkdir(parents=True)
                    wall, score = run_cell(build_config(suite, cell, variant), folder)
                    seconds[i].append(wall)
                    scores[i].append(score)
                    print(f"round {round_} variant {i} {cell.path}: {wall:.1f} s, final test acc {score:.4f}",
                          flush=True)  # fmt: skip
    base = statistics.median(seconds[0])
    print(f"\n{len(cells)} cells x {args.rounds} rounds\n\n| variant | s per cell (median) | ratio | mean final acc |")
    print("|---|---:|---:|---:|")
    for i, text in enumerate(args.variants):
        med = statistics.median(seconds[i])
        print(f"| `{text}` | {med:.1f} | {med / base:.2f} | {100 * statistics.fmean(scores[i]):.2f} |")


if __name__ == "__main__":
    main()
