"""Suite files, the grid of cells, and running each cell as a ``robustlabels.fit`` subprocess (resumable).

A **suite** (``experiments/<name>/suite.yaml``)::

    seeds: [0, 1]
    trainer: {max_epochs: 3}                  # optional, every cell
    datasets:
      digits:
        config: configs/quickstart.yaml       # base fit config, relative to the repo root
        overrides: {...}                      # optional, nested, deep-merged into the base config
        strategy_overrides: {elr: {...}}      # optional, per strategy, for this dataset
        settings:
          - {noise: symmetric, rate: 0.4, overrides: {...}, strategy_overrides: {elr: {...}}}
    strategies:
      ce: {overrides: {model: {strategy: {class_path: CrossEntropy}}}}
    paper:                                    # optional reference numbers, in %
      - {dataset: digits, noise: symmetric, rate: 0.4, strategy: ce, final_test_acc: 60.0, source: "..."}

``noise`` and ``rate`` name a setting (its folder ``<noise>-<rate>`` and its row in the report); the noise
itself comes from the setting's ``overrides``. A **cell** is dataset × setting × strategy × seed. Its config
is the base config deep-merged with, in this order (later wins): the suite's ``trainer``, the dataset's
``overrides``, the setting's ``overrides``, the strategy's ``overrides``, the dataset's and then the
setting's ``strategy_overrides[strategy]``, the seed (``seed_everything: k`` and
``data.init_args.noise_seed: k``), then ``--limit-epochs`` / ``--data-fake``. Mappings merge key by key;
lists and scalars are replaced; a mapping whose ``class_path`` names a different class replaces the old
one whole (its ``init_args`` are not mixed with the old class's).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from robustlabels.errors import InputError
from robustlabels.io import atomic_write_text

PACKAGE_ROOT = Path(__file__).resolve().parents[2]
RUN_SUBDIR = Path("run") / "version_0"  # CSVLogger(save_dir=<cell>, name="run", version=0)
NAME = re.compile(r"^[A-Za-z0-9_.+-]+$")
SUITE_KEYS = {"seeds", "datasets", "strategies", "paper", "trainer"}
DATASET_KEYS = {"config", "overrides", "settings", "strategy_overrides"}
SETTING_KEYS = {"noise", "rate", "overrides", "strategy_overrides"}
PAPER_KEYS = {"dataset", "noise", "rate", "strategy", "final_test_acc", "source"}


def repo_root() -> Path:
    """The checkout holding ``configs/`` and ``experiments/`` (the working directory for an installed copy)."""
    return PACKAGE_ROOT if (PACKAGE_ROOT / "configs").is_dir() else Path.cwd()


# ---- the suite ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Setting:
    """One noise setting of a dataset: a label (``noise``, ``rate``) and the overrides that realise it."""

    noise: str
    rate: float
    overrides: dict[str, Any] = field(default_factory=dict)
    strategy_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """``<noise>-<rate>``, e.g. ``symmetric-0.4``: the setting's folder name."""
        return f"{self.noise}-{self.rate:g}"


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset of a suite: its base fit config, overrides and noise settings."""

    name: str
    config: str
    settings: tuple[Setting, ...]
    overrides: dict[str, Any] = field(default_factory=dict)
    strategy_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)

    def setting(self, label: str) -> Setting:
        """The setting whose :attr:`Setting.label` is ``label``."""
        return next(s for s in self.settings if s.label == label)


@dataclass(frozen=True)
class PaperNumber:
    """A published final test accuracy (in %) to print beside ours."""

    dataset: str
    noise: str
    rate: float
    strategy: str
    final_test_acc: float
    source: str = ""


@dataclass(frozen=True)
class Suite:
    """A parsed, validated ``suite.yaml``."""

    name: str
    path: Path
    seeds: tuple[int, ...]
    datasets: dict[str, DatasetSpec]
    strategies: dict[str, dict[str, Any]]  # name -> overrides
    paper: tuple[PaperNumber, ...] = ()
    trainer: dict[str, Any] = field(default_factory=dict)

    def paper_number(self, dataset: str, setting: Setting, strategy: str) -> PaperNumber | None:
        """The reference number for one (dataset, setting, strategy), if the suite lists one."""
        for number in self.paper:
            same_setting = number.noise == setting.noise and math.isclose(number.rate, setting.rate, abs_tol=1e-9)
            if number.dataset == dataset and same_setting and number.strategy == strategy:
                return number
        return None


@dataclass(frozen=True, order=True)
class Cell:
    """One run: dataset × setting × strategy × seed. Its files live under ``<out>/<path>``."""

    dataset: str
    setting: str  # Setting.label
    strategy: str
    seed: int

    @property
    def path(self) -> Path:
        """``cells/<dataset>/<noise>-<rate>/<strategy>/seed<k>``, relative to the output folder."""
        return Path("cells", self.dataset, self.setting, self.strategy, f"seed{self.seed}")

    @property
    def name(self) -> str:
        """``dataset/setting/strategy/seed<k>``, for messages."""
        return f"{self.dataset}/{self.setting}/{self.strategy}/seed{self.seed}"


def resolve_suite(name_or_path: str | Path) -> Path:
    """A suite file from a name (``smoke`` → ``experiments/smoke/suite.yaml``), a folder or a YAML path."""
    given = Path(name_or_path)
    for candidate in (given, given / "suite.yaml", repo_root() / "experiments" / str(name_or_path) / "suite.yaml"):
        if candidate.is_file():
            return candidate
    known = sorted(p.parent.name for p in (repo_root() / "experiments").glob("*/suite.yaml"))
    raise InputError(f"suite {str(name_or_path)!r} not found; known suites: {', '.join(known) or 'none'}")


def load_suite(name_or_path: str | Path) -> Suite:
    """Read and validate a suite file (see the module docstring for the schema).

    Raises:
        InputError: one line naming the bad key or value.
    """
    path = resolve_suite(name_or_path)
    raw = read_yaml(path, "suite")
    _check_keys(raw, SUITE_KEYS, {"seeds", "datasets", "strategies"}, "suite")
    strategies = _parse_strategies(raw["strategies"])
    datasets = {
        _name(name, "dataset"): _parse_dataset(name, entry, strategies)
        for name, entry in _mapping(raw["datasets"], "datasets", nonempty=True).items()
    }
    suite = Suite(
        name=path.parent.name if path.name == "suite.yaml" else path.stem,
        path=path,
        seeds=_parse_seeds(raw["seeds"]),
        datasets=datasets,
        strategies=strategies,
        paper=tuple(_parse_paper(i, entry) for i, entry in enumerate(raw.get("paper") or [])),
        trainer=_mapping(raw.get("trainer"), "trainer"),
    )
    _check_paper(suite)
    return suite


def read_yaml(path: Path, what: str) -> dict[str, Any]:
    """A YAML file holding a mapping, or :class:`InputError` naming the file."""
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise InputError(f"{what} {str(path)!r} is not valid YAML: {str(error).splitlines()[0]}") from None
    return _mapping(loaded, f"{what} {str(path)!r}")


def _mapping(value: Any, where: str, *, nonempty: bool = False) -> dict[str, Any]:
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise InputError(f"`{where}` must be a mapping; got {type(value).__name__} {value!r}")
    if nonempty and not value:
        raise InputError(f"`{where}` must not be empty")
    return value


def _check_keys(entry: dict[str, Any], allowed: set[str], required: set[str], where: str) -> None:
    unknown, missing = sorted(set(entry) - allowed), sorted(required - set(entry))
    if unknown:
        raise InputError(f"`{where}` has unknown key {unknown[0]!r}; allowed: {', '.join(sorted(allowed))}")
    if missing:
        raise InputError(f"`{where}` is missing the key {missing[0]!r}")


def _name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not NAME.match(value):
        raise InputError(f"{what} name {value!r} must be non-empty and use only letters, digits and _ . + -")
    return value


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(f"`{where}` must be a number; got {value!r}")
    return float(value)


def _parse_seeds(value: Any) -> tuple[int, ...]:
    if not isinstance(value, list) or not value:
        raise InputError(f"`seeds` must be a non-empty list of integers; got {value!r}")
    if any(isinstance(s, bool) or not isinstance(s, int) for s in value) or len(set(value)) != len(value):
        raise InputError(f"`seeds` must be distinct integers; got {value!r}")
    return tuple(value)


def _parse_strategies(value: Any) -> dict[str, dict[str, Any]]:
    strategies = {}
    for name, entry in _mapping(value, "strategies", nonempty=True).items():
        entry = _mapping(entry, f"strategies.{name}")
        _check_keys(entry, {"overrides"}, set(), f"strategies.{name}")
        strategies[_name(name, "strategy")] = _mapping(entry.get("overrides"), f"strategies.{name}.overrides")
    return strategies


def _parse_strategy_overrides(value: Any, strategies: dict[str, Any], where: str) -> dict[str, dict[str, Any]]:
    parsed = {}
    for strategy, overrides in _mapping(value, where).items():
        if strategy not in strategies:
            raise InputError(f"`{where}` names an unknown strategy {strategy!r}; known: {', '.join(strategies)}")
        parsed[strategy] = _mapping(overrides, f"{where}.{strategy}")
    return parsed


def _parse_dataset(name: str, entry: Any, strategies: dict[str, Any]) -> DatasetSpec:
    where = f"datasets.{name}"
    entry = _mapping(entry, where)
    _check_keys(entry, DATASET_KEYS, {"config", "settings"}, where)
    if not isinstance(entry["config"], str) or not entry["config"]:
        raise InputError(f"`{where}.config` must be a path to a fit config; got {entry['config']!r}")
    if not isinstance(entry["settings"], list) or not entry["settings"]:
        raise InputError(f"`{where}.settings` must be a non-empty list")
    settings = tuple(_parse_setting(f"{where}.settings[{i}]", s, strategies) for i, s in enumerate(entry["settings"]))
    labels = [s.label for s in settings]
    if len(set(labels)) != len(labels):
        raise InputError(f"`{where}.settings` repeats a noise/rate pair: {labels}")
    return DatasetSpec(
        name=name,
        config=entry["config"],
        settings=settings,
        overrides=_mapping(entry.get("overrides"), f"{where}.overrides"),
        strategy_overrides=_parse_strategy_overrides(
            entry.get("strategy_overrides"), strategies, f"{where}.strategy_overrides"
        ),
    )


def _parse_setting(where: str, entry: Any, strategies: dict[str, Any]) -> Setting:
    entry = _mapping(entry, where)
    _check_keys(entry, SETTING_KEYS, {"noise", "rate"}, where)
    return Setting(
        noise=_name(entry["noise"], f"`{where}.noise`"),
        rate=_number(entry["rate"], f"{where}.rate"),
        overrides=_mapping(entry.get("overrides"), f"{where}.overrides"),
        strategy_overrides=_parse_strategy_overrides(
            entry.get("strategy_overrides"), strategies, f"{where}.strategy_overrides"
        ),
    )


def _parse_paper(index: int, entry: Any) -> PaperNumber:
    where = f"paper[{index}]"
    entry = _mapping(entry, where)
    _check_keys(entry, PAPER_KEYS, PAPER_KEYS - {"source"}, where)
    accuracy = _number(entry["final_test_acc"], f"{where}.final_test_acc")
    if not 0.0 < accuracy <= 100.0:
        raise InputError(f"`{where}.final_test_acc` is a percentage in (0, 100]; got {accuracy!r}")
    return PaperNumber(
        dataset=str(entry["dataset"]),
        noise=str(entry["noise"]),
        rate=_number(entry["rate"], f"{where}.rate"),
        strategy=str(entry["strategy"]),
        final_test_acc=accuracy,
        source=str(entry.get("source", "")),
    )


def _check_paper(suite: Suite) -> None:
    """Every reference number must name a cell of the grid (a typo would silently drop it)."""
    for number in suite.paper:
        dataset = suite.datasets.get(number.dataset)
        settings = dataset.settings if dataset else ()
        matches = [s for s in settings if suite.paper_number(number.dataset, s, number.strategy) is number]
        if not matches or number.strategy not in suite.strategies:
            raise InputError(
                f"`paper` entry {number.dataset}/{number.noise}-{number.rate:g}/{number.strategy} "
                "names no dataset, setting and strategy of the suite"
            )


# ---- the grid and the configs ---------------------------------------------------------------------------
def _pick(names: Sequence[Any] | None, known: Sequence[Any], what: str) -> list[Any]:
    """``known`` filtered to ``names`` (in ``known``'s order); every name must be known."""
    if names is None:
        return list(known)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise InputError(f"unknown {what} {unknown[0]!r}; the suite has: {', '.join(map(str, known))}")
    return [k for k in known if k in names]


def grid(
    suite: Suite,
    *,
    datasets: Sequence[str] | None = None,
    settings: Sequence[str] | None = None,
    strategies: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
) -> list[Cell]:
    """The suite's cells, optionally filtered; seed-major, so a first full replicate finishes first.

    ``settings`` are labels such as ``symmetric-0.4``; a dataset without any of them contributes no cell.
    """
    chosen = _pick(datasets, list(suite.datasets), "dataset")
    all_labels = list(dict.fromkeys(s.label for d in suite.datasets.values() for s in d.settings))
    labels = set(_pick(settings, all_labels, "setting"))
    return [
        Cell(name, setting.label, strategy, seed)
        for seed in _pick(seeds, suite.seeds, "seed")
        for name in chosen
        for setting in suite.datasets[name].settings
        if setting.label in labels
        for strategy in _pick(strategies, list(suite.strategies), "strategy")
    ]


def deep_merge(base: Any, override: Any) -> Any:
    """``override`` merged into ``base`` (neither is modified).

    Mappings merge key by key, recursively; anything else in ``override`` replaces what ``base`` has. A
    mapping whose ``class_path`` names a different class than ``base``'s replaces it whole, so the old
    class's ``init_args`` never leak into the new one (``SymmetricNoise`` → ``PairFlipNoise``).
    """
    if not (isinstance(base, dict) and isinstance(override, dict)) or _changes_class(base, override):
        return copy.deepcopy(override)
    merged = copy.deepcopy(base)
    for key, value in override.items():
        merged[key] = deep_merge(merged[key], value) if key in merged else copy.deepcopy(value)
    return merged


def _changes_class(base: dict[str, Any], override: dict[str, Any]) -> bool:
    def short(value: Any) -> Any:
        return value.rsplit(".", 1)[-1] if isinstance(value, str) else value

    return "class_path" in override and short(base.get("class_path")) != short(override["class_path"])


def seed_overrides(seed: int) -> dict[str, Any]:
    """A seed sets both the training seed and the noise draw, so seeds are independent replicates."""
    return {"seed_everything": seed, "data": {"init_args": {"noise_seed": seed}}}


def run_overrides(*, limit_epochs: int | None = None, data_fake: bool = False) -> dict[str, Any]:
    """The command line's last word on every cell: ``--limit-epochs N`` and ``--data-fake``."""
    layer: dict[str, Any] = {}
    if limit_epochs is not None:
        layer["trainer"] = {"max_epochs": limit_epochs}
    if data_fake:
        layer["data"] = {"init_args": {"fake": True}}
    return layer


def base_config_path(suite: Suite, dataset: str) -> Path:
    """The dataset's base config: relative to the repo root, else to the suite file's folder."""
    given = Path(suite.datasets[dataset].config)
    candidates = [given] if given.is_absolute() else [repo_root() / given, suite.path.parent / given]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise InputError(f"`datasets.{dataset}.config`: base config {str(given)!r} not found")


def build_config(suite: Suite, cell: Cell, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The merged fit config of one cell (without the logger, which :func:`run_cell` adds)."""
    dataset = suite.datasets[cell.dataset]
    setting = dataset.setting(cell.setting)
    config = read_yaml(base_config_path(suite, cell.dataset), "base config")
    layers = (
        {"trainer": suite.trainer} if suite.trainer else {},
        dataset.overrides,
        setting.overrides,
        suite.strategies[cell.strategy],
        dataset.strategy_overrides.get(cell.strategy, {}),
        setting.strategy_overrides.get(cell.strategy, {}),
        seed_overrides(cell.seed),
        extra or {},
    )
    for layer in layers:
        config = deep_merge(config, layer)
    return config


def with_logger(config: dict[str, Any], cell_dir: Path) -> dict[str, Any]:
    """The config with a CSV logger writing to ``<cell_dir>/run/version_0``."""
    logger = {"class_path": "pytorch_lightning.loggers.CSVLogger",
              "init_args": {"save_dir": str(cell_dir), "name": RUN_SUBDIR.parent.name, "version": 0}}  # fmt: skip
    return deep_merge(config, {"trainer": {"logger": logger}})


# ---- state on disk --------------------------------------------------------------------------------------
def metrics_path(out: Path, cell: Cell) -> Path:
    """Where a finished cell's ``metrics.json`` is; its existence marks the cell done."""
    return out / cell.path / RUN_SUBDIR / "metrics.json"


def is_done(out: Path, cell: Cell) -> bool:
    """Whether the cell finished (it is skipped on resume)."""
    return metrics_path(out, cell).is_file()


def stored_config(out: Path, cell: Cell) -> dict[str, Any] | None:
    """The config a cell ran with, without the logger (which names the output folder)."""
    path = out / cell.path / "config.yaml"
    if not path.is_file():
        return None
    return without_logger(yaml.safe_load(path.read_text(encoding="utf-8")) or {})


def without_logger(config: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``config`` without ``trainer.logger``."""
    config = copy.deepcopy(config)
    (config.get("trainer") or {}).pop("logger", None)
    return config


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


def fit_command(config_path: Path) -> list[str]:
    """The fit command of one cell."""
    return [sys.executable, "-m", "robustlabels.fit", "--config", str(config_path),
            "--trainer.enable_progress_bar=false"]  # fmt: skip


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


def run_cell(cell: Cell, out: Path, config: dict[str, Any], threads: int) -> CellOutcome:
    """Run one cell from scratch in a subprocess; its output goes to ``<cell>/log.txt``.

    A leftover partial run (no ``metrics.json``) is deleted first; a failure leaves ``failed.json``.
    """
    cell_dir = out / cell.path
    shutil.rmtree(cell_dir / RUN_SUBDIR.parent, ignore_errors=True)
    (cell_dir / "failed.json").unlink(missing_ok=True)
    config_path = cell_dir / "config.yaml"
    atomic_write_text(config_path, yaml.safe_dump(with_logger(config, cell_dir), sort_keys=False))
    command, started = fit_command(config_path), time.perf_counter()
    with open(cell_dir / "log.txt", "w", encoding="utf-8") as log:
        log.write(f"$ cd {shlex.quote(str(repo_root()))} && OMP_NUM_THREADS={threads} {shlex.join(command)}\n")
        log.flush()
        process = subprocess.run(command, cwd=repo_root(), env=cell_env(threads), stdin=subprocess.DEVNULL,
                                 stdout=log, stderr=subprocess.STDOUT, check=False)  # fmt: skip
    seconds = time.perf_counter() - started
    if process.returncode == 0 and is_done(out, cell):
        return CellOutcome(cell, True, seconds)
    error = last_error(cell_dir / "log.txt") if process.returncode else "exited 0 but wrote no metrics.json"
    failure = {"returncode": process.returncode, "error": error, "log": "log.txt"}
    atomic_write_text(cell_dir / "failed.json", json.dumps(failure, indent=2) + "\n")
    return CellOutcome(cell, False, seconds, error)


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
) -> RunStats:
    """Run the cells that are not done yet, ``jobs`` at a time; finished cells are skipped.

    Args:
        cells: from :func:`grid`.
        out: the output folder (cells go to ``<out>/cells/...``).
        jobs: cells run in parallel, each with ``max(1, cores // jobs)`` OpenMP threads.
        fail_fast: after the first failure start no new cell (running ones finish).
        extra: :func:`run_overrides`, merged last into every cell's config.
        after_cell: called in this thread after each attempted cell (e.g. to refresh the report).
    """
    out = Path(out).resolve()
    stats = RunStats(skipped=[c for c in cells if is_done(out, c)])
    pending = deque(c for c in cells if c not in stats.skipped)
    configs = {cell: build_config(suite, cell, extra) for cell in pending}  # a bad base config fails before any run
    threads, running = threads_per_job(jobs), dict[Future[CellOutcome], Cell]()
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool, _progress(len(pending)) as bar:
        while pending or running:
            while pending and len(running) < jobs:  # cells are submitted only as slots free up
                cell = pending.popleft()
                running[pool.submit(run_cell, cell, out, configs[cell], threads)] = cell
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


# ---- command line ---------------------------------------------------------------------------------------
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
    parser.add_argument("--suite", required=True, help="a name under experiments/ (smoke, cpu, ...) or a path")
    parser.add_argument("--out", required=True, help="output folder; rerunning into it resumes")
    parser.add_argument("--jobs", type=int, default=1, help="cells run in parallel (default 1)")
    parser.add_argument("--only", type=_csv, metavar="STRATEGY[,..]", help="run only these strategies")
    parser.add_argument("--datasets", type=_csv, metavar="NAME[,..]", help="run only these datasets")
    parser.add_argument("--settings", type=_csv, metavar="NOISE-RATE[,..]", help="e.g. symmetric-0.4")
    parser.add_argument("--seeds", type=_seeds, metavar="K[,..]", help="run only these of the suite's seeds")
    parser.add_argument("--limit-epochs", type=int, metavar="N", help="set trainer.max_epochs (smoke tests)")
    parser.add_argument("--data-fake", action="store_true", help="set data.init_args.fake: true (smoke tests)")
    parser.add_argument("--fail-fast", action="store_true", help="start no new cell after a failure")
    parser.add_argument("--dry-run", action="store_true", help="list the cells and whether they are done")
    parser.add_argument("--report-only", action="store_true", help="only rewrite the report from finished cells")
    parser.add_argument("--rerun-changed", action="store_true",
                        help="rerun finished cells whose config has changed (default: refuse)")  # fmt: skip
    return parser


def _command_line(argv: Sequence[str]) -> str:
    return "python -m robustlabels.experiments " + shlex.join(argv)


def _dry_run(suite: Suite, cells: Sequence[Cell], out: Path, extra: dict[str, Any]) -> None:
    for cell in cells:
        build_config(suite, cell, extra)  # a missing base config is reported now, not mid-suite
        state = "done" if is_done(out, cell) else "failed" if (out / cell.path / "failed.json").is_file() else "todo"
        print(f"{state:<7}{cell.name}")
    todo = sum(not is_done(out, c) for c in cells)
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
        print(f"error: {err}", file=sys.stderr)
        return 2

    def report(curves: bool = True) -> None:
        write_report(suite, grid(suite), out, command=_command_line(argv), curves=curves)

    if ns.report_only:
        report()
        print(f"report: {out / 'report.md'}")
        return 0
    print(f"suite {suite.name!r}: {len(cells)} cells, {ns.jobs} at a time, "
          f"{threads_per_job(ns.jobs)} thread(s) each -> {out}", flush=True)  # fmt: skip
    try:
        stats = run_suite(suite, cells, out, jobs=ns.jobs, fail_fast=ns.fail_fast, extra=extra,
                          after_cell=lambda _: report(curves=False))  # fmt: skip
    except KeyboardInterrupt:
        report()
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    report()
    print(f"ran {len(stats.ran)}, skipped {len(stats.skipped)} (done before), failed {len(stats.failed)}, "
          f"not started {len(stats.not_started)}; report: {out / 'report.md'}")  # fmt: skip
    return 0 if stats.ok else 1
