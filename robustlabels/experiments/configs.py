"""A cell's fit config: the base config deep-merged with the seed, the suite's layers and the command line.

The order (later wins): base config, suite ``trainer``, the cell's seeds (``seed_everything``, ``noise_seed``
and, with ``seed_sets_split``, ``split_seed``), dataset, setting, strategy, dataset × strategy, setting ×
strategy overrides, then the command line. The seeds come before the suite's layers so that a setting can pin
its own noise draw. The CSV logger, which names
the cell's output folder, is added only when the cell runs, so a stored config compares equal to a rebuilt
one wherever the output folder lives.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from robustlabels.cli import packaged_config
from robustlabels.errors import InputError
from robustlabels.experiments.suite import Cell, Suite, read_yaml, repo_root

RUN_SUBDIR = Path("run") / "version_0"  # CSVLogger(save_dir=<cell>, name="run", version=0)


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


def seed_overrides(seed: int, noise_seed: int | None = None, *, seed_sets_split: bool = False) -> dict[str, Any]:
    """A seed sets the training seed and the noise draw, so seeds are independent replicates; with the suite's
    ``noise_seed`` every seed trains on the same noisy labels (a paper's one noise file). ``seed_sets_split``:
    the seed also sets ``split_seed`` (the batch order, the clean meta pool, a validation split the data lacks)."""
    init_args: dict[str, Any] = {"noise_seed": seed if noise_seed is None else noise_seed}
    if seed_sets_split:
        init_args["split_seed"] = seed
    return {"seed_everything": seed, "data": {"init_args": init_args}}


def run_overrides(*, limit_epochs: int | None = None, data_fake: bool = False) -> dict[str, Any]:
    """The command line's last word on every cell: ``--limit-epochs N`` and ``--data-fake``."""
    layer: dict[str, Any] = {}
    if limit_epochs is not None:
        layer["trainer"] = {"max_epochs": limit_epochs}
    if data_fake:
        layer["data"] = {"init_args": {"fake": True}}
    return layer


def base_config_path(suite: Suite, dataset: str) -> Path:
    """The dataset's base config: relative to the checkout (an installed copy: the working directory), else to
    the suite file's folder, else the bundled config of that name (``configs/fashion_mnist/ce.yaml`` →
    ``robustlabels/configs/fashion_mnist/ce.yaml``, package data)."""
    given = Path(suite.datasets[dataset].config)
    candidates = [given] if given.is_absolute() else [repo_root() / given, suite.path.parent / given]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    bundled = None if given.is_absolute() else packaged_config(given)
    if bundled is not None:
        return bundled
    raise InputError(f"`datasets.{dataset}.config`: base config {str(given)!r} not found")


def build_config(suite: Suite, cell: Cell, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The merged fit config of one cell, without the logger (:func:`~robustlabels.experiments.runner.run_cell`
    adds it when the cell runs)."""
    dataset = suite.datasets[cell.dataset]
    setting = dataset.setting(cell.setting)
    config = read_yaml(base_config_path(suite, cell.dataset), "base config")
    layers = (  # the seeds before the suite's layers, so that a setting may pin its own noise draw
        {"trainer": suite.trainer} if suite.trainer else {},
        seed_overrides(cell.seed, suite.noise_seed, seed_sets_split=suite.seed_sets_split),
        dataset.overrides,
        setting.overrides,
        suite.strategies[cell.strategy],
        dataset.strategy_overrides.get(cell.strategy, {}),
        setting.strategy_overrides.get(cell.strategy, {}),
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


def without_logger(config: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``config`` without ``trainer.logger``."""
    config = copy.deepcopy(config)
    (config.get("trainer") or {}).pop("logger", None)
    return config
