"""``python -m robustlabels.experiments``: run a suite (or part of it), resume it, and write its report."""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from robustlabels.cli import error_line, report_error
from robustlabels.errors import InputError
from robustlabels.experiments.configs import build_config, run_overrides
from robustlabels.experiments.runner import cell_state, changed_cells, metrics_path, run_suite, threads_per_job
from robustlabels.experiments.suite import Cell, Suite, grid, load_suite, missing_data


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _seeds(value: str) -> list[int]:
    try:
        return [int(v) for v in _csv(value)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"seeds must be integers, e.g. 0,1; got {value!r}") from None


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m robustlabels.experiments`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="python -m robustlabels.experiments",
        description="Run a benchmark suite (datasets × noise settings × strategies × seeds) and report it.",
    )
    parser.add_argument("--suite", required=True, help="a shipped suite (smoke, cpu, cifar10-gpu) or a path")
    parser.add_argument("--out", required=True, help="output folder; rerunning into it resumes")
    parser.add_argument("--jobs", type=int, default=1, help="cells run in parallel (default 1)")
    parser.add_argument("--only", type=_csv, metavar="STRATEGY[,..]", help="run only these strategies")
    parser.add_argument("--datasets", type=_csv, metavar="NAME[,..]", help="run only these datasets")
    parser.add_argument("--settings", type=_csv, metavar="NOISE-RATE[,..]", help="e.g. symmetric-0.4")
    parser.add_argument("--seeds", type=_seeds, metavar="K[,..]", help="run only these of the suite's seeds")
    parser.add_argument("--limit-epochs", type=int, metavar="N", help="set trainer.max_epochs (smoke tests)")
    parser.add_argument("--data-fake", action="store_true", help="set data.init_args.fake: true (smoke tests)")
    parser.add_argument("--reuse-processes", action="store_true",
                        help="run cells in --jobs long-lived workers that import Lightning once (many short cells)")
    parser.add_argument("--fail-fast", action="store_true", help="start no new cell after a failure")
    parser.add_argument("--dry-run", action="store_true", help="list the cells and whether they are done")
    parser.add_argument("--report-only", action="store_true", help="only rewrite the report from finished cells")
    parser.add_argument("--rerun-changed", action="store_true",
                        help="rerun finished cells whose config has changed (default: refuse)")  # fmt: skip
    return parser


def _command_line(argv: Sequence[str]) -> str:
    return "python -m robustlabels.experiments " + shlex.join(argv)


def _dry_run(suite: Suite, cells: Sequence[Cell], out: Path, extra: dict[str, Any]) -> None:
    states = []
    for cell in cells:
        build_config(suite, cell, extra)  # a missing base config is reported now, not mid-suite
        states.append(cell_state(out, cell))
        print(f"{states[-1]:<7}{cell.name}")
    todo = len(cells) - states.count("done")
    print(f"{len(cells)} cells of suite {suite.name!r}, {todo} to run, {len(cells) - todo} done -> {out}")


def _prepare(ns: argparse.Namespace) -> tuple[Suite, list[Cell], dict[str, Any]]:
    if ns.jobs < 1:
        raise InputError(f"`--jobs` must be >= 1; got {ns.jobs}")
    if ns.limit_epochs is not None and ns.limit_epochs < 1:
        raise InputError(f"`--limit-epochs` must be >= 1; got {ns.limit_epochs}")
    suite = load_suite(ns.suite)
    cells = grid(suite, datasets=ns.datasets, settings=ns.settings, strategies=ns.only, seeds=ns.seeds)
    if not cells:
        raise InputError("the filters leave no cell to run")
    for name in dict.fromkeys(c.dataset for c in cells):  # data this machine lacks: skipped, saying what to provide
        missing = None if ns.data_fake else missing_data(suite.datasets[name])  # fake data needs no files
        if missing:
            print(f"{missing}", file=sys.stderr)
            cells = [c for c in cells if c.dataset != name]
    if not cells:
        raise InputError("every dataset the filters choose lacks its data here (see the lines above)")
    return suite, cells, run_overrides(limit_epochs=ns.limit_epochs, data_fake=ns.data_fake)


def _refuse_changed(suite: Suite, cells: Sequence[Cell], out: Path, extra: dict[str, Any], rerun: bool) -> None:
    changed = changed_cells(suite, cells, out, extra)
    if changed and not rerun:
        raise InputError(
            f"{len(changed)} finished cell(s) in {str(out)!r} ran with a different config (e.g. {changed[0].name}; "
            "see its config.yaml): use another --out, or --rerun-changed to run them again"
        )
    for cell in changed:
        metrics_path(out, cell).unlink()


def main(args: Sequence[str] | None = None) -> int:
    """Run a suite and write its report. Returns 0, 1 if a cell failed, 2 for bad input, 130 if interrupted."""
    from robustlabels.experiments.report import write_report

    argv = list(sys.argv[1:] if args is None else args)
    ns = build_parser().parse_args(argv)
    out = Path(ns.out).resolve()
    try:
        suite, cells, extra = _prepare(ns)
        if ns.dry_run:
            _dry_run(suite, cells, out, extra)
            return 0
        if not ns.report_only:
            _refuse_changed(suite, cells, out, extra, ns.rerun_changed)
    except InputError as err:
        return report_error(error_line(err))

    unavailable = {name for name, spec in suite.datasets.items() if not ns.data_fake and missing_data(spec)}  # once
    runnable = [c for c in grid(suite) if c.dataset not in unavailable]  # the report's cells

    def report(curves: bool = True) -> None:
        write_report(suite, runnable, out, command=_command_line(argv), curves=curves)

    if ns.report_only:
        report()
        print(f"report: {out / 'report.md'}")
        return 0
    print(f"suite {suite.name!r}: {len(cells)} cells, {ns.jobs} at a time, "
          f"{threads_per_job(ns.jobs)} thread(s) each -> {out}", flush=True)  # fmt: skip
    try:
        stats = run_suite(suite, cells, out, jobs=ns.jobs, fail_fast=ns.fail_fast, extra=extra,
                          after_cell=lambda _: report(curves=False), reuse_processes=ns.reuse_processes)  # fmt: skip
    except KeyboardInterrupt:
        report()
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    report()
    print(f"ran {len(stats.ran)}, skipped {len(stats.skipped)} (done before), failed {len(stats.failed)}, "
          f"not started {len(stats.not_started)}; report: {out / 'report.md'}")  # fmt: skip
    return 0 if stats.ok else 1
