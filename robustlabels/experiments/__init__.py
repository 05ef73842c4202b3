"""Benchmark suites: ``python -m robustlabels.experiments --suite NAME --out DIR``.

A suite (``experiments/<name>/suite.yaml``) crosses datasets × noise settings × strategies × seeds. Every
cell is one ``python -m robustlabels.fit`` run in its own subprocess and folder, so a suite can be
interrupted and resumed, and run several cells at a time. :mod:`~robustlabels.experiments.runner` expands
the grid and runs it; :mod:`~robustlabels.experiments.report` turns the finished cells into
``results.csv``, ``report.md`` and ``curves.png``. See ``experiments/README.md``.
"""

from robustlabels.experiments.report import write_report
from robustlabels.experiments.runner import Cell, RunStats, Suite, build_config, deep_merge, grid, load_suite, run_suite

__all__ = ["Cell", "RunStats", "Suite", "build_config", "deep_merge", "grid", "load_suite", "run_suite", "write_report"]
