"""Running cells, each as a ``robustlabels.fit`` subprocess (or in reused worker processes), and the on-disk state
that makes a suite resumable.

A cell's folder is ``<out>/<cell.path>``: ``config.yaml`` (the merged config it ran with), ``log.txt``, the
fit's run folder ``run/version_0/`` (``metrics.json`` there marks the cell done) and, after a failure,
``failed.json``. A cell that is not done is run again from scratch.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import IO, Any, Literal

import yaml

from robustlabels.experiments.configs import RUN_SUBDIR, build_config, with_logger, without_logger
from robustlabels.experiments.suite import Cell, Suite, repo_root
from robustlabels.io import atomic_write_text


# ---- state on disk --------------------------------------------------------------------------------------
def metrics_path(out: Path, cell: Cell) -> Path:
    """Where a finished cell's ``metrics.json`` is; its existence marks the cell done."""
    return out / cell.path / RUN_SUBDIR / "metrics.json"


def config_path(out: Path, cell: Cell) -> Path:
    """The merged config a cell ran (or runs) with, logger included."""
    return out / cell.path / "config.yaml"


def failed_path(out: Path, cell: Cell) -> Path:
    """Written when a cell fails: exit code and error line; removed when the cell is run again."""
    return out / cell.path / "failed.json"


def is_done(out: Path, cell: Cell) -> bool:
    """Whether the cell finished (it is skipped on resume)."""
    return metrics_path(out, cell).is_file()


def cell_state(out: Path, cell: Cell) -> Literal["done", "failed", "todo"]:
    """``done`` (finished), ``failed`` (its last attempt failed) or ``todo`` (never run, or killed mid-run)."""
    return "done" if is_done(out, cell) else "failed" if failed_path(out, cell).is_file() else "todo"


def read_config(out: Path, cell: Cell) -> dict[str, Any] | None:
    """The stored ``config.yaml`` of a cell, logger included, or None if it never started."""
    path = config_path(out, cell)
    return (yaml.safe_load(path.read_text(encoding="utf-8")) or {}) if path.is_file() else None


def stored_config(out: Path, cell: Cell) -> dict[str, Any] | None:
    """The config a cell ran with, without the logger (which names the output folder)."""
    config = read_config(out, cell)
    return None if config is None else without_logger(config)


def changed_cells(suite: Suite, cells: Iterable[Cell], out: Path, extra: dict[str, Any] | None) -> list[Cell]:
    """Finished cells whose stored config differs from what the suite (and flags) give now."""
    return [
        c for c in cells if is_done(out, c) and stored_config(out, c) != without_logger(build_config(suite, c, extra))
    ]


# ---- running --------------------------------------------------------------------------------------------
def available_cores() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def threads_per_job(jobs: int, cores: int | None = None) -> int:
    """``max(1, cores // jobs)``: the OpenMP/MKL threads each parallel cell gets."""
    return max(1, (cores if cores is not None else available_cores()) // max(1, jobs))


def cell_env(threads: int) -> dict[str, str]:
    """The environment of a cell's subprocess; torch reads ``OMP_NUM_THREADS`` for its intra-op threads."""
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}


def fit_command(config_path: Path, config: dict[str, Any]) -> list[str]:
    """The fit command of one cell (``config``: its merged config).

    The cell's checkpoint is written once, after its last epoch (``last.ckpt``), not twice per epoch as a plain fit
    does: a suite reruns an unfinished cell from scratch, and those fsynced writes cost about 0.1 s per epoch, a
    tenth of a 10-epoch cell on 30k preference pairs.
    """
    command = [sys.executable, "-m", "robustlabels.fit", "--config", str(config_path),
               "--trainer.enable_progress_bar=false"]  # fmt: skip
    trainer = config.get("trainer") or {}
    max_epochs = trainer.get("max_epochs")
    if isinstance(max_epochs, int) and max_epochs > 0 and trainer.get("enable_checkpointing") is not False:
        checkpoint = {"class_path": "pytorch_lightning.callbacks.ModelCheckpoint",
                      "init_args": {"save_top_k": 0, "every_n_epochs": max_epochs}}  # fmt: skip
        command.append(f"--trainer.callbacks+={json.dumps(checkpoint, separators=(',', ':'))}")
    return command


@dataclass(frozen=True)
class CellOutcome:
    """How one attempted cell ended."""

    cell: Cell
    ok: bool
    seconds: float
    error: str = ""


def last_error(log: Path) -> str:
    """The most telling line of a failed cell's log: an ``error:`` line, else the last line."""
    lines = [ln.strip() for ln in log.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error:") or re.match(r"^\w+(Error|Exception)\b", ln)]
    return (errors or lines or ["(empty log)"])[-1][:300]


def run_cell(cell: Cell, out: Path, config: dict[str, Any], threads: int, *, in_process: bool = False) -> CellOutcome:
    """Run one cell from scratch; its output goes to ``<cell>/log.txt``.

    A fit subprocess by default; with ``in_process`` the fit runs in this (worker) process, which has imported
    Lightning once (:func:`run_suite`'s ``reuse_processes``). A leftover partial run (no ``metrics.json``) is
    deleted first; a failure leaves ``failed.json``.
    """
    cell_dir = out / cell.path
    shutil.rmtree(cell_dir / RUN_SUBDIR.parent, ignore_errors=True)
    failed_path(out, cell).unlink(missing_ok=True)
    atomic_write_text(config_path(out, cell), yaml.safe_dump(with_logger(config, cell_dir), sort_keys=False))
    command, started = fit_command(config_path(out, cell), config), time.perf_counter()
    with open(cell_dir / "log.txt", "w", encoding="utf-8") as log:
        log.write(f"$ cd {shlex.quote(str(repo_root()))} && OMP_NUM_THREADS={threads} {shlex.join(command)}\n")
        log.flush()
        if in_process:
            returncode = _fit_here(command[3:], log)
        else:
            returncode = subprocess.run(command, cwd=repo_root(), env=cell_env(threads), stdin=subprocess.DEVNULL,
                                        stdout=log, stderr=subprocess.STDOUT, check=False).returncode  # fmt: skip
    seconds = time.perf_counter() - started
    if returncode == 0 and is_done(out, cell):
        return CellOutcome(cell, True, seconds)
    error = last_error(cell_dir / "log.txt") if returncode else "exited 0 but wrote no metrics.json"
    failure = {"returncode": returncode, "error": error, "log": "log.txt"}
    atomic_write_text(failed_path(out, cell), json.dumps(failure, indent=2) + "\n")
    return CellOutcome(cell, False, seconds, error)


def _fit_here(args: list[str], log: IO[str]) -> int:
    """``python -m robustlabels.fit ARGS`` in this process (``runpy``, as ``-m`` runs it: the entry point is not
    imported), its stdout and stderr (file descriptors 1 and 2, so Lightning's and torch's output too) sent to
    ``log``; the exit code (1 after an uncaught exception)."""
    import gc
    import runpy
    import traceback

    sys.stdout.flush()
    sys.stderr.flush()
    saved, argv = (os.dup(1), os.dup(2)), sys.argv
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    sys.argv = ["robustlabels.fit", *args]
    try:
        runpy.run_module("robustlabels.fit", run_name="__main__", alter_sys=False)
        return 0
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 1
    except Exception:  # a crashing cell must not take the worker (and the suite) down
        traceback.print_exc()
        return 1
    finally:
        # A finished fit leaves reference cycles (Lightning's trainer, jsonargparse's parser) that hold the cell's
        # data; few container objects are allocated per cell, so Python's collector may not reach them for dozens
        # of cells, and a worker grew by about 200 MB per cell until the OOM killer stopped it. Collect them here.
        gc.collect()
        sys.argv = argv
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])


def _worker_init(threads: int) -> None:
    """A reused worker process: in the repository root (as a fit subprocess is), ``threads`` OpenMP threads, set
    before torch is imported."""
    os.chdir(repo_root())
    os.environ.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    import torch

    torch.set_num_threads(threads)


@dataclass
class RunStats:
    """What :func:`run_suite` did with the cells it was given."""

    ran: list[Cell] = field(default_factory=list)
    skipped: list[Cell] = field(default_factory=list)  # already done (resume)
    failed: list[CellOutcome] = field(default_factory=list)
    not_started: list[Cell] = field(default_factory=list)  # cancelled by --fail-fast

    @property
    def ok(self) -> bool:
        """No cell failed and none was left out."""
        return not self.failed and not self.not_started


def run_suite(
    suite: Suite,
    cells: Sequence[Cell],
    out: str | Path,
    *,
    jobs: int = 1,
    fail_fast: bool = False,
    extra: dict[str, Any] | None = None,
    after_cell: Callable[[CellOutcome], None] | None = None,
    reuse_processes: bool = False,
) -> RunStats:
    """Run the cells that are not done yet, ``jobs`` at a time; finished cells are skipped.

    Args:
        cells: from :func:`grid`.
        out: the output folder (cells go to ``<out>/cells/...``).
        jobs: cells run in parallel, each with ``max(1, cores // jobs)`` OpenMP threads.
        fail_fast: after the first failure start no new cell (running ones finish).
        extra: :func:`run_overrides`, merged last into every cell's config.
        after_cell: called in this thread after each attempted cell (e.g. to refresh the report).
        reuse_processes: run the cells in ``jobs`` long-lived worker processes that import Lightning once (about
            13 s on the 2-core machine) instead of one fit subprocess per cell: for suites of many short cells.
    """
    out = Path(out).resolve()
    stats = RunStats(skipped=[c for c in cells if is_done(out, c)])
    pending = deque(c for c in cells if c not in stats.skipped)
    configs = {cell: build_config(suite, cell, extra) for cell in pending}  # a bad base config fails before any run
    threads, running = threads_per_job(jobs), dict[Future[CellOutcome], Cell]()
    pool: Executor = (ProcessPoolExecutor(max(1, jobs), mp_context=get_context("spawn"), initializer=_worker_init,
                                          initargs=(threads,)) if reuse_processes
                      else ThreadPoolExecutor(max_workers=max(1, jobs)))  # fmt: skip
    with pool, _progress(len(pending)) as bar:
        while pending or running:
            while pending and len(running) < jobs:  # cells are submitted only as slots free up
                cell = pending.popleft()
                future = pool.submit(run_cell, cell, out, configs[cell], threads, in_process=reuse_processes)
                running[future] = cell
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                del running[future]
                outcome = future.result()
                _record(outcome, stats, bar, after_cell)
                if not outcome.ok and fail_fast:
                    stats.not_started, pending = list(pending), deque()
    return stats


def _record(outcome: CellOutcome, stats: RunStats, bar: Any, after_cell: Callable[[CellOutcome], None] | None) -> None:
    """Count an attempted cell, print its line and call ``after_cell``."""
    if outcome.ok:
        stats.ran.append(outcome.cell)
    else:
        stats.failed.append(outcome)
    bar.update(1)
    bar.write(_outcome_line(outcome))
    if after_cell is not None:
        after_cell(outcome)


def _outcome_line(outcome: CellOutcome) -> str:
    status = "ok    " if outcome.ok else "FAILED"
    line = f"{status} {outcome.cell.name} ({outcome.seconds:.0f} s)"
    return f"{line}  {outcome.error}" if outcome.error else line


def _progress(total: int) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="cells", unit="cell", disable=not sys.stderr.isatty(), dynamic_ncols=True)
