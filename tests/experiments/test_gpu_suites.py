"""The GPU reproduction suites of issue 18 (``cifar100-gpu``, ``cifar10n-gpu``, ``clothing1m-gpu``, ``animal10n-gpu``,
``webvision-mini-gpu``): every cell builds, the papers' settings and numbers are where the suite files say, a few cells
run one epoch on fake data, and data that is not here is skipped with what to provide."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import yaml

from robustlabels.errors import InputError
from robustlabels.experiments import cli, report, runner
from robustlabels.experiments.configs import build_config, deep_merge, run_overrides
from robustlabels.experiments.suite import Cell, grid, load_suite, missing_dataset


def run_cli(*args: str) -> int:
    return cli.main(list(args))


def paper_suite(tmp_path: Path, **paper: object) -> Path:
    """A one-cell digits suite with one paper entry (plus ``paper``'s keys)."""
    cell = {"dataset": "digits", "noise": "symmetric", "rate": 0.4, "strategy": "cross_entropy"}
    digits = {"config": "configs/quickstart.yaml", "settings": [{"noise": "symmetric", "rate": 0.4}]}
    strategies = {"cross_entropy": {"overrides": {"model": {"strategy": {"class_path": "CrossEntropy"}}}}}
    suite = {"seeds": [0], "datasets": {"digits": digits}, "strategies": strategies,
             "paper": [{**cell, "value": 90.0, **paper}]}  # fmt: skip
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(suite))
    return path


# ---- what the runner gained for these suites ------------------------------------------------------------
def test_a_paper_tolerance_prints_our_gap_and_whether_it_is_within(tmp_path: Path) -> None:
    number = load_suite(paper_suite(tmp_path, tolerance=2.0)).paper[0]
    assert number.tolerance == 2.0
    assert report.format_accuracy([0.885, 0.895], expected=2, paper=90.0, tolerance=2.0).endswith(
        "(paper 90; Δ -1.0 ≤ 2)"
    )
    assert report.format_accuracy([0.85], expected=1, paper=90.0, tolerance=2.0) == "85.0 (paper 90; Δ -5.0 > 2)"
    assert report.format_accuracy([], expected=1, paper=90.0, tolerance=2.0) == "— (paper 90)"
    assert report.format_accuracy([0.85], expected=1, paper=90.0) == "85.0 (paper 90)"  # no tolerance: as before
    assert load_suite(paper_suite(tmp_path)).paper[0].tolerance is None
    with pytest.raises(InputError, match=r"`paper\[0\]\.tolerance` is a gap in points, >= 0; got -1"):
        load_suite(paper_suite(tmp_path, tolerance=-1))


def test_requires_names_file_based_datasets_by_their_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROBUSTLABELS_DATA", str(tmp_path / "store"))
    monkeypatch.setattr("robustlabels.experiments.suite.repo_root", lambda: tmp_path)
    why = missing_dataset("clothing1m")
    assert why is not None and "\n" not in why
    assert why.startswith("Clothing1M: no copy found") and str(tmp_path / "store" / "clothing1m") in why
    assert "noisy_label" in why and "data/clothing1m" in why  # where to get it and where it goes
    (tmp_path / "store" / "clothing1m").mkdir(parents=True)  # $ROBUSTLABELS_DATA/<folder>, as the module looks
    assert missing_dataset("clothing1m") is None
    (tmp_path / "data" / "animal10n").mkdir(parents=True)  # data/<folder> of the checkout the cells run in
    assert missing_dataset("animal10n") is None and missing_dataset("webvision") is not None
    with pytest.raises(InputError, match=r"unknown dataset 'clothing1M'; known: digits, .*, clothing1m"):
        missing_dataset("clothing1M")


# ---- the suites -------------------------------------------------------------------------------------------
GPU_SUITES = {"cifar100-gpu": 49, "cifar10n-gpu": 32, "clothing1m-gpu": 6, "animal10n-gpu": 5, "webvision-mini-gpu": 4}


@pytest.mark.parametrize(("name", "cells"), GPU_SUITES.items())
def test_gpu_suites_build_every_cell_with_tolerances_on_every_paper_number(name: str, cells: int) -> None:
    suite = load_suite(name)
    configs = {cell: build_config(suite, cell) for cell in grid(suite)}
    assert len(configs) == cells and all(c["seed_everything"] == cell.seed for cell, c in configs.items())
    assert all(c["trainer"]["precision"] == "auto" for c in configs.values())
    assert suite.paper and all(n.tolerance is not None and n.source for n in suite.paper)
    assert all(need.startswith("dataset:") or Path(need).name.endswith(".npz") for s in suite.datasets.values()
               for need in s.requires)  # fmt: skip


def test_the_suites_carry_the_papers_recipes_and_numbers() -> None:
    c100 = load_suite("cifar100-gpu")
    elr = build_config(c100, Cell("cifar100", "asymmetric-0.4", "elr", 0))
    assert elr["model"]["regularizers"] == [{"class_path": "ELR", "init_args": {"momentum": 0.9, "weight": 7.0}}]
    asym = {"rate": 0.4, "variant": "block", "exact": False}
    assert elr["data"]["init_args"]["noise"] == {"class_path": "Cifar100AsymmetricNoise", "init_args": asym}
    assert elr["model"]["lr_scheduler"]["init_args"] == {"milestones": [80, 120], "gamma": 0.01}
    mwnet = build_config(c100, Cell("cifar100", "mwnet_symmetric-0.4", "meta_weight_net", 0))
    assert mwnet["trainer"]["max_epochs"] == 60 and mwnet["model"]["optimizer"]["init_args"]["nesterov"] is True
    assert mwnet["model"]["strategy"]["init_args"]["clean_meta_per_class"] * 100 == 1000  # MW-Net's 1k clean
    numbers = {(n.strategy, f"{n.noise}-{n.rate:g}"): n.value for n in c100.paper}
    assert [numbers["elr", f"symmetric-{r}"] for r in (0.2, 0.4, 0.6, 0.8)] == [74.21, 68.28, 59.28, 29.78]
    assert (
        numbers["meta_weight_net", "mwnet_symmetric-0.6"] == 47.03 and numbers["co_teaching", "pairflip-0.45"] == 34.81
    )

    c10n = load_suite("cifar10n-gpu")
    worst = build_config(c10n, Cell("cifar10n", "worst-0.4021", "co_teaching", 0))
    assert worst["data"]["init_args"]["label_set"] == "worst"
    assert worst["model"]["strategy"]["init_args"]["forget_rate"] == 0.4021
    assert worst["model"]["lr_scheduler"]["init_args"] == {"milestones": [60], "gamma": 0.1}  # CIFAR-N main.py
    plus = build_config(c10n, Cell("cifar100n", "noisy-0.402", "elr_plus", 0))
    assert plus["trainer"]["max_epochs"] == 250 and plus["model"]["strategy"]["init_args"] == {"preset": "cifar100"}
    assert build_config(c10n, Cell("cifar100n", "clean-0", "cross_entropy", 0))["data"]["class_path"] == (
        "CIFAR100DataModule"
    )

    animal = load_suite("animal10n-gpu")
    nested = build_config(animal, Cell("animal10n", "real-0.08", "nested_co_teaching", 0))
    assert nested["model"]["backbone"] == "vgg19_bn" and nested["trainer"]["max_epochs"] == 130
    assert nested["model"]["strategy"]["init_args"]["stage2_lr"] == 0.004
    assert {n.strategy: n.value for n in animal.paper} == {"cross_entropy": 79.4, "nested_dropout": 81.3,
                                                           "nested_co_teaching": 84.1}  # fmt: skip
    clothing = load_suite("clothing1m-gpu")
    for strategy in ("cross_entropy", "nested_co_teaching"):  # the papers start from ImageNet weights
        assert build_config(clothing, Cell("clothing1m", "real-0.385", strategy, 0))["model"]["backbone_kwargs"] == {
            "pretrained": True
        }


def test_missing_real_noise_data_skips_the_suite_with_what_to_provide(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("ROBUSTLABELS_DATA", raising=False)
    monkeypatch.setattr("robustlabels.experiments.suite.repo_root", lambda: tmp_path)  # no data/ folder there
    for name, title in (("clothing1m-gpu", "Clothing1M"), ("animal10n-gpu", "ANIMAL-10N"),
                        ("webvision-mini-gpu", "WebVision")):  # fmt: skip
        assert run_cli("--suite", name, "--out", str(tmp_path / name), "--dry-run") == 2
        err = capsys.readouterr().err
        assert f"skipped: {title}: no copy found" in err and "every dataset the filters choose lacks its data" in err
    assert run_cli("--suite", "animal10n-gpu", "--out", str(tmp_path / "fake"), "--dry-run", "--data-fake") == 0


def run_fake(tmp_path: Path, suite_name: str, cells: list[Cell], extra: dict | None = None) -> list[dict[str, str]]:
    """Run ``cells`` one epoch on fake data in one reused worker; the rows of results.csv."""
    suite = load_suite(suite_name)
    out = tmp_path / suite_name
    layer = deep_merge(run_overrides(limit_epochs=1, data_fake=True), extra or {})
    stats = runner.run_suite(suite, cells, out, extra=layer, reuse_processes=True)
    assert stats.ok, [f.error for f in stats.failed]
    report.write_report(suite, cells, out, command="test", curves=False)
    assert "Fake data" in (out / "report.md").read_text()
    with open(out / "results.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_gpu_suite_smoke_on_fake_data(tmp_path: Path) -> None:
    """A CIFAR-10N cell trains one epoch of PreAct ResNet-18 on fake data through the runner."""
    rows = run_fake(tmp_path, "cifar10n-gpu", [Cell("cifar10n", "aggre-0.0903", "elr", 0)])
    assert [(r["dataset"], r["noise"], r["strategy"]) for r in rows] == [("cifar10n", "aggre", "elr")]
    assert 0.0 <= float(rows[0]["final_test_acc"]) <= 1.0


@pytest.mark.slow
def test_more_gpu_suite_cells_smoke_on_fake_data(tmp_path: Path) -> None:
    """CIFAR-100's STORM-style meta cell and ANIMAL-10N's nested co-teaching (VGG-19-BN), one epoch each."""
    storm = Cell("cifar100", "mwnet_symmetric-0.2", "meta_loss_rescaling-first_order", 0)
    rows = run_fake(tmp_path, "cifar100-gpu", [storm])
    rows += run_fake(tmp_path, "animal10n-gpu", [Cell("animal10n", "real-0.08", "nested_co_teaching", 0)])
    assert [r["strategy"] for r in rows] == [storm.strategy, "nested_co_teaching"]


@pytest.mark.slow
def test_large_image_suites_smoke_on_fake_data(tmp_path: Path) -> None:
    """ResNet-50 / ResNet-18 at 224 px and InceptionResNet-V2 at 227 px, one epoch each (ImageNet weights off: no
    downloads here)."""
    no_weights = {"model": {"backbone_kwargs": {"pretrained": False}}}
    clothing = [Cell("clothing1m", "real-0.385", s, 0) for s in ("elr_plus", "nested_co_teaching")]
    rows = run_fake(tmp_path, "clothing1m-gpu", clothing, no_weights)
    rows += run_fake(tmp_path, "webvision-mini-gpu", [Cell("webvision_mini", "real-0.2", "neighbor_consistency", 0)])
    assert [r["strategy"] for r in rows] == ["elr_plus", "nested_co_teaching", "neighbor_consistency"]
