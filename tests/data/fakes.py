"""Write small fake datasets in their upstream layouts (into a test's ``tmp_path``)."""

from __future__ import annotations

import csv
import gzip
import io
import json
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

IDX_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09, np.dtype(np.int16): 0x0B,
             np.dtype(np.int32): 0x0C, np.dtype(np.float32): 0x0D, np.dtype(np.float64): 0x0E}  # fmt: skip
MNIST_NAMES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def images(n: int, shape: Sequence[int], seed: int = 0) -> np.ndarray:
    """``(n, *shape)`` random uint8 images, seeded."""
    return np.random.default_rng(seed).integers(0, 256, size=(n, *shape), dtype=np.uint8)


def labels(n: int, num_classes: int = 10, seed: int = 0) -> np.ndarray:
    """``(n,)`` uint8 labels, seeded (uint8 like the upstream files)."""
    return np.random.default_rng(seed + 1).integers(0, num_classes, size=n).astype(np.uint8)


def _write(path: Path, data: bytes, gz: bool) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding of ``array``: magic (0, 0, type code, ndim), big-endian sizes, big-endian data."""
    header = bytes([0, 0, IDX_CODES[array.dtype], array.ndim]) + np.array(array.shape, ">u4").tobytes()
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(path: Path, array: np.ndarray, *, gz: bool = False) -> Path:
    """Write ``array`` as an IDX file (gzip-compressed when ``gz``; the caller picks the name)."""
    return _write(path, idx_bytes(array), gz)


def write_mnist(folder: Path, split: str, imgs: np.ndarray, labs: np.ndarray, *, gz: bool) -> Path:
    """Write the images/labels IDX pair of ``split`` into ``folder`` (``.gz`` names when ``gz``)."""
    img_name, lab_name = MNIST_NAMES[split]
    suffix = ".gz" if gz else ""
    write_idx(folder / (img_name + suffix), imgs, gz=gz)
    write_idx(folder / (lab_name + suffix), labs, gz=gz)
    return folder


def write_npz(path: Path, **arrays: np.ndarray) -> Path:
    """``np.savez`` into ``path``, creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return path


def _pickle(path: Path, obj: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj, protocol=2))  # protocol 2, bytes keys: like the Python 2 originals
    return path


def cifar_rows(imgs: np.ndarray) -> np.ndarray:
    """HWC ``(n, 32, 32, 3)`` images as CIFAR rows ``(n, 3072)``: the R plane, then G, then B."""
    return np.ascontiguousarray(imgs.transpose(0, 3, 1, 2).reshape(len(imgs), -1))


def write_cifar10(folder: Path, batches: dict[str, tuple[np.ndarray, np.ndarray]], names: list[str]) -> Path:
    """Write ``cifar-10-batches-py`` style pickles (``{batch name: (HWC images, labels)}``) + batches.meta."""
    for name, (imgs, labs) in batches.items():
        batch = {b"batch_label": name.encode(), b"labels": [int(v) for v in labs], b"data": cifar_rows(imgs),
                 b"filenames": [f"{name}_{i}.png".encode() for i in range(len(imgs))]}  # fmt: skip
        _pickle(folder / name, batch)
    meta = {b"label_names": [n.encode() for n in names], b"num_cases_per_batch": 10000, b"num_vis": 3072}
    _pickle(folder / "batches.meta", meta)
    return folder


def write_cifar100(folder: Path, splits: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]) -> Path:
    """Write ``cifar-100-python`` style ``train`` / ``test`` pickles (images, fine, coarse) + ``meta``."""
    for split, (imgs, fine, coarse) in splits.items():
        batch = {b"filenames": [b"x.png"] * len(imgs), b"batch_label": split.encode(),
                 b"fine_labels": [int(v) for v in fine], b"coarse_labels": [int(v) for v in coarse],
                 b"data": cifar_rows(imgs)}  # fmt: skip
        _pickle(folder / split, batch)
    meta = {b"fine_label_names": [f"fine{i}".encode() for i in range(100)],
            b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)]}  # fmt: skip
    _pickle(folder / "meta", meta)
    return folder


def jpeg_encode(imgs: np.ndarray, quality: int = 90) -> list[bytes]:
    """Encode each HWC uint8 image as a JPEG with Pillow."""
    from PIL import Image

    out = []
    for img in imgs:
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG", quality=quality)
        out.append(buf.getvalue())
    return out


def write_jpeg_npz(path: Path, encoded: list[bytes], labs: np.ndarray, names: list[str]) -> Path:
    """Write a JPEG npz like ``shared/data/cifar10_jpeg``: jpeg_bytes, offsets, labels, class_names."""
    offsets = np.concatenate([[0], np.cumsum([len(e) for e in encoded])]).astype(np.int64)
    jpeg_bytes = np.frombuffer(b"".join(encoded), np.uint8)
    return write_npz(path, jpeg_bytes=jpeg_bytes, offsets=offsets, labels=labs, class_names=np.array(names))


def write_csv(path: Path, header: list[str], rows: list[list[Any]], *, gz: bool) -> Path:
    """Write a CSV (gzip-compressed when ``gz``)."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    writer.writerows(rows)
    return _write(path, buf.getvalue().encode("utf-8"), gz)


def write_jsonl(path: Path, records: list[Any], *, gz: bool, blank_lines: bool = False) -> Path:
    """Write one JSON value a line (a blank line after each when ``blank_lines``)."""
    sep = "\n\n" if blank_lines else "\n"
    text = sep.join(json.dumps(r) for r in records) + "\n"
    return _write(path, text.encode("utf-8"), gz)
