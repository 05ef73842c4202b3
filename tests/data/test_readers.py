"""Readers: fake files in every upstream layout give back exact arrays; bad files give one-line errors."""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np
import pytest

from robustlabels.data import readers
from robustlabels.errors import InputError

from . import fakes

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


# ----------------------------------------------------------------------------------------------- IDX
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_read_idx_round_trips_every_dtype_raw_and_gz(tmp_path: Path, dtype: type) -> None:
    array = (np.arange(2 * 3 * 4) - 5).astype(dtype).reshape(2, 3, 4)
    raw = readers.read_idx(fakes.write_idx(tmp_path / "a-idx3-ubyte", array))
    gz = readers.read_idx(fakes.write_idx(tmp_path / "a-idx3-ubyte.gz", array, gz=True))
    for got in (raw, gz):
        assert got.dtype == np.dtype(dtype) and got.dtype.isnative and got.flags.writeable
        np.testing.assert_array_equal(got, array)


def test_read_idx_detects_gzip_by_content_not_suffix(tmp_path: Path) -> None:
    array = fakes.images(3, (28, 28))
    got = readers.read_idx(fakes.write_idx(tmp_path / "no-suffix", array, gz=True))
    np.testing.assert_array_equal(got, array)


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (b"\x00\x00\x07\x01" + b"\x00" * 8, "not an IDX file"),  # unknown type code
        (b"\x12\x34\x08\x01" + b"\x00" * 8, "not an IDX file"),  # no leading zeros
        (b"\x00\x00", "not an IDX file"),
        (b"\x00\x00\x08\x03\x00\x00", "truncated IDX header"),
        (fakes.idx_bytes(np.zeros((4, 5), np.uint8))[:-3], "truncated"),
        (fakes.idx_bytes(np.zeros((4, 5), np.uint8)) + b"\x00", "too long"),
    ],
)
def test_read_idx_rejects_bad_files_naming_them(tmp_path: Path, data: bytes, needle: str) -> None:
    path = tmp_path / "bad-idx"
    path.write_bytes(data)
    with pytest.raises(InputError, match=needle) as err:
        readers.read_idx(path)
    assert "bad-idx" in str(err.value) and "\n" not in str(err.value)


def test_read_idx_truncated_gzip_and_missing_file(tmp_path: Path) -> None:
    good = fakes.write_idx(tmp_path / "x.gz", fakes.images(50, (28, 28)), gz=True).read_bytes()
    (tmp_path / "cut.gz").write_bytes(good[: len(good) // 2])
    with pytest.raises(InputError, match=r"cut\.gz.*gzip"):
        readers.read_idx(tmp_path / "cut.gz")
    with pytest.raises(InputError, match="nope-idx"):
        readers.read_idx(tmp_path / "nope-idx")


# ----------------------------------------------------------------------------------------------- MNIST
@pytest.mark.parametrize("sub", [".", "raw", "MNIST/raw"])
@pytest.mark.parametrize("gz", [False, True])
def test_read_mnist_like_in_each_folder_raw_and_gz(tmp_path: Path, sub: str, gz: bool) -> None:
    train_x, train_y = fakes.images(7, (28, 28), seed=1), fakes.labels(7, seed=1)
    test_x, test_y = fakes.images(3, (28, 28), seed=2), fakes.labels(3, seed=2)
    fakes.write_mnist(tmp_path / sub, "train", train_x, train_y, gz=gz)
    fakes.write_mnist(tmp_path / sub, "test", test_x, test_y, gz=gz)
    for split, (x, y) in {"train": (train_x, train_y), "test": (test_x, test_y)}.items():
        images, labels = readers.read_mnist_like(tmp_path, split)
        assert images.dtype == np.uint8 and images.shape == x.shape and labels.dtype == np.int64
        np.testing.assert_array_equal(images, x)
        np.testing.assert_array_equal(labels, y)


def test_read_mnist_like_torchvision_fashion_folder(tmp_path: Path) -> None:
    x, y = fakes.images(5, (28, 28), seed=3), fakes.labels(5, seed=3)
    fakes.write_mnist(tmp_path / "FashionMNIST" / "raw", "test", x, y, gz=True)
    with pytest.raises(InputError, match="searched"):
        readers.read_mnist_like(tmp_path, "test")  # only MNIST/raw is looked into by default
    images, labels = readers.read_mnist_like(tmp_path, "test", folder_names=("FashionMNIST",))
    np.testing.assert_array_equal(images, x)
    np.testing.assert_array_equal(labels, y)


def test_find_mnist_files_prefers_first_folder_and_dotted_names(tmp_path: Path) -> None:
    x, y = fakes.images(2, (28, 28)), fakes.labels(2)
    fakes.write_idx(tmp_path / "raw" / "t10k-images.idx3-ubyte", x)
    fakes.write_idx(tmp_path / "raw" / "t10k-labels.idx1-ubyte", y)
    assert readers.find_mnist_files(tmp_path, "test") == (
        tmp_path / "raw" / "t10k-images.idx3-ubyte",
        tmp_path / "raw" / "t10k-labels.idx1-ubyte",
    )
    fakes.write_mnist(tmp_path, "test", x, y, gz=True)
    assert readers.find_mnist_files(tmp_path, "test")[0] == tmp_path / "t10k-images-idx3-ubyte.gz"
    assert readers.find_mnist_files(tmp_path, "train") is None


def test_read_mnist_like_npz(tmp_path: Path) -> None:
    x, y = fakes.images(4, (28, 28)), fakes.labels(4)
    fakes.write_npz(tmp_path / "mnist_test.npz", images=x, labels=y)
    assert readers.find_mnist_files(tmp_path, "test") == (tmp_path / "mnist_test.npz",)
    images, labels = readers.read_mnist_like(tmp_path, "test")
    np.testing.assert_array_equal(images, x)
    np.testing.assert_array_equal(labels, y)
    assert labels.dtype == np.int64
    fakes.write_npz(tmp_path / "mnist_train.npz", images=x)
    with pytest.raises(InputError, match=r"mnist_train\.npz.*missing field 'labels'"):
        readers.read_mnist_like(tmp_path, "train")


def test_read_mnist_like_not_found_lists_places(tmp_path: Path) -> None:
    with pytest.raises(InputError) as err:
        readers.read_mnist_like(tmp_path, "train", folder_names=("FashionMNIST",))
    msg = str(err.value)
    for place in (tmp_path / "raw", tmp_path / "FashionMNIST" / "raw", tmp_path / "mnist_train.npz"):
        assert str(place) in msg
    assert "train-images-idx3-ubyte" in msg and "\n" not in msg
    with pytest.raises(InputError, match="split"):
        readers.read_mnist_like(tmp_path, "valid")


def test_read_mnist_like_length_mismatch_names_both_files(tmp_path: Path) -> None:
    fakes.write_idx(tmp_path / "train-images-idx3-ubyte", fakes.images(6, (28, 28)))
    fakes.write_idx(tmp_path / "train-labels-idx1-ubyte", fakes.labels(5))
    with pytest.raises(InputError) as err:
        readers.read_mnist_like(tmp_path, "train")
    msg = str(err.value)
    assert "train-images-idx3-ubyte" in msg and "train-labels-idx1-ubyte" in msg
    assert "6 images" in msg and "5 labels" in msg


# ----------------------------------------------------------------------------------------------- CIFAR-10
def _fake_cifar10(folder: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    batches = {f"data_batch_{i}": (fakes.images(3, (32, 32, 3), seed=i), fakes.labels(3, seed=i))
               for i in range(1, 6)}  # fmt: skip
    batches["test_batch"] = (fakes.images(4, (32, 32, 3), seed=9), fakes.labels(4, seed=9))
    fakes.write_cifar10(folder, batches, CIFAR10_NAMES)
    return batches


@pytest.mark.parametrize("sub", [".", "cifar-10-batches-py"])
def test_read_cifar10_batches_keep_official_order(tmp_path: Path, sub: str) -> None:
    batches = _fake_cifar10(tmp_path / sub)
    images, labels, names = readers.read_cifar10(tmp_path, "train")
    expected = [batches[f"data_batch_{i}"] for i in range(1, 6)]
    np.testing.assert_array_equal(images, np.concatenate([x for x, _ in expected]))
    np.testing.assert_array_equal(labels, np.concatenate([y for _, y in expected]))
    assert images.shape == (15, 32, 32, 3) and images.dtype == np.uint8 and images.flags.c_contiguous
    assert labels.dtype == np.int64 and names == CIFAR10_NAMES
    images, labels, _ = readers.read_cifar10(tmp_path, "test")
    np.testing.assert_array_equal(images, batches["test_batch"][0])
    np.testing.assert_array_equal(labels, batches["test_batch"][1])


def test_cifar_rows_are_channel_planes(tmp_path: Path) -> None:
    # An independent check of the CHW -> HWC layout: pixel (y, x) of channel c is row[c*1024 + y*32 + x].
    rows = np.random.default_rng(0).integers(0, 256, (2, 3072), dtype=np.uint8)
    batch = {b"data": rows, b"labels": [1, 2]}
    (tmp_path / "test_batch").write_bytes(pickle.dumps(batch, protocol=2))
    images, labels, names = readers.read_cifar10(tmp_path, "test")
    np.testing.assert_array_equal(labels, [1, 2])
    assert images[1, 5, 7, 2] == rows[1, 2 * 1024 + 5 * 32 + 7]
    assert images[0, 31, 0, 1] == rows[0, 1024 + 31 * 32]
    assert names == CIFAR10_NAMES  # no batches.meta: the standard names


def test_cifar_pickle_with_foreign_global_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self) -> tuple:
            return (Path.touch, (marker,))

    (tmp_path / "test_batch").write_bytes(pickle.dumps({b"data": Evil()}, protocol=2))
    with pytest.raises(InputError, match=r"test_batch.*refusing to load global"):
        readers.read_cifar10(tmp_path, "test")
    assert not marker.exists()


def test_cifar10_bad_batch_errors(tmp_path: Path) -> None:
    (tmp_path / "test_batch").write_bytes(b"not a pickle at all")
    with pytest.raises(InputError, match=r"test_batch.*not a CIFAR python batch"):
        readers.read_cifar10(tmp_path, "test")
    (tmp_path / "test_batch").write_bytes(pickle.dumps({b"labels": [1]}, protocol=2))
    with pytest.raises(InputError, match=r"test_batch.*missing field 'data'"):
        readers.read_cifar10(tmp_path, "test")
    rows = np.zeros((2, 3072), np.uint8)
    (tmp_path / "test_batch").write_bytes(pickle.dumps({b"data": rows, b"labels": [1]}, protocol=2))
    with pytest.raises(InputError, match=r"test_batch.*2 images.*'labels' holds 1 labels"):
        readers.read_cifar10(tmp_path, "test")


def test_read_cifar10_not_found_lists_places(tmp_path: Path) -> None:
    with pytest.raises(InputError) as err:
        readers.read_cifar10(tmp_path, "train")
    msg = str(err.value)
    assert str(tmp_path / "cifar-10-batches-py") in msg and "cifar10_train_jpeg.npz" in msg


def test_read_cifar10_jpeg_npz_matches_pillow_and_order(tmp_path: Path) -> None:
    from PIL import Image

    y = fakes.labels(6, seed=4)
    ramp = np.arange(32)[:, None] * 3 + np.arange(32)[None, :] * 2  # smooth images: JPEG stays close
    x = np.stack([np.stack([ramp + 10 * i + 20 * c for c in range(3)], -1) for i in range(6)]).astype(
        np.uint8
    )
    encoded = fakes.jpeg_encode(x)
    fakes.write_jpeg_npz(tmp_path / "cifar10_test_jpeg.npz", encoded, y, CIFAR10_NAMES)
    images, labels, names = readers.read_cifar10(tmp_path, "test")
    expected = np.stack([np.asarray(Image.open(io.BytesIO(e)).convert("RGB")) for e in encoded])
    np.testing.assert_array_equal(images, expected)
    np.testing.assert_array_equal(labels, y)
    assert images.shape == (6, 32, 32, 3) and labels.dtype == np.int64 and names == CIFAR10_NAMES
    assert np.abs(images.astype(int) - x).mean() < 3  # lossy, but the same pictures in the same order


def test_read_cifar10_prefers_lossless_batches_over_jpeg(tmp_path: Path) -> None:
    batches = _fake_cifar10(tmp_path / "cifar-10-batches-py")
    fakes.write_jpeg_npz(tmp_path / "cifar10_test_jpeg.npz", fakes.jpeg_encode(fakes.images(1, (32, 32, 3))),
                         fakes.labels(1), CIFAR10_NAMES)  # fmt: skip
    images, _, _ = readers.read_cifar10(tmp_path, "test")
    np.testing.assert_array_equal(images, batches["test_batch"][0])


def test_jpeg_npz_errors(tmp_path: Path) -> None:
    encoded = fakes.jpeg_encode(fakes.images(2, (32, 32, 3)))
    path = fakes.write_jpeg_npz(tmp_path / "a.npz", [encoded[0], b"garbage!"], fakes.labels(2), ["a"])
    with pytest.raises(InputError, match=r"a\.npz.*cannot decode JPEG image 1"):
        readers.read_jpeg_npz(path)
    fakes.write_npz(tmp_path / "b.npz", jpeg_bytes=np.zeros(4, np.uint8), offsets=np.array([0, 4]),
                    labels=np.array([0, 1]), class_names=np.array(["a"]))  # fmt: skip
    with pytest.raises(InputError, match=r"b\.npz.*'offsets' must have n\+1 = 3"):
        readers.read_jpeg_npz(tmp_path / "b.npz")
    fakes.write_npz(tmp_path / "c.npz", jpeg_bytes=np.zeros(4, np.uint8), offsets=np.array([0, 9]),
                    labels=np.array([0]), class_names=np.array(["a"]))  # fmt: skip
    with pytest.raises(InputError, match=r"c\.npz.*'offsets' must increase"):
        readers.read_jpeg_npz(tmp_path / "c.npz")


# ----------------------------------------------------------------------------------------------- CIFAR-100
@pytest.mark.parametrize("sub", [".", "cifar-100-python"])
def test_read_cifar100(tmp_path: Path, sub: str) -> None:
    splits = {
        s: (
            fakes.images(n, (32, 32, 3), seed=n),
            fakes.labels(n, 100, seed=n),
            fakes.labels(n, 20, seed=n + 1),
        )
        for s, n in (("train", 5), ("test", 3))
    }
    fakes.write_cifar100(tmp_path / sub, splits)
    for split, (x, fine, coarse) in splits.items():
        images, got_fine, got_coarse, names = readers.read_cifar100(tmp_path, split)
        np.testing.assert_array_equal(images, x)
        np.testing.assert_array_equal(got_fine, fine)
        np.testing.assert_array_equal(got_coarse, coarse)
        assert got_fine.dtype == got_coarse.dtype == np.int64 and images.dtype == np.uint8
        assert len(names) == 100 and names[7] == "fine7"


def test_read_cifar100_not_found(tmp_path: Path) -> None:
    (tmp_path / "cifar-100-python").mkdir()
    (tmp_path / "cifar-100-python" / "train").write_bytes(b"")
    with pytest.raises(InputError, match=r"CIFAR-100 train split \(train \+ meta\).*cifar-100-python"):
        readers.read_cifar100(tmp_path, "train")


# ----------------------------------------------------------------------------------------------- CIFAR-N
def test_read_cifar_n_npz_and_unknown_key(tmp_path: Path) -> None:
    clean, aggre = fakes.labels(50, seed=1), fakes.labels(50, seed=2)
    path = fakes.write_npz(tmp_path / "cifar10n_labels.npz", clean_label=clean, aggre_label=aggre)
    got = readers.read_cifar_n(path, "aggre_label")
    assert got.dtype == np.int64 and got.shape == (50,)
    np.testing.assert_array_equal(got, aggre)
    with pytest.raises(InputError) as err:
        readers.read_cifar_n(path, "worst_label")
    msg = str(err.value)
    assert "cifar10n_labels.npz" in msg and "'worst_label'" in msg and "clean_label, aggre_label" in msg


def test_read_cifar_n_upstream_torch_file(tmp_path: Path) -> None:
    import torch

    table = {
        "clean_label": fakes.labels(40, seed=3),
        "noisy_label": fakes.labels(40, 100, seed=4).astype(np.int64),
    }
    torch.save(table, tmp_path / "CIFAR-100_human.pt")
    got = readers.read_cifar_n(tmp_path / "CIFAR-100_human.pt", "noisy_label")
    np.testing.assert_array_equal(got, table["noisy_label"])
    assert got.dtype == np.int64
    with pytest.raises(InputError, match=r"CIFAR-100_human\.pt.*'fine'.*available: clean_label, noisy_label"):
        readers.read_cifar_n(tmp_path / "CIFAR-100_human.pt", "fine")
    (tmp_path / "broken.pt").write_bytes(b"junk")
    with pytest.raises(InputError, match=r"broken\.pt"):
        readers.read_cifar_n(tmp_path / "broken.pt", "clean_label")


# ----------------------------------------------------------------------------------------------- text
@pytest.mark.parametrize("gz", [False, True])
def test_read_noisy_agnews(tmp_path: Path, gz: bool) -> None:
    rows = [[2, 2, 'Stocks, bonds "rally"', 5], [0, 3, "multi\nline text", 1], [1, 1, "", 0]]
    path = fakes.write_csv(tmp_path / "n.csv.gz", ["label", "gt", "text", "group"], rows, gz=gz)
    texts, noisy, true = readers.read_noisy_agnews(path)
    assert texts == ['Stocks, bonds "rally"', "multi\nline text", ""]
    np.testing.assert_array_equal(noisy, [2, 0, 1])
    np.testing.assert_array_equal(true, [2, 3, 1])
    assert noisy.dtype == true.dtype == np.int64


def test_read_noisy_agnews_errors(tmp_path: Path) -> None:
    path = fakes.write_csv(tmp_path / "m.csv.gz", ["label", "text", "group"], [[1, "a", 0]], gz=True)
    with pytest.raises(InputError, match=r"m\.csv\.gz.*missing column 'gt'"):
        readers.read_noisy_agnews(path)
    path = fakes.write_csv(
        tmp_path / "v.csv", ["text", "gt", "label"], [["a", 1, 1], ["b", 2, "x"]], gz=False
    )
    with pytest.raises(InputError, match=r"v\.csv' line 3: 'label' must be an integer; got 'x'"):
        readers.read_noisy_agnews(path)


@pytest.mark.parametrize("gz", [False, True])
def test_read_text_jsonl(tmp_path: Path, gz: bool) -> None:
    records = [{"index": 0, "label": 7, "text": "héllo"}, {"index": 1, "label": 0, "text": "b", "x": 1}]
    path = fakes.write_jsonl(tmp_path / "t.jsonl.gz", records, gz=gz, blank_lines=True)
    texts, labels = readers.read_text_jsonl(path)
    assert texts == ["héllo", "b"] and labels.dtype == np.int64
    np.testing.assert_array_equal(labels, [7, 0])
    texts, labels = readers.read_text_jsonl(path, text_key="text", label_key="index")
    np.testing.assert_array_equal(labels, [0, 1])


def test_label_names_come_from_the_data(tmp_path: Path) -> None:
    records = [{"text": "a", "label": 2, "label_name": "sci.space"}, {"text": "b", "label": 0, "label_name": "alt"}]
    path = fakes.write_jsonl(tmp_path / "n.jsonl", records, gz=False)
    assert readers.read_label_names(path) == ["alt", "1", "sci.space"]  # label 1 never named: its number
    assert readers.read_label_names(path, label_key="index") is None
    records.append({"text": "c", "label": 2, "label_name": "sci.med"})
    path = fakes.write_jsonl(tmp_path / "m.jsonl", records, gz=False)
    with pytest.raises(InputError, match=r"m\.jsonl' line 3: label 2 is named 'sci.med' here but 'sci.space'"):
        readers.read_label_names(path)


def test_read_text_jsonl_errors(tmp_path: Path) -> None:
    path = fakes.write_jsonl(tmp_path / "k.jsonl", [{"text": "a", "label": 1}, {"text": "b"}], gz=False)
    with pytest.raises(InputError, match=r"k\.jsonl' line 2: missing key 'label'"):
        readers.read_text_jsonl(path)
    path = fakes.write_jsonl(tmp_path / "s.jsonl", [{"text": "a", "label": "pos"}], gz=True)
    with pytest.raises(InputError, match=r"s\.jsonl' line 1: 'label' must be an integer; got 'pos'"):
        readers.read_text_jsonl(path)
    (tmp_path / "j.jsonl").write_text('{"text": "a", "label": 1}\n{oops\n')
    with pytest.raises(InputError, match=r"j\.jsonl' line 2: invalid JSON"):
        readers.read_text_jsonl(tmp_path / "j.jsonl")


# ----------------------------------------------------------------------------------------------- real data
MNIST_TEST = SHARED / "mnist" / "mnist_test.npz"
CIFAR10_TEST = SHARED / "cifar10_jpeg" / "cifar10_test_jpeg.npz"
CIFAR10N = SHARED / "cifar_n" / "cifar10n_labels.npz"
CIFAR100N = SHARED / "cifar_n" / "cifar100n_labels.npz"
AGNEWS = SHARED / "noisy_agnews" / "noisyagnews_val10k_mid.csv.gz"
NEWS20 = SHARED / "20news" / "20news_test.jsonl.gz"


@pytest.mark.skipif(not MNIST_TEST.is_file(), reason=f"{MNIST_TEST} absent")
def test_real_mnist_test_npz() -> None:
    images, labels = readers.read_mnist_like(MNIST_TEST.parent, "test")
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10000,) and set(np.unique(labels)) == set(range(10))


@pytest.mark.skipif(not CIFAR10_TEST.is_file(), reason=f"{CIFAR10_TEST} absent")
def test_real_cifar10_jpeg_test_split() -> None:
    images, labels, names = readers.read_cifar10(CIFAR10_TEST.parent, "test")
    assert images.shape == (10000, 32, 32, 3) and images.dtype == np.uint8
    with np.load(CIFAR10_TEST) as z:
        np.testing.assert_array_equal(labels, z["labels"])
    # The official test_batch starts cat, ship, ship, airplane, frog, frog, automobile, frog, cat, automobile.
    np.testing.assert_array_equal(labels[:10], [3, 8, 8, 0, 6, 6, 1, 6, 3, 1])
    assert names == CIFAR10_NAMES and 80 < images.mean() < 160


@pytest.mark.skipif(not CIFAR10N.is_file(), reason=f"{CIFAR10N} absent")
def test_real_cifar10n_aggre_noise_rate() -> None:
    clean = readers.read_cifar_n(CIFAR10N, "clean_label")
    aggre = readers.read_cifar_n(CIFAR10N, "aggre_label")
    assert clean.shape == aggre.shape == (50000,)
    assert abs((aggre != clean).mean() * 100 - 9.01) <= 0.01


@pytest.mark.skipif(not CIFAR100N.is_file(), reason=f"{CIFAR100N} absent")
def test_real_cifar100n_noise_rate() -> None:
    clean, noisy = (
        readers.read_cifar_n(CIFAR100N, "clean_label"),
        readers.read_cifar_n(CIFAR100N, "noisy_label"),
    )
    assert abs((noisy != clean).mean() * 100 - 40.20) <= 0.01 and clean.max() == 99


@pytest.mark.skipif(not AGNEWS.is_file(), reason=f"{AGNEWS} absent")
def test_real_noisy_agnews() -> None:
    texts, noisy, true = readers.read_noisy_agnews(AGNEWS)
    assert len(texts) == len(noisy) == len(true) == 10000
    assert abs((noisy != true).mean() * 100 - 19.75) <= 0.01 and set(np.unique(true)) == {0, 1, 2, 3}


@pytest.mark.skipif(not NEWS20.is_file(), reason=f"{NEWS20} absent")
def test_real_20news_jsonl() -> None:
    texts, labels = readers.read_text_jsonl(NEWS20)
    assert len(texts) == len(labels) == 7532 and labels.max() == 19
    assert "Bonneville" in texts[0] and labels[0] == 7
    names = readers.read_label_names(NEWS20)
    assert names is not None and len(names) == 20 and names[7] == "rec.autos"
