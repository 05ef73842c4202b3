"""Benchmark suites: ``python -m robustlabels.experiments --suite NAME --out DIR``.

A suite (``robustlabels/experiments/suites/<name>.yaml``) crosses datasets × noise settings × strategies × seeds. Every
cell is one ``python -m robustlabels.fit`` run in its own subprocess and folder, so a suite can be
interrupted and resumed, and run several cells at a time. The modules, in the order a run uses them:

- :mod:`~robustlabels.experiments.suite`: parse and validate a suite file, expand (and filter) its grid of cells;
- :mod:`~robustlabels.experiments.configs`: merge a cell's fit config from the base config and the suite's layers;
- :mod:`~robustlabels.experiments.runner`: run cells as subprocesses, ``jobs`` at a time, and the on-disk
  state that makes a suite resumable;
- :mod:`~robustlabels.experiments.report`: ``results.csv``, ``report.md`` and ``curves.png`` from the finished cells;
- :mod:`~robustlabels.experiments.cli`: the command line tying them together.

See ``experiments/README.md``.
"""

from robustlabels.experiments.configs import build_config, deep_merge
from robustlabels.experiments.report import write_report
from robustlabels.experiments.runner import RunStats, run_suite
from robustlabels.experiments.suite import Cell, Suite, grid, load_suite

__all__ = ["Cell", "RunStats", "Suite", "build_config", "deep_merge", "grid", "load_suite", "run_suite", "write_report"]
