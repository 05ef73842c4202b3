"""Catalog: names, splits, root search order (env var, ./data, system places) and not-found messages."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from robustlabels.data import catalog
from robustlabels.data.catalog import DATASETS, DatasetArrays, default_roots, load_arrays
from robustlabels.errors import InputError

from . import fakes

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "data"
FASHION_SYSTEM = Path("/usr/share/datasets/fashion-mnist")
CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No ROBUSTLABELS_DATA, cwd = ``tmp_path/work`` (so ./data and ../shared/data are under tmp_path)."""
    monkeypatch.delenv(catalog.ENV_VAR, raising=False)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def _mnist_pair(folder: Path, split: str, n: int, seed: int, *, gz: bool = True) -> tuple[np.ndarray, ...]:
    x, y = fakes.images(n, (28, 28), seed=seed), fakes.labels(n, seed=seed)
    fakes.write_mnist(folder, split, x, y, gz=gz)
    return x, y


def test_names_and_bad_arguments() -> None:
    assert DATASETS == ("digits", "mnist", "fashion_mnist", "cifar10", "cifar100")
    with pytest.raises(InputError, match=r"unknown dataset 'svhn'; known: digits, mnist, fashion_mnist"):
        load_arrays("svhn")
    with pytest.raises(InputError, match=r"`split` must be one of train, test; got 'val'"):
        load_arrays("digits", split="val")
    with pytest.raises(InputError, match="unknown dataset 'svhn'"):
        default_roots("svhn")


def test_digits_split_is_stratified_deterministic_and_scaled() -> None:
    from sklearn.datasets import load_digits

    train, test = load_arrays("digits", split="train"), load_arrays("digits", split="test")
    bunch = load_digits()
    assert (
        train.inputs.shape[1:] == (8, 8) and train.inputs.dtype == np.uint8 and train.labels.dtype == np.int64
    )
    assert len(train.labels) + len(test.labels) == 1797 and train.num_classes == 10
    for c in range(10):
        n_c = int((bunch.target == c).sum())
        assert (test.labels == c).sum() == round(0.2 * n_c)
    scaled = np.clip(bunch.images * 16, 0, 255).astype(np.uint8)
    # Each split is an ordered sub-sequence of the bundled data: together they are all 1797 images.
    together = np.concatenate([train.inputs, test.inputs]).reshape(1797, -1)
    assert sorted(map(bytes, together)) == sorted(map(bytes, scaled.reshape(1797, -1)))
    assert train.inputs.max() == 255 and test.clean_labels is None and test.source.endswith("load_digits")
    np.testing.assert_array_equal(load_arrays("digits", split="test").inputs, test.inputs)


def test_dataset_arrays_is_frozen() -> None:
    arrays = load_arrays("digits", split="test")
    assert isinstance(arrays, DatasetArrays) and arrays.class_names == tuple("0123456789")
    with pytest.raises(dataclasses.FrozenInstanceError):
        arrays.num_classes = 3  # type: ignore[misc]


def test_torchvision_root_serves_each_dataset(tmp_path: Path, clean_env: Path) -> None:
    mx, my = _mnist_pair(tmp_path / "MNIST" / "raw", "train", 5, seed=1, gz=False)
    fx, fy = _mnist_pair(tmp_path / "FashionMNIST" / "raw", "train", 4, seed=2)
    cx, cy = fakes.images(2, (32, 32, 3), seed=3), fakes.labels(2, seed=3)
    fakes.write_cifar10(tmp_path / "cifar-10-batches-py", {"test_batch": (cx, cy)}, CIFAR10_NAMES)
    hx = fakes.images(3, (32, 32, 3), seed=4)
    hf, hc = fakes.labels(3, 100, seed=4), fakes.labels(3, 20, seed=5)
    fakes.write_cifar100(tmp_path / "cifar-100-python", {"test": (hx, hf, hc)})
    cases = [("mnist", "train", mx, my, 10), ("fashion_mnist", "train", fx, fy, 10),
             ("cifar10", "test", cx, cy, 10), ("cifar100", "test", hx, hf, 100)]  # fmt: skip
    for name, split, x, y, num_classes in cases:
        arrays = load_arrays(name, split=split, root=tmp_path)
        np.testing.assert_array_equal(arrays.inputs, x)
        np.testing.assert_array_equal(arrays.labels, y)
        assert arrays.labels.dtype == np.int64 and arrays.num_classes == num_classes
        assert len(arrays.class_names) == num_classes and arrays.clean_labels is None
        assert str(tmp_path) in arrays.source
    assert load_arrays("fashion_mnist", split="train", root=tmp_path).class_names[0] == "T-shirt/top"
    assert load_arrays("cifar10", split="test", root=tmp_path).class_names == tuple(CIFAR10_NAMES)


def test_gz_and_raw_roots_give_identical_arrays(tmp_path: Path, clean_env: Path) -> None:
    x, y = fakes.images(6, (28, 28), seed=7), fakes.labels(6, seed=7)
    fakes.write_mnist(tmp_path / "gz", "test", x, y, gz=True)
    fakes.write_mnist(tmp_path / "raw", "test", x, y, gz=False)
    a, b = (
        load_arrays("mnist", split="test", root=tmp_path / "gz"),
        load_arrays("mnist", split="test", root=tmp_path / "raw"),
    )
    np.testing.assert_array_equal(a.inputs, b.inputs)
    np.testing.assert_array_equal(a.labels, b.labels)


def test_default_roots_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, clean_env: Path) -> None:
    assert default_roots("digits") == []
    assert default_roots("cifar100") == [clean_env / "data" / "cifar100"]
    assert default_roots("fashion_mnist") == [clean_env / "data" / "fashion_mnist", FASHION_SYSTEM]
    assert default_roots("mnist")[-1] == tmp_path / "shared" / "data" / "mnist"
    assert default_roots("cifar10")[-1] == tmp_path / "shared" / "data" / "cifar10_jpeg"
    monkeypatch.setenv(catalog.ENV_VAR, str(tmp_path / "mine"))
    assert default_roots("mnist") == [
        tmp_path / "mine" / "mnist",
        clean_env / "data" / "mnist",
        tmp_path / "shared" / "data" / "mnist",
    ]


def test_search_order_env_then_cwd_data_then_shared(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, clean_env: Path
) -> None:
    shared_x, shared_y = fakes.images(3, (28, 28), seed=1), fakes.labels(3, seed=1)
    fakes.write_npz(
        tmp_path / "shared" / "data" / "mnist" / "mnist_test.npz", images=shared_x, labels=shared_y
    )
    arrays = load_arrays("mnist", split="test")
    np.testing.assert_array_equal(arrays.inputs, shared_x)
    assert arrays.source == str(tmp_path / "shared" / "data" / "mnist" / "mnist_test.npz")

    local_x, _ = _mnist_pair(clean_env / "data" / "mnist", "test", 4, seed=2)
    np.testing.assert_array_equal(load_arrays("mnist", split="test").inputs, local_x)

    env_x, _ = _mnist_pair(tmp_path / "mine" / "mnist" / "MNIST" / "raw", "test", 5, seed=3)
    monkeypatch.setenv(catalog.ENV_VAR, str(tmp_path / "mine"))
    arrays = load_arrays("mnist", split="test")
    np.testing.assert_array_equal(arrays.inputs, env_x)
    assert arrays.source == str(tmp_path / "mine" / "mnist" / "MNIST" / "raw")


def test_search_skips_roots_without_the_split(tmp_path: Path, clean_env: Path) -> None:
    # ./data/mnist holds only the train split: the test split still comes from the next root.
    _mnist_pair(clean_env / "data" / "mnist", "train", 2, seed=1)
    shared_x = fakes.images(3, (28, 28), seed=5)
    fakes.write_npz(
        tmp_path / "shared" / "data" / "mnist" / "mnist_test.npz", images=shared_x, labels=fakes.labels(3)
    )
    np.testing.assert_array_equal(load_arrays("mnist", split="test").inputs, shared_x)
    assert len(load_arrays("mnist", split="train").labels) == 2


def test_cifar10_jpeg_system_place(tmp_path: Path, clean_env: Path) -> None:
    x = np.full((2, 32, 32, 3), 120, np.uint8)
    path = tmp_path / "shared" / "data" / "cifar10_jpeg" / "cifar10_test_jpeg.npz"
    fakes.write_jpeg_npz(path, fakes.jpeg_encode(x), np.array([4, 9], np.uint8), CIFAR10_NAMES)
    arrays = load_arrays("cifar10", split="test")
    assert arrays.inputs.shape == (2, 32, 32, 3) and np.abs(arrays.inputs.astype(int) - 120).max() <= 2
    np.testing.assert_array_equal(arrays.labels, [4, 9])
    assert arrays.source == str(path)


def test_not_found_names_dataset_split_places_and_how_to_get(tmp_path: Path, clean_env: Path) -> None:
    with pytest.raises(InputError) as err:
        load_arrays("cifar100", split="test")
    msg = str(err.value)
    assert "'cifar100'" in msg and "'test'" in msg and str(clean_env / "data" / "cifar100") in msg
    assert "cifar-100-python" in msg and "ROBUSTLABELS_DATA" in msg and "\n" not in msg
    with pytest.raises(InputError) as err:
        load_arrays("fashion_mnist", split="train", root=tmp_path / "empty")
    msg = str(err.value)
    assert "apt-get install dataset-fashion-mnist" in msg and str(tmp_path / "empty") in msg
    assert str(FASHION_SYSTEM) not in msg  # an explicit root is the only place searched


def test_labels_out_of_range_rejected(tmp_path: Path, clean_env: Path) -> None:
    fakes.write_mnist(tmp_path, "test", fakes.images(2, (28, 28)), np.array([3, 12], np.uint8), gz=False)
    with pytest.raises(InputError, match=r"label 12 out of range for 10 classes"):
        load_arrays("mnist", split="test", root=tmp_path)


# ----------------------------------------------------------------------------------------------- real data
@pytest.mark.skipif(
    not (SHARED / "mnist" / "mnist_test.npz").is_file(), reason="shared mnist_test.npz absent"
)
def test_real_mnist_test_from_default_roots(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(catalog.ENV_VAR, raising=False)
    monkeypatch.chdir(REPO)
    if (REPO / "data" / "mnist").exists():
        pytest.skip("a local ./data/mnist takes precedence")
    arrays = load_arrays("mnist", split="test")
    assert arrays.inputs.shape == (10000, 28, 28) and arrays.labels.shape == (10000,)
    assert arrays.source.endswith("mnist_test.npz")


@pytest.mark.skipif(
    not (FASHION_SYSTEM / "train-images-idx3-ubyte.gz").is_file(), reason="dataset-fashion-mnist absent"
)
def test_real_fashion_mnist_from_system_place(clean_env: Path) -> None:
    train, test = load_arrays("fashion_mnist", split="train"), load_arrays("fashion_mnist", split="test")
    assert train.inputs.shape == (60000, 28, 28) and test.inputs.shape == (10000, 28, 28)
    assert train.inputs.dtype == np.uint8 and train.source == str(FASHION_SYSTEM)
    np.testing.assert_array_equal(np.bincount(train.labels), np.full(10, 6000))
    np.testing.assert_array_equal(np.bincount(test.labels), np.full(10, 1000))
