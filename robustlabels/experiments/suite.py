"""Suite files and their grid of cells: parsing, validation and filtering.

A **suite** (a YAML file; the shipped ones are ``robustlabels/experiments/suites/<name>.yaml``)::

    seeds: [0, 1]
    trainer: {max_epochs: 3}                  # optional, every cell
    datasets:
      digits:
        config: configs/quickstart.yaml       # base fit config (see configs.base_config_path)
        metric: accuracy                      # optional: accuracy (default) or f1 (of class 1, binary tasks)
        selection: final                      # optional: final (default, the last epoch) or best_val
        requires: [dataset:cifar100, ../shared/data/cifar_n/cifar100n_labels.npz]   # optional (below)
        overrides: {...}                      # optional, nested, deep-merged into the base config
        strategy_overrides: {elr: {...}}      # optional, per strategy, for this dataset
        settings:
          - {noise: symmetric, rate: 0.4, overrides: {...}, strategy_overrides: {elr: {...}}}
          - {noise: pairflip, rate: 0.45, strategies: [cross_entropy, co_teaching]}   # optional: only these
    strategies:
      cross_entropy: {overrides: {model: {strategy: {class_path: CrossEntropy}}}}
    paper:                                    # optional reference numbers, in %
      - {dataset: digits, noise: symmetric, rate: 0.4, strategy: cross_entropy, value: 60.0, source: "...",
         tolerance: 2.0}                      # optional: the gap, in points, still counted as a reproduction

Top-level keys starting with ``x-`` are ignored: they hold YAML anchors that settings reuse (``<<: *name``).
**Strategy keys are registry names**: a registered strategy (``cross_entropy``, ``trimmed_loss``, ...) or
regularizer (``elr``, ``neighbor_consistency``) for the method as its defaults run it, and
``<registry name>-<variant>`` for another use of it (``neighbor_consistency-dataset``). ``nested_dropout``, a
:class:`~robustlabels.module.RobustModule` option (``model.nested_dropout``) rather than a registered class,
counts as a registry name too (:data:`MODULE_OPTIONS`). A key whose part before ``-`` is none of these is an
error, so a report's columns always name what ran.
A dataset's **reported number** is its ``metric`` (accuracy, or the F1 of class 1 for binary tasks such as SMS spam)
on the test split, taken at the last epoch (``selection: final``) or at the epoch whose validation split scored best
by the same metric (``selection: best_val``, the STORM protocol); :attr:`DatasetSpec.result_key` names it in a run's
``metrics.json`` summary. A ``paper`` entry gives the published number as ``value``, in that metric and selection;
``final_test_acc`` (the older key) is the same for a dataset that keeps the defaults, and is refused otherwise.
A dataset's ``requires`` lists what must exist for its cells to run: ``dataset:<catalog name>`` (both splits found
where :mod:`robustlabels.data.catalog` looks), ``dataset:<folder>`` of a file-based data module (``clothing1m``,
``animal10n``, ``webvision``: :func:`missing_dataset`) or a file path (relative to the repository root). Where one is
missing the dataset is skipped with one line naming what to provide (:func:`missing_data`), and the report says so;
``--data-fake`` runs need no files, so they skip nothing.
``noise`` and ``rate`` name a setting (its folder ``<noise>-<rate>`` and its row in the report); the noise
itself comes from the setting's ``overrides``. A **cell** is dataset × setting × strategy × seed; how its
config is merged from these layers is in :mod:`robustlabels.experiments.configs`, and how it runs in
:mod:`robustlabels.experiments.runner`.
"""

from __future__ import annotations

import functools
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from robustlabels.cli import package_path
from robustlabels.errors import InputError

NAME = re.compile(r"^[A-Za-z0-9_.+-]+$")
SUITE_KEYS = {"seeds", "datasets", "strategies", "paper", "trainer", "noise_seed", "seed_sets_split"}
DATASET_KEYS = {"config", "overrides", "settings", "strategy_overrides", "metric", "selection", "requires"}
SETTING_KEYS = {"noise", "rate", "overrides", "strategy_overrides", "strategies"}
PAPER_KEYS = {"dataset", "noise", "rate", "strategy", "value", "final_test_acc", "source", "tolerance"}
PAPER_VALUE_KEYS = ("value", "final_test_acc")  # exactly one; final_test_acc: the older name, default datasets only
METRICS = ("accuracy", "f1")  # f1: of class 1, binary tasks
SELECTIONS = ("final", "best_val")
# (metric, selection) -> the summary key of the reported number (robustlabels.metrics.summarize_history)
RESULT_KEYS = {
    ("accuracy", "final"): "final_test_acc",
    ("accuracy", "best_val"): "test_acc_at_best_val",
    ("f1", "final"): "final_test_f1",
    ("f1", "best_val"): "test_f1_at_best_val_f1",
}
BEST_KEYS = {"accuracy": "best_test_acc", "f1": "best_test_f1"}  # the oracle maximum over epochs
MODULE_OPTIONS = ("nested_dropout",)  # RobustModule options that are methods of their own, usable as suite keys


def repo_root() -> Path:
    """Where cells run and relative paths start: the checkout holding the package (its ``configs`` link and
    ``data/`` folder), or the working directory for an installed copy."""
    root = package_path().parent
    return root if (root / "pyproject.toml").is_file() and (root / "configs").is_dir() else Path.cwd()


def suites_dir() -> Path:
    """The folder of the shipped suites, ``robustlabels/experiments/suites`` (package data)."""
    return package_path("experiments", "suites")


@functools.cache
def method_names() -> tuple[str, ...]:
    """What a strategy key may start with: registered strategies and regularizers, and :data:`MODULE_OPTIONS`."""
    from robustlabels.regularizers import REGULARIZERS
    from robustlabels.strategies import STRATEGIES

    return tuple(sorted({*STRATEGIES.names(), *REGULARIZERS.names(), *MODULE_OPTIONS}))


# ---- the suite ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Setting:
    """One noise setting of a dataset: a label (``noise``, ``rate``), the overrides that realise it and,
    optionally, the only strategies that run in it (e.g. the ones a paper reports for that setting)."""

    noise: str
    rate: float
    overrides: dict[str, Any] = field(default_factory=dict)
    strategy_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    strategies: tuple[str, ...] | None = None  # None: every strategy of the suite

    def runs(self, strategy: str) -> bool:
        """Whether ``strategy`` has cells in this setting."""
        return self.strategies is None or strategy in self.strategies

    @property
    def label(self) -> str:
        """``<noise>-<rate>``, e.g. ``symmetric-0.4``: the setting's folder name."""
        return f"{self.noise}-{self.rate:g}"


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset of a suite: its base fit config, overrides, noise settings, and the number it reports."""

    name: str
    config: str
    settings: tuple[Setting, ...]
    overrides: dict[str, Any] = field(default_factory=dict)
    strategy_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    metric: str = "accuracy"  # one of METRICS
    selection: str = "final"  # one of SELECTIONS
    requires: tuple[str, ...] = ()  # dataset:<catalog name> or a path; missing -> the dataset is skipped

    def setting(self, label: str) -> Setting:
        """The setting whose :attr:`Setting.label` is ``label``."""
        return next(s for s in self.settings if s.label == label)

    @property
    def result_key(self) -> str:
        """The summary key of the reported number, e.g. ``final_test_acc`` or ``test_f1_at_best_val_f1``."""
        return RESULT_KEYS[self.metric, self.selection]

    @property
    def best_key(self) -> str:
        """The summary key of the test metric's maximum over epochs (an oracle, shown to measure memorization)."""
        return BEST_KEYS[self.metric]

    @property
    def default_protocol(self) -> bool:
        """Whether the dataset reports the final test accuracy (neither ``metric`` nor ``selection`` changed)."""
        return (self.metric, self.selection) == ("accuracy", "final")


@dataclass(frozen=True)
class PaperNumber:
    """A published number (in %) to print beside ours, in its dataset's metric and selection."""

    dataset: str
    noise: str
    rate: float
    strategy: str
    value: float
    source: str = ""
    given_as: str = "value"  # the suite file's key: value, or the older final_test_acc
    tolerance: float | None = None  # points of |ours - value| still counted as a reproduction

    @property
    def final_test_acc(self) -> float:
        """The older name of :attr:`value` (the published final test accuracy, for datasets on the defaults)."""
        return self.value


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
    noise_seed: int | None = None  # one noise draw for every seed (a paper's fixed noise file); None: the seed
    seed_sets_split: bool = False  # the seed also sets data.init_args.split_seed (e.g. the batch order)

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
    """A suite file from a YAML path, a folder holding ``suite.yaml``, or the name of a shipped suite
    (``smoke`` → ``robustlabels/experiments/suites/smoke.yaml``)."""
    given = Path(name_or_path)
    for candidate in (given, given / "suite.yaml", suites_dir() / f"{name_or_path}.yaml"):
        if candidate.is_file():
            return candidate
    known = sorted(p.stem for p in suites_dir().glob("*.yaml"))
    raise InputError(f"suite {str(name_or_path)!r} not found; known suites: {', '.join(known) or 'none'}")


def load_suite(name_or_path: str | Path) -> Suite:
    """Read and validate a suite file (see the module docstring for the schema).

    Raises:
        InputError: one line naming the bad key or value.
    """
    path = resolve_suite(name_or_path)
    raw = {k: v for k, v in read_yaml(path, "suite").items() if not str(k).startswith("x-")}  # YAML anchors
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
        noise_seed=_noise_seed(raw.get("noise_seed")),
        seed_sets_split=_flag(raw.get("seed_sets_split", False), "seed_sets_split"),
    )
    _check_paper(suite)
    return suite


def _flag(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise InputError(f"`{key}` must be true or false; got {value!r}")
    return value


def _noise_seed(value: Any) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise InputError(f"`noise_seed` must be a non-negative integer; got {value!r}")
    return value


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
        strategies[_strategy_key(name)] = _mapping(entry.get("overrides"), f"strategies.{name}.overrides")
    return strategies


def _strategy_key(value: Any) -> str:
    """A valid strategy key: ``<registry name>`` or ``<registry name>-<variant>`` (see the module docstring)."""
    name = _name(value, "strategy")
    method, dash, variant = name.partition("-")
    if method not in method_names() or (dash and not variant):
        raise InputError(f"strategy key {name!r} must be a registry name or <registry name>-<variant>; "
                         f"registry names: {', '.join(method_names())}")  # fmt: skip
    return name


def _parse_strategy_overrides(value: Any, strategies: dict[str, Any], where: str) -> dict[str, dict[str, Any]]:
    parsed = {}
    for strategy, overrides in _mapping(value, where).items():
        if strategy not in strategies:
            raise InputError(f"`{where}` names an unknown strategy {strategy!r}; known: {', '.join(strategies)}")
        parsed[strategy] = _mapping(overrides, f"{where}.{strategy}")
    return parsed


def _layers(entry: dict[str, Any], where: str, strategies: dict[str, Any]) -> dict[str, Any]:
    """The ``overrides`` and ``strategy_overrides`` of a dataset or setting entry, as keyword arguments."""
    return {
        "overrides": _mapping(entry.get("overrides"), f"{where}.overrides"),
        "strategy_overrides": _parse_strategy_overrides(
            entry.get("strategy_overrides"), strategies, f"{where}.strategy_overrides"
        ),
    }


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
        metric=_choice(entry.get("metric", "accuracy"), METRICS, f"{where}.metric"),
        selection=_choice(entry.get("selection", "final"), SELECTIONS, f"{where}.selection"),
        requires=_requires(entry.get("requires", []), f"{where}.requires"),
        **_layers(entry, where, strategies),
    )


def _requires(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise InputError(f"`{where}` must be a list of `dataset:<name>` entries and file paths; got {value!r}")
    return tuple(value)


def missing_data(spec: DatasetSpec) -> str | None:
    """Why ``spec``'s cells cannot run on this machine (one line naming each missing requirement), or ``None``."""
    missing = []
    for need in spec.requires:
        kind, _, name = need.partition(":")
        if kind == "dataset" and name:
            missing += [why] if (why := missing_dataset(name)) else []
        elif not (repo_root() / need).exists():
            missing.append(f"file {need!r} not found (relative to {repo_root()})")
    return f"dataset {spec.name!r} skipped: {'; '.join(missing)}" if missing else None


def missing_dataset(name: str) -> str | None:
    """Why the dataset ``name`` is not on this machine (one line saying what to provide), or ``None``.

    ``name`` is a catalog name (both splits found where :mod:`robustlabels.data.catalog` looks) or the folder name of
    a file-based data module (``clothing1m``, ``animal10n``, ``webvision``, ...: its folder found where the module
    looks, ``$ROBUSTLABELS_DATA/<name>`` or ``data/<name>`` under the checkout the cells run in).
    """
    from robustlabels.data.catalog import DATASETS, locate
    from robustlabels.data.lazy import DATA_ENV_VAR

    if name in DATASETS:
        found = (locate(name, split) for split in ("train", "test"))
        return next((str(err) for err in found if isinstance(err, InputError)), None)
    modules = file_based_data_modules()
    if name not in modules:
        raise InputError(f"`requires` names an unknown dataset {name!r}; known: {', '.join((*DATASETS, *modules))}")
    env = os.environ.get(DATA_ENV_VAR)
    places = ([Path(env).expanduser() / name] if env else []) + [repo_root() / "data" / name]
    if any(place.is_dir() for place in places):
        return None
    module = modules[name]  # the module's own words (LazyImageDataModule.resolve_root), the cells' working directory
    return (f"{module.title}: no copy found (searched {', '.join(map(str, places))}); {module.source}, "
            f"and put it in data/{name}")  # fmt: skip


def file_based_data_modules() -> dict[str, Any]:
    """``data_name`` -> the first file-based data module (:class:`~robustlabels.data.lazy.LazyImageDataModule`)
    reading that folder, e.g. ``clothing1m`` -> ``Clothing1MDataModule``."""
    import robustlabels.data as data
    from robustlabels.data.lazy import LazyImageDataModule

    modules: dict[str, Any] = {}
    for module in (getattr(data, name) for name in data.__all__):
        if isinstance(module, type) and issubclass(module, LazyImageDataModule):
            modules.setdefault(module.data_name, module)
    return modules


def _choice(value: Any, choices: Sequence[str], where: str) -> str:
    if value not in choices:
        raise InputError(f"`{where}` must be one of {', '.join(choices)}; got {value!r}")
    return str(value)


def _parse_setting(where: str, entry: Any, strategies: dict[str, Any]) -> Setting:
    entry = _mapping(entry, where)
    _check_keys(entry, SETTING_KEYS, {"noise", "rate"}, where)
    only = entry.get("strategies")
    if only is not None:
        if not isinstance(only, list) or not only:
            raise InputError(f"`{where}.strategies` must be a non-empty list of strategy names; got {only!r}")
        unknown = [name for name in only if name not in strategies]
        if unknown:
            raise InputError(f"`{where}.strategies` names an unknown strategy {unknown[0]!r}; known: "
                             f"{', '.join(strategies)}")  # fmt: skip
    return Setting(
        noise=_name(entry["noise"], f"`{where}.noise`"),
        rate=_number(entry["rate"], f"{where}.rate"),
        strategies=None if only is None else tuple(only),
        **_layers(entry, where, strategies),
    )


def _parse_paper(index: int, entry: Any) -> PaperNumber:
    where = f"paper[{index}]"
    entry = _mapping(entry, where)
    _check_keys(entry, PAPER_KEYS, PAPER_KEYS - {"source", "tolerance", *PAPER_VALUE_KEYS}, where)
    given = [key for key in PAPER_VALUE_KEYS if key in entry]
    if len(given) != 1:
        raise InputError(f"`{where}` needs exactly one of {' or '.join(PAPER_VALUE_KEYS)}; got "
                         f"{' and '.join(given) or 'neither'}")  # fmt: skip
    value = _number(entry[given[0]], f"{where}.{given[0]}")
    if not 0.0 < value <= 100.0:
        raise InputError(f"`{where}.{given[0]}` is a percentage in (0, 100]; got {value!r}")
    return PaperNumber(
        dataset=str(entry["dataset"]),
        noise=str(entry["noise"]),
        rate=_number(entry["rate"], f"{where}.rate"),
        strategy=str(entry["strategy"]),
        value=value,
        source=str(entry.get("source", "")),
        given_as=given[0],
        tolerance=_tolerance(entry.get("tolerance"), f"{where}.tolerance"),
    )


def _tolerance(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if _number(value, where) < 0:
        raise InputError(f"`{where}` is a gap in points, >= 0; got {value!r}")
    return float(value)


def _check_paper(suite: Suite) -> None:
    """Every reference number must name a cell of the grid (a typo would silently drop it)."""
    for number in suite.paper:
        dataset = suite.datasets.get(number.dataset)
        settings = dataset.settings if dataset else ()
        matches = [s for s in settings
                   if suite.paper_number(number.dataset, s, number.strategy) is number and s.runs(number.strategy)]
        if not matches or number.strategy not in suite.strategies:
            raise InputError(
                f"`paper` entry {number.dataset}/{number.noise}-{number.rate:g}/{number.strategy} "
                "names no dataset, setting and strategy of the suite"
            )
        if dataset is not None and number.given_as == "final_test_acc" and not dataset.default_protocol:
            raise InputError(f"`paper` entry {number.dataset}/{number.noise}-{number.rate:g}/{number.strategy} gives "
                             f"final_test_acc, but {number.dataset} reports {dataset.metric} at selection "
                             f"{dataset.selection}: give it as value")  # fmt: skip


# ---- the grid -------------------------------------------------------------------------------------------
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
        if setting.runs(strategy)
    ]
