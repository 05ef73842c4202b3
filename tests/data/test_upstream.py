"""The real-noise dataset wrappers on tiny copies of their upstream layouts: layout read, counts checked, a missing
file named in one ``error:`` line with exit code 2 through ``python -m robustlabels.fit``."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from robustlabels.data import (
    Animal10NDataModule,
    CIFAR10NDataModule,
    CIFAR100NDataModule,
    Clothing1MDataModule,
    Food101NDataModule,
    MiniImageNetRedDataModule,
    WebVisionDataModule,
)
from robustlabels.data.lazy import ClassBalancedSampler, class_balanced_draw
from robustlabels.errors import InputError
from robustlabels.fit import main
from tests.data import fakes
from tests.data import upstream_layouts as layouts

# name -> (writer, data module, extra init args, a file the missing-file test deletes)
DATASETS: dict[str, tuple[Callable[[Path], dict[str, int]], type, dict[str, Any], str]] = {
    "clothing1m": (layouts.write_clothing1m, Clothing1MDataModule, {}, "clean_test_key_list.txt"),
    "animal10n": (layouts.write_animal10n, Animal10NDataModule, {}, "testing"),
    "webvision": (layouts.write_webvision, WebVisionDataModule, {"num_classes": 3}, "info/val_filelist.txt"),
    "food101n": (layouts.write_food101n, Food101NDataModule, {}, "food-101/meta/test.txt"),
    "mini_imagenet_red": (layouts.write_cnwl, MiniImageNetRedDataModule, {}, "split/red_noise_nl_0.4"),
}
SMALL = {"image_size": 8, "decode_size": 10, "batch_size": 4}
FIT = ["--trainer.fast_dev_run=true", "--trainer.accelerator=cpu", "--trainer.logger=false",
       "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false", "--model.backbone=mlp",
       "--model.backbone_kwargs={hidden: 8, depth: 1}", "--model.strategy=CrossEntropy"]  # fmt: skip


def build(name: str, root: Path, **extra: Any) -> tuple[Any, dict[str, int]]:
    writer, module, kwargs, _ = DATASETS[name]
    counts = writer(root)
    expected = {**counts, "verified": 6} if name == "food101n" else counts
    return module(root=str(root), expected_counts=expected, **SMALL, **kwargs, **extra), counts


@pytest.mark.parametrize("name", DATASETS)
def test_layout_is_read_into_lazy_batches(name: str, tmp_path: Path) -> None:
    dm, counts = build(name, tmp_path / name)
    dm.setup()
    train, test = dm.datasets["train"], dm.datasets["test"]
    assert len(train) + len(dm.datasets["val"]) * (not dm.has_validation_split()) == counts["train"]
    assert len(test) == counts["test"] and bool((test.clean_targets == test.targets).all())
    batch = next(iter(dm.train_dataloader()))
    assert batch.inputs.shape == (4, 3, 10, 10) and batch.inputs.dtype == torch.uint8
    assert torch.equal(batch.targets, train.targets[batch.index])
    assert dm.transform(batch, training=True).inputs.shape == (4, 3, 8, 8)
    rate = dm.realized_noise_rate
    expected_rate = {"clothing1m": 2 / 7, "food101n": 0.5, "mini_imagenet_red": 0.25}.get(name)
    assert (rate is None) == (expected_rate is None) and (rate is None or rate == pytest.approx(expected_rate))


def test_clothing1m_truth_where_known_and_the_clean_training_split(tmp_path: Path) -> None:
    dm, _ = build("clothing1m", tmp_path)
    dm.setup()
    truth = dm.datasets["train"].clean_targets
    assert int((truth >= 0).sum()) == 7 and int((truth != dm.datasets["train"].targets)[truth >= 0].sum()) == 2
    assert len(dm.datasets["val"]) == 14 and bool((dm.datasets["val"].clean_targets >= 0).all())
    clean = Clothing1MDataModule(root=str(tmp_path), train_split="clean", expected_counts={"train": 14, "val": 14,
                                 "test": 14}, **SMALL)  # fmt: skip
    clean.setup()
    assert len(clean.datasets["train"]) == 14 and clean.realized_noise_rate == 0.0


def test_class_balanced_draw_follows_the_elr_dividemix_scheme() -> None:
    labels = np.repeat(np.arange(3), [100, 30, 50])
    kept = class_balanced_draw(labels, 3, 64, np.random.default_rng(0))  # at most ceil(64 / 3) = 22 per class
    assert len(kept) == 64 == len(set(kept.tolist())) and np.bincount(labels[kept]).max() == 22
    short = np.repeat(np.arange(3), [100, 10, 50])
    sampler = ClassBalancedSampler(short, 3, 60, 16, seed=0, redraw=True)
    first = [i for batch in sampler for i in batch]
    assert len(first) == sampler.size == 50 and len(sampler) == 4  # class 1 has only 10: 20 + 10 + 20
    assert np.bincount(short[first]).tolist() == [20, 10, 20]
    sampler.set_epoch(1)
    assert sorted(first) != sorted(i for batch in sampler for i in batch)  # DivideMix: a new draw each epoch
    once = ClassBalancedSampler(short, 3, 60, 16, seed=0, redraw=False)  # ELR+: one draw for the run
    drawn = sorted(i for batch in once for i in batch)
    once.set_epoch(5)
    assert drawn == sorted(i for batch in once for i in batch)


@pytest.mark.parametrize("name", ["clothing1m", "animal10n"])
def test_counts_are_checked_against_the_full_release(name: str, tmp_path: Path) -> None:
    writer, module, kwargs, _ = DATASETS[name]
    writer(tmp_path)
    with pytest.raises(InputError, match=r"lists (28|20) images; the full release has (1000000|50000)"):
        module(root=str(tmp_path), **kwargs).setup()
    module(root=str(tmp_path), strict=False, **SMALL, **kwargs).setup()  # a partial copy, knowingly


@pytest.mark.parametrize("name", DATASETS)
def test_a_missing_file_is_one_error_line_and_exit_2(name: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    writer, module, _, victim = DATASETS[name]
    writer(tmp_path)
    shutil.rmtree(tmp_path / victim) if (tmp_path / victim).is_dir() else (tmp_path / victim).unlink()
    args = [f"--data.class_path={module.__name__}", f"--data.init_args.root={tmp_path}",
            "--data.init_args.strict=false", f"--trainer.default_root_dir={tmp_path}", *FIT]  # fmt: skip
    if name == "webvision":
        args.append("--data.init_args.num_classes=3")
    assert main(args) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(tmp_path / victim) in errors[0], errors


def test_fit_runs_clothing1m_with_balanced_sampling(tmp_path: Path) -> None:
    layouts.write_clothing1m(tmp_path)
    args = ["--data.class_path=Clothing1MDataModule", f"--data.init_args.root={tmp_path}",
            "--data.init_args.strict=false", "--data.init_args.balanced_samples=14", "--data.init_args.image_size=8",
            "--data.init_args.decode_size=10", f"--data.init_args.cache_dir={tmp_path / 'cache'}",
            f"--trainer.default_root_dir={tmp_path}", *FIT]  # fmt: skip
    assert main(args) == 0
    assert len(list((tmp_path / "cache").glob("*.u8"))) == 3  # train, val, test


def test_decode_cache_serves_images_once_decoded(tmp_path: Path) -> None:
    dm, _ = build("animal10n", tmp_path, cache_dir=str(tmp_path / "cache"))
    dm.setup()
    test = dm.datasets["test"]
    first = test[[0, 1]].inputs
    for f in (tmp_path / "testing").glob("*.jpg"):
        f.unlink()  # a cached image no longer needs its file
    assert torch.equal(test[[0, 1]].inputs, first)
    with pytest.raises(InputError, match="image file not found"):
        test[[2]]


def write_cifar(root: Path) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10 batches of 2 images each, CIFAR-100 train/test of 10/4 images; returns both training label arrays."""
    c10 = np.arange(10) % 10
    batches = {f"data_batch_{i + 1}": (fakes.images(2, (32, 32, 3), seed=i), c10[2 * i : 2 * i + 2]) for i in range(5)}
    batches["test_batch"] = (fakes.images(4, (32, 32, 3), seed=9), np.arange(4))
    fakes.write_cifar10(root / "cifar-10-batches-py", batches, [f"c{i}" for i in range(10)])
    fine, coarse = np.arange(10) * 7 % 100, np.arange(10) % 20
    fakes.write_cifar100(root / "cifar-100-python", {"train": (fakes.images(10, (32, 32, 3)), fine, coarse),
                                                      "test": (fakes.images(4, (32, 32, 3)), fine[:4], coarse[:4])})
    return c10, fine


def test_cifar_n_label_sets_by_name(tmp_path: Path) -> None:
    c10, fine = write_cifar(tmp_path)
    sets = {"clean_label": c10, "aggre_label": c10, "worse_label": (c10 + 1) % 10, "random_label1": c10,
            "random_label2": (c10 + 2) % 10, "random_label3": c10}  # fmt: skip
    np.savez(tmp_path / "cifar10n_labels.npz", **sets)
    for name, key, rate in (("worst", "worse_label", 1), ("rand2", "random_label2", 1), ("aggre", "aggre_label", 0)):
        dm = CIFAR10NDataModule(root=str(tmp_path), label_set=name, val_fraction=0.0)
        dm.setup()
        assert dm.datasets["train"].targets.tolist() == sets[key].tolist() and dm.realized_noise_rate == rate
        assert dm.datasets["train"].clean_targets.tolist() == c10.tolist()
    np.savez(tmp_path / "cifar10n_labels.npz", **{**sets, "clean_label": np.roll(c10, 1)})
    with pytest.raises(InputError, match="differs from the CIFAR training labels at 10 images"):
        CIFAR10NDataModule(root=str(tmp_path), val_fraction=0.0).setup()
    np.savez(tmp_path / "cifar100n_labels.npz", noisy_label=(fine + 1) % 100, clean_label=fine,
             noisy_coarse_label=np.arange(10) % 20, clean_coarse_label=np.arange(10) % 20)  # fmt: skip
    coarse = CIFAR100NDataModule(root=str(tmp_path), label_set="coarse", val_fraction=0.0)
    coarse.setup()
    assert coarse.num_classes == 20 and coarse.realized_noise_rate == 0.0 and len(coarse.datasets["test"]) == 4
    fine_dm = CIFAR100NDataModule(root=str(tmp_path), val_fraction=0.0)
    fine_dm.setup()
    assert fine_dm.num_classes == 100 and fine_dm.realized_noise_rate == 1.0


def test_cifar_n_missing_labels_file_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    write_cifar(tmp_path)
    missing = tmp_path / "CIFAR-10_human.pt"
    args = ["--data.class_path=CIFAR10NDataModule", f"--data.init_args.root={tmp_path}",
            f"--data.init_args.labels_file={missing}", f"--trainer.default_root_dir={tmp_path}", *FIT]  # fmt: skip
    assert main(args) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(missing) in errors[0] and "UCSC-REAL/cifar-10-100n" in errors[0]
