"""``python -m robustlabels.experiments``: suite parsing, the merge order, the report, resume, failures."""

from __future__ import annotations

import csv
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from robustlabels.cli import package_path
from robustlabels.errors import InputError
from robustlabels.experiments import cli, configs, report, runner
from robustlabels.experiments.configs import base_config_path, build_config, deep_merge, run_overrides
from robustlabels.experiments.suite import Cell, grid, load_suite, method_names

BASE = yaml.safe_load("""
seed_everything: 123
trainer: {max_epochs: 60, accelerator: cpu}
model:
  backbone: mlp
  strategy: {class_path: CrossEntropy}
  tag: {a: base, b: base, c: base, d: base, e: base, f: base}
data:
  class_path: DigitsDataModule
  init_args:
    noise_seed: 99
    noise: {class_path: SymmetricNoise, init_args: {rate: 0.4, exact: true}}
""")

# Each layer sets the tags from one letter on, so the winner of every tag shows the precedence.
SUITE = yaml.safe_load("""
seeds: [0, 1]
trainer: {max_epochs: 5}
datasets:
  digits:
    config: base.yaml  # resolved next to the suite file
    overrides: {model: {tag: {a: dataset, b: dataset, c: dataset, d: dataset, e: dataset}}}
    strategy_overrides: {oracle: {model: {tag: {d: dataset-oracle, e: dataset-oracle}}}}
    settings:
      - {noise: symmetric, rate: 0.4}
      - noise: pairflip
        rate: 0.3
        overrides:
          model: {tag: {b: setting, c: setting, d: setting, e: setting}}
          data: {init_args: {noise: {class_path: PairFlipNoise, init_args: {rate: 0.3}}}}
        strategy_overrides: {oracle: {model: {tag: {e: setting-oracle}}}}
strategies:
  cross_entropy: {overrides: {model: {strategy: {class_path: CrossEntropy}}}}
  oracle: {overrides: {model: {strategy: {class_path: Oracle}, tag: {c: strategy, d: strategy}}}}
paper:
  - {dataset: digits, noise: symmetric, rate: 0.4, strategy: oracle, final_test_acc: 91.5, source: made up}
""")
BAD_PAPER = [{"dataset": "digits", "noise": "symmetric", "rate": 0.5, "strategy": "cross_entropy",
              "final_test_acc": 50}]  # fmt: skip


def one_dataset(**entry: Any) -> dict[str, Any]:
    """A ``datasets`` mapping with one dataset on ``base.yaml``."""
    return {"datasets": {"digits": {"config": "base.yaml", **entry}}}


def write_suite(tmp_path: Path, suite: dict[str, Any] = SUITE) -> Path:
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(BASE))
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(suite))
    return path


# ---- merging and the grid -----------------------------------------------------------------------------
def test_deep_merge_merges_mappings_replaces_lists_and_changed_classes() -> None:
    base = {"a": {"x": 1, "y": [1, 2]}, "noise": {"class_path": "SymmetricNoise", "init_args": {"rate": 0.4}}}
    override = {"a": {"y": [3], "z": 2}, "noise": {"class_path": "PairFlipNoise", "init_args": {"exact": True}}}
    merged = deep_merge(base, override)
    assert merged == {"a": {"x": 1, "y": [3], "z": 2}, "noise": {"class_path": "PairFlipNoise",
                                                                 "init_args": {"exact": True}}}  # fmt: skip
    same_class = deep_merge(base, {"noise": {"class_path": "robustlabels.noise.SymmetricNoise", "init_args": {"x": 1}}})
    assert same_class["noise"]["init_args"] == {"rate": 0.4, "x": 1}  # same class (bare or dotted): merged
    assert base["a"] == {"x": 1, "y": [1, 2]}  # inputs untouched


def test_every_layer_overrides_the_one_before(tmp_path: Path) -> None:
    suite = load_suite(write_suite(tmp_path))
    config = build_config(suite, Cell("digits", "pairflip-0.3", "oracle", 1), run_overrides(data_fake=True))
    assert config["model"]["tag"] == {"a": "dataset", "b": "setting", "c": "strategy", "d": "dataset-oracle",
                                      "e": "setting-oracle", "f": "base"}  # fmt: skip
    assert config["trainer"] == {"max_epochs": 5, "accelerator": "cpu"}  # the suite's trainer beats the base
    assert config["model"]["strategy"] == {"class_path": "Oracle"}
    assert config["data"]["init_args"]["noise"] == {"class_path": "PairFlipNoise", "init_args": {"rate": 0.3}}
    assert (config["seed_everything"], config["data"]["init_args"]["noise_seed"]) == (1, 1)
    assert config["data"]["init_args"]["fake"] is True
    limited = build_config(suite, Cell("digits", "symmetric-0.4", "cross_entropy", 0), run_overrides(limit_epochs=1))
    assert limited["trainer"]["max_epochs"] == 1 and limited["model"]["tag"]["c"] == "dataset"
    assert limited["data"]["init_args"]["noise"]["init_args"] == {"rate": 0.4, "exact": True}
    assert yaml.safe_load((tmp_path / "base.yaml").read_text()) == BASE


def test_suite_can_fix_the_noise_and_vary_the_split_with_the_seed(tmp_path: Path) -> None:
    path = write_suite(tmp_path)
    path.write_text(path.read_text() + "noise_seed: 42\nseed_sets_split: true\n")
    config = build_config(load_suite(path), Cell("digits", "symmetric-0.4", "cross_entropy", 3))
    assert config["data"]["init_args"]["noise_seed"] == 42 and config["data"]["init_args"]["split_seed"] == 3
    pinned = yaml.safe_load(path.read_text())  # a setting that pins its own noise draw keeps it
    pinned["datasets"]["digits"]["settings"][1]["overrides"]["data"]["init_args"]["noise_seed"] = 7
    config = build_config(load_suite(write_suite(tmp_path, pinned)), Cell("digits", "pairflip-0.3", "cross_entropy", 3))
    assert config["data"]["init_args"]["noise_seed"] == 7 and config["seed_everything"] == 3
    assert "Seed k also sets `data.init_args.split_seed: k`" in "\n".join(report.notes_section(load_suite(path)))
    path.write_text(path.read_text().replace("seed_sets_split: true", "seed_sets_split: 'yes'"))
    with pytest.raises(InputError, match="`seed_sets_split` must be true or false; got 'yes'"):
        load_suite(path)


def test_grid_is_seed_major_and_filters(tmp_path: Path) -> None:
    suite = load_suite(write_suite(tmp_path))
    cells = grid(suite)
    assert len(cells) == 1 * 2 * 2 * 2 and [c.seed for c in cells] == [0] * 4 + [1] * 4
    assert cells[0].path == Path("cells/digits/symmetric-0.4/cross_entropy/seed0")
    some = grid(suite, settings=["pairflip-0.3"], strategies=["oracle"], seeds=[1])
    assert some == [Cell("digits", "pairflip-0.3", "oracle", 1)]
    with pytest.raises(InputError, match="unknown strategy 'elr'"):
        grid(suite, strategies=["elr"])


def test_a_setting_can_limit_its_strategies_and_x_keys_hold_anchors(tmp_path: Path) -> None:
    settings = [{"noise": "symmetric", "rate": 0.4}, {"noise": "pairflip", "rate": 0.3, "strategies": ["oracle"]}]
    paper = [{**BAD_PAPER[0], "noise": "pairflip", "rate": 0.3, "strategy": "oracle"}]
    suite = load_suite(write_suite(tmp_path, {**SUITE, **one_dataset(settings=settings), "paper": paper,
                                              "x-anchor": {"anything": 1}}))  # fmt: skip
    assert [(c.setting, c.strategy) for c in grid(suite, seeds=[0])] == [
        ("symmetric-0.4", "cross_entropy"), ("symmetric-0.4", "oracle"), ("pairflip-0.3", "oracle")]  # fmt: skip
    assert grid(suite, settings=["pairflip-0.3"], strategies=["cross_entropy"]) == []
    with pytest.raises(InputError, match="names no dataset, setting and strategy"):  # cross_entropy does not run there
        load_suite(write_suite(tmp_path, {**SUITE, **one_dataset(settings=settings), "paper": [
            {**paper[0], "strategy": "cross_entropy"}]}))  # fmt: skip


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"colour": "red"}, "unknown key 'colour'"),
        (one_dataset(settings=[{"noise": "symmetric", "rate": 0.4, "strategies": ["elr"]}]), "unknown strategy 'elr'"),
        (one_dataset(settings=[{"noise": "symmetric", "rate": 0.4, "strategies": []}]), "non-empty list"),
        ({"seeds": [0, 0]}, "distinct integers"),
        ({"paper": BAD_PAPER}, "names no dataset, setting and strategy"),
        (one_dataset(settings=[{"noise": "symmetric", "rate": 0.4}], strategy_overrides={"elr": {}}), "'elr'"),
        (one_dataset(settings=[{"noise": "a b", "rate": 0.4}]), "name 'a b'"),
        (one_dataset(settings=[]), "non-empty list"),
        ({"strategies": {"ce": {}}}, "strategy key 'ce' must be a registry name or <registry name>-<variant>"),
        ({"strategies": {"neighbor_consistency-": {}}}, "strategy key 'neighbor_consistency-' must be"),
        ({"strategies": {"ncr-dataset": {}}}, "registry names: adaptive_k, bradley_terry, co_teaching"),
    ],
)
def test_bad_suites_give_one_line_errors(tmp_path: Path, change: dict[str, Any], message: str) -> None:
    with pytest.raises(InputError, match=message):
        load_suite(write_suite(tmp_path, {**SUITE, **change}))


@pytest.mark.parametrize("name", ["smoke", "cpu", "cifar10-gpu"])
def test_shipped_suites_load_and_build_every_cell(name: str) -> None:
    suite = load_suite(name)
    configs = {cell: build_config(suite, cell) for cell in grid(suite)}
    assert configs and all(c["seed_everything"] == cell.seed for cell, c in configs.items())


def test_strategy_keys_are_registry_names_or_their_variants(tmp_path: Path) -> None:
    keys = {"cross_entropy": {}, "neighbor_consistency-dataset": {}, "nested_dropout": {}, "oracle": {}}
    assert list(load_suite(write_suite(tmp_path, {**SUITE, "strategies": keys})).strategies) == list(keys)
    assert {"cross_entropy", "trimmed_loss", "elr", "neighbor_consistency", "nested_dropout"} <= set(method_names())
    for name in ("smoke", "cpu", "cifar10-gpu"):
        assert all(key.partition("-")[0] in method_names() for key in load_suite(name).strategies)


def test_shipped_suites_and_their_configs_are_package_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # outside the checkout, and without one: the package's own files only
    monkeypatch.setattr(configs, "repo_root", lambda: tmp_path)
    for name in ("smoke", "cpu", "cifar10-gpu"):
        suite = load_suite(name)
        assert suite.name == name and suite.path == package_path("experiments", "suites", f"{name}.yaml")
        for dataset, spec in suite.datasets.items():
            assert base_config_path(suite, dataset) == package_path(spec.config)
        assert all(build_config(suite, cell) for cell in grid(suite, seeds=suite.seeds[:1]))
    known = ("animal10n-gpu, cifar-n-cpu, cifar10-gpu, cifar100-gpu, cifar10n-gpu, clothing1m-gpu, cpu, pairs-cpu, "
             "smoke, storm-spam, webvision-mini-gpu")
    with pytest.raises(InputError, match=f"known suites: {known}"):
        load_suite("nope")


def test_cifar10_suite_uses_elr_presets_per_setting() -> None:
    suite = load_suite("cifar10-gpu")
    sym, asym = (build_config(suite, Cell("cifar10", s, "elr", 0)) for s in ("symmetric-0.8", "asymmetric-0.4"))
    assert sym["model"]["regularizers"] == [{"class_path": "ELR", "init_args": {"momentum": 0.7, "weight": 3.0}}]
    assert asym["model"]["regularizers"] == [{"class_path": "ELR", "init_args": {"momentum": 0.9, "weight": 1.0}}]
    assert sym["data"]["init_args"]["noise"]["init_args"] == {"rate": 0.8, "include_true_class": True}
    assert asym["model"]["lr_scheduler"]["init_args"] == {"milestones": [40, 80], "gamma": 0.01}
    assert [n.final_test_acc for n in suite.paper if n.strategy == "elr"] == [91.16, 89.15, 86.12, 73.86, 90.12]


def test_cifar10_suite_runs_ncr_beside_elr_with_the_official_settings_per_noise_level() -> None:
    from robustlabels.regularizers import NeighborConsistency

    suite = load_suite("cifar10-gpu")
    columns = ["cross_entropy", "elr", "neighbor_consistency", "neighbor_consistency-dataset"]
    assert list(suite.strategies)[:4] == columns  # the report's column order
    k_and_start = {"symmetric-0.2": (10, 12), "symmetric-0.4": (100, 12), "symmetric-0.6": (100, 12),
                   "symmetric-0.8": (5, 12), "asymmetric-0.4": (10, 9)}  # fmt: skip
    for setting, (k, start) in k_and_start.items():
        for strategy, pool in (("neighbor_consistency", {}), ("neighbor_consistency-dataset", {"pool": "dataset"})):
            config = build_config(suite, Cell("cifar10", setting, strategy, 0))
            init_args = {"weight": 0.3, "temperature": 2.0, "k": k, "start_epoch": start, **pool}
            assert config["model"]["regularizers"] == [{"class_path": "NeighborConsistency", "init_args": init_args}]
            assert config["model"]["strategy"] == {"class_path": "CrossEntropy"}
            assert NeighborConsistency(**init_args).pool == pool.get("pool", "batch")
    asym = build_config(suite, Cell("cifar10", "asymmetric-0.4", "neighbor_consistency", 0))
    assert asym["trainer"]["max_epochs"] == 120


def test_cifar10_suite_runs_two_network_strategies_in_their_papers_settings_and_recipes() -> None:
    suite = load_suite("cifar10-gpu")
    by_strategy: dict[str, set[str]] = {}
    for cell in grid(suite):
        by_strategy.setdefault(cell.strategy, set()).add(cell.setting)
    co_teaching_settings = {"symmetric_excl-0.2", "symmetric_excl-0.5", "pairflip-0.45"}
    for name in ("co_teaching", "nested_dropout", "nested_co_teaching"):
        assert by_strategy[name] == co_teaching_settings
    assert by_strategy["elr_plus"] == by_strategy["elr"] and {"symmetric-0.5", "symmetric-0.9"} <= by_strategy["elr"]
    assert co_teaching_settings < by_strategy["cross_entropy"]
    for setting in co_teaching_settings:
        for strategy in ("cross_entropy", "nested_co_teaching"):
            config = build_config(suite, Cell("cifar10", setting, strategy, 0))
            assert config["model"]["backbone"] == "cnn9" and config["trainer"]["max_epochs"] == 200
            assert config["model"]["optimizer"] == {"class_path": "torch.optim.Adam", "init_args": {"lr": 0.001}}
            assert config["model"]["lr_scheduler"]["init_args"]["decay_beta1"] == 0.1
        rate = suite.datasets["cifar10"].setting(setting).rate
        coteach = build_config(suite, Cell("cifar10", setting, "co_teaching", 0))["model"]["strategy"]["init_args"]
        assert coteach == {"forget_rate": rate, "num_gradual": 10}
        ce = build_config(suite, Cell("cifar10", setting, "cross_entropy", 0))
        noise = ce["data"]["init_args"]["noise"]["init_args"]
        assert noise.get("include_true_class", False) is False  # as Co-teaching's noise: 50% means 50% wrong
    asym = build_config(suite, Cell("cifar10", "asymmetric-0.4", "elr_plus", 0))
    assert asym["model"]["strategy"] == {"class_path": "ELRPlus", "init_args": {"preset": "cifar10_asym"}}
    assert asym["trainer"]["max_epochs"] == 200 and asym["model"]["lr_scheduler"]["init_args"]["milestones"] == [150]
    numbers = {(n.strategy, f"{n.noise}-{n.rate:g}"): n.final_test_acc for n in suite.paper}
    assert numbers[("co_teaching", "pairflip-0.45")] == 72.62 and numbers[("elr_plus", "symmetric-0.9")] == 78.7


def test_threads_are_shared_between_parallel_cells() -> None:
    assert [runner.threads_per_job(jobs, cores=2) for jobs in (1, 2, 3)] == [2, 1, 1]
    assert runner.cell_env(3)["OMP_NUM_THREADS"] == runner.cell_env(3)["MKL_NUM_THREADS"] == "3"


# ---- the report ---------------------------------------------------------------------------------------
FINAL = {("symmetric-0.4", "cross_entropy", 0): 0.50, ("symmetric-0.4", "cross_entropy", 1): 0.60,
         ("symmetric-0.4", "oracle", 0): 0.90, ("symmetric-0.4", "oracle", 1): 0.94,
         ("pairflip-0.3", "cross_entropy", 0): 0.70}  # fmt: skip


def fake_cell(out: Path, cell: Cell, final: float) -> None:
    """A finished cell as the fit leaves it: metrics.json and noise.json under run/version_0."""
    run = runner.metrics_path(out, cell).parent
    run.mkdir(parents=True)
    history = [{"epoch": float(e), "test/acc": final + 0.1 * (e == 0), "val/acc": 0.5} for e in range(3)]
    summary = {"best_test_acc": final + 0.1, "final_test_acc": final, "train_seconds": 2.5, "epochs": 3}
    (run / "metrics.json").write_text(json.dumps({"summary": summary, "history": history}))
    (run / "noise.json").write_text(json.dumps({"realized_rate_train": 0.4 if "symmetric" in cell.setting else 0.3}))


def test_report_from_a_fake_cell_tree(tmp_path: Path) -> None:
    suite = load_suite(write_suite(tmp_path))
    out = tmp_path / "out"
    for (setting, strategy, seed), final in FINAL.items():
        fake_cell(out, Cell("digits", setting, strategy, seed), final)
    failed = out / Cell("digits", "pairflip-0.3", "oracle", 0).path
    failed.mkdir(parents=True)
    (failed / "failed.json").write_text(json.dumps({"returncode": 1, "error": "RuntimeError: boom"}))
    collected = report.write_report(suite, grid(suite), out, command="python -m robustlabels.experiments ...")
    assert (len(collected.results), len(collected.failed), len(collected.missing)) == (5, 1, 2)

    with open(out / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == ("dataset", "noise", "rate", "realized_rate", "strategy", "seed", "best_test_acc",
                              "final_test_acc", "train_seconds")  # fmt: skip
    assert len(rows) == 5 and {r["strategy"] for r in rows} == {"cross_entropy", "oracle"}
    assert float(rows[0]["final_test_acc"]) == pytest.approx(0.5) and rows[0]["rate"] == "0.4"

    text = (out / "report.md").read_text()
    ce_std = statistics.stdev([50.0, 60.0])  # 7.07: sample standard deviation
    assert f"| symmetric 0.4 | 40.0 | 55.0 ± {ce_std:.1f} | 92.0 ± 2.8 (paper 91.5) |" in text
    assert "| pairflip 0.3 | 30.0 | 70.0 (n=1) | — |" in text
    assert "| symmetric 0.4 | 40.0 | 65.0 ± 7.1 | 102.0 ± 2.8 |" in text  # best table: no paper number
    assert "`digits/pairflip-0.3/oracle/seed0`: RuntimeError: boom" in text
    assert "2 cell(s)" in text and "python -m robustlabels.experiments ..." in text
    png = out / "curves.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_mean_curve_averages_over_seeds_per_epoch() -> None:
    epochs, mean = report.mean_curve([[{"epoch": 0.0, "test/acc": 0.2}, {"epoch": 1.0, "test/acc": 0.4}],
                                      [{"epoch": 0.0, "test/acc": 0.4}]])  # fmt: skip
    assert epochs == [1, 2] and mean == pytest.approx([0.3, 0.4])


# ---- running ------------------------------------------------------------------------------------------
def test_a_failed_cell_is_recorded_and_fail_fast_stops(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = "import sys; print('error: model.strategy: unknown class'); sys.exit(2)"
    monkeypatch.setattr(runner, "fit_command", lambda path, config: [sys.executable, "-c", script])
    suite = load_suite(write_suite(tmp_path))
    cells = grid(suite, seeds=[0], settings=["symmetric-0.4"])
    stats = runner.run_suite(suite, cells, tmp_path / "out", jobs=1, fail_fast=True)
    assert [o.cell for o in stats.failed] == cells[:1] and stats.not_started == cells[1:] and not stats.ok
    failure = json.loads((tmp_path / "out" / cells[0].path / "failed.json").read_text())
    assert failure == {"returncode": 2, "error": "error: model.strategy: unknown class", "log": "log.txt"}
    assert (tmp_path / "out" / cells[0].path / "log.txt").read_text().startswith("$ cd ")


def run_cli(*args: str) -> int:
    return cli.main(list(args))


def test_smoke_suite_end_to_end_then_resume(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "smoke"
    flags = ["--suite", "smoke", "--out", str(out), "--settings", "symmetric-0.4", "--seeds", "0", "--limit-epochs",
             "1"]  # fmt: skip
    assert run_cli(*flags, "--jobs", "2") == 0
    with open(out / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["strategy"], r["seed"]) for r in rows] == [("cross_entropy", "0"), ("oracle", "0")]
    assert all(0.0 < float(r["final_test_acc"]) <= 1.0 and 0.3 < float(r["realized_rate"]) < 0.5 for r in rows)
    config = yaml.safe_load((out / Cell("digits", "symmetric-0.4", "oracle", 0).path / "config.yaml").read_text())
    assert config["trainer"]["max_epochs"] == 1 and config["model"]["strategy"] == {"class_path": "Oracle"}
    checkpoints = out / Cell("digits", "symmetric-0.4", "oracle", 0).path / "run" / "version_0" / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["last.ckpt"]  # one write, after the last epoch
    assert (out / "curves.png").stat().st_size > 0 and "| symmetric 0.4 |" in (out / "report.md").read_text()

    started = time.perf_counter()
    suite = load_suite("smoke")
    cells = grid(suite, settings=["symmetric-0.4"], seeds=[0])
    stats = runner.run_suite(suite, cells, out, extra=run_overrides(limit_epochs=1))
    assert (len(stats.skipped), stats.ran, stats.failed) == (2, [], [])
    assert time.perf_counter() - started < 5.0
    capsys.readouterr()
    assert run_cli(*flags[:-1], "2") == 2  # another epoch count into the same folder: refused
    assert "ran with a different config" in capsys.readouterr().err


def test_a_reused_worker_frees_each_cell_before_the_next(tmp_path: Path) -> None:
    """A fit leaves reference cycles holding its data; a worker must not keep them until Python's collector
    happens to run (with few allocations per cell it did not, and workers grew ~200 MB per cell). Automatic
    collection is off here, so only the runner's own collection can free them."""
    import gc

    from robustlabels.module import RobustModule

    def live_modules() -> int:
        return sum(isinstance(o, RobustModule) for o in gc.get_objects())

    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(deep_merge(yaml.safe_load(package_path("configs/quickstart.yaml").read_text()),
                                                {"trainer": {"max_epochs": 1, "default_root_dir": str(tmp_path),
                                                             "logger": False}})))  # fmt: skip
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        counts = []
        for _ in range(3):
            with open(tmp_path / "log.txt", "w") as log:
                assert runner._fit_here(["--config", str(config)], log) == 0
            counts.append(live_modules())
    finally:
        if was_enabled:
            gc.enable()
    assert max(counts) <= 2 and counts[-1] <= counts[0], counts  # the last fit's, not one per fit


def test_reused_worker_processes_run_cells_like_subprocesses(tmp_path: Path) -> None:
    """--reuse-processes: the same results as fit subprocesses, in one worker; a failing cell is recorded and the
    worker goes on with the next."""
    out = tmp_path / "reuse"
    flags = ["--suite", "smoke", "--settings", "symmetric-0.4", "--seeds", "0", "--limit-epochs", "1"]
    assert run_cli(*flags, "--out", str(out), "--reuse-processes") == 0
    assert run_cli(*flags, "--out", str(tmp_path / "sub")) == 0
    for name in ("cross_entropy", "oracle"):
        cell = Cell("digits", "symmetric-0.4", name, 0).path
        a, b = (json.loads((root / cell / "run" / "version_0" / "metrics.json").read_text())
                for root in (out, tmp_path / "sub"))  # fmt: skip
        assert a["summary"]["final_test_acc"] == b["summary"]["final_test_acc"]
        assert "robustlabels: " in (out / cell / "log.txt").read_text()  # the fit's own output went to the log
    suite = load_suite("smoke")
    cells = grid(suite, settings=["symmetric-0.4"], seeds=[1])
    stats = runner.run_suite(suite, cells, out, extra={"model": {"strategy": {"class_path": "NoSuchStrategy"}}},
                             reuse_processes=True)  # fmt: skip
    assert len(stats.failed) == 2 and all("NoSuchStrategy" in o.error for o in stats.failed)


@pytest.mark.slow
def test_cifar10_suite_smoke_on_fake_data(tmp_path: Path) -> None:
    out = tmp_path / "c10"
    assert run_cli("--suite", "cifar10-gpu", "--out", str(out), "--data-fake", "--limit-epochs", "1", "--only",
                   "cross_entropy", "--seeds", "0", "--settings", "asymmetric-0.4") == 0  # fmt: skip
    assert "Fake data" in (out / "report.md").read_text()
    with open(out / "results.csv", newline="") as handle:
        assert [r["noise"] for r in csv.DictReader(handle)] == ["asymmetric"]


def test_a_dataset_whose_data_is_missing_is_skipped_with_what_to_provide(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """CIFAR-100N's images are not shipped: its cells are skipped, the line names the files, the report says so."""
    monkeypatch.chdir(tmp_path)  # nothing under ./data
    monkeypatch.delenv("ROBUSTLABELS_DATA", raising=False)
    (tmp_path / "labels.npz").write_bytes(b"")
    digits = SUITE["datasets"]["digits"]
    needs = ["dataset:cifar100", "labels.npz", "gone.npz"]
    suite_dict = {**SUITE, "datasets": {"digits": {**digits, "requires": ["dataset:digits"]},
                                        "c100": {**digits, "requires": needs}}}  # fmt: skip
    path = write_suite(tmp_path, suite_dict)
    monkeypatch.setattr("robustlabels.experiments.suite.repo_root", lambda: tmp_path)
    suite = load_suite(path)
    from robustlabels.experiments.suite import missing_data

    assert missing_data(suite.datasets["digits"]) is None
    why = missing_data(suite.datasets["c100"])
    assert why is not None and "\n" not in why and "cifar-100-python" in why and "'gone.npz'" in why
    assert "labels.npz" not in why.replace("gone.npz", "")  # the file that exists is not named
    out = tmp_path / "out"
    assert run_cli("--suite", str(path), "--out", str(out), "--datasets", "c100", "--dry-run") == 2
    assert "dataset 'c100' skipped" in capsys.readouterr().err
    report.write_report(suite, grid(suite), out, command="python -m robustlabels.experiments ...", curves=False)
    assert "**Not run here**: dataset 'c100' skipped" in (out / "report.md").read_text()
    with pytest.raises(InputError, match=r"`datasets\.c100\.requires` must be a list"):
        load_suite(write_suite(tmp_path, {**suite_dict, "datasets": {"c100": {**digits, "requires": "x"}}}))
