"""Read datasets in their usual upstream layouts into numpy arrays.

Every function here is pure: it reads files and returns fresh numpy arrays (native byte order, writable),
and raises :class:`~robustlabels.errors.InputError` with one line naming the file and the value when a file
is missing or malformed. Nothing here downloads anything.

Layouts understood:

* MNIST-like IDX files (``train-images-idx3-ubyte[.gz]`` ...) in ``root``, ``root/raw`` or the torchvision
  layout ``root/MNIST/raw`` / ``root/FashionMNIST/raw``; or one ``mnist_{split}.npz`` (``images``,
  ``labels``) in ``root``.
* CIFAR-10 ``cifar-10-batches-py`` and CIFAR-100 ``cifar-100-python`` python pickles, read with a
  restricted unpickler that only accepts the numpy globals those files contain; or the pickle-free
  ``cifar10_{split}_jpeg.npz`` (JPEG bytes + offsets) of ``shared/data``.
* CIFAR-N label files (``cifar10n_labels.npz`` or upstream ``CIFAR-10_human.pt``), NoisyAG-News CSVs and
  JSON-lines text files, each optionally gzip-compressed.
* A user's own images: a folder with one sub-folder per class, or an ``.npz`` with ``images`` and ``labels``;
  a user's labels: ``.npy`` / ``.csv``, or ``FILE.npz:KEY`` / ``FILE.pt:KEY`` (:func:`read_label_spec`).
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import json
import pickle
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

from robustlabels.errors import InputError, check_file
from robustlabels.io import read_labels, reading, sha256_of_file

SPLITS = ("train", "test")
GZIP_MAGIC = b"\x1f\x8b"
# IDX type code -> big-endian numpy dtype (http://yann.lecun.com/exdb/mnist/, "THE IDX FILE FORMAT").
IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
MNIST_STEMS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
CIFAR10_DIR = "cifar-10-batches-py"
CIFAR100_DIR = "cifar-100-python"
CIFAR10_BATCHES = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
AGNEWS_COLUMNS = ("label", "gt", "text")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


# ----------------------------------------------------------------------------------------------- helpers
def check_split(split: str) -> str:
    """Return ``split`` unchanged; InputError unless it is "train" or "test"."""
    if split not in SPLITS:
        raise InputError(f"`split` must be one of {', '.join(SPLITS)}; got {split!r}")
    return split


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == GZIP_MAGIC


def _read_bytes(path: Path) -> bytes:
    """All bytes of ``path``, gunzipped when the file starts with the gzip magic (whatever its suffix)."""
    if not _is_gzip(path):
        return path.read_bytes()
    try:
        with gzip.open(path, "rb") as f:
            return f.read()
    except (OSError, EOFError, zlib.error) as err:
        raise InputError(f"{str(path)!r}: corrupt or truncated gzip file ({err})") from err


def _open_text(path: Path) -> IO[str]:
    """Open ``path`` for reading text (UTF-8), transparently gunzipping it."""
    if _is_gzip(path):
        return gzip.open(path, "rt", encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def _npz_fields(path: Path, fields: Sequence[str]) -> dict[str, np.ndarray]:
    """Load ``fields`` from an ``.npz`` without pickles; InputError naming a missing field."""
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [f for f in fields if f not in z.files]
            if missing:
                raise InputError(f"{str(path)!r}: missing field {missing[0]!r} (has: {', '.join(z.files)})")
            return {f: z[f] for f in fields}
    except (OSError, ValueError, zlib.error) as err:
        if isinstance(err, InputError):
            raise
        raise InputError(f"{str(path)!r}: not a readable .npz file ({err})") from err


def _as_labels(values: Any, source: str) -> np.ndarray:
    """``values`` as a 1-D int64 label array; InputError naming ``source`` otherwise."""
    arr = np.asarray(values)
    if arr.ndim != 1 or not (np.issubdtype(arr.dtype, np.integer) or arr.size == 0):
        raise InputError(f"{source}: labels must be a 1-D integer array; got {arr.dtype} {arr.shape}")
    if arr.size and arr.min() < 0:
        raise InputError(f"{source}: labels must be >= 0; got {int(arr.min())}")
    return arr.astype(np.int64)


def _check_lengths(images: np.ndarray, labels: np.ndarray, img_src: str, lab_src: str) -> None:
    if len(images) != len(labels):
        raise InputError(f"{img_src} holds {len(images)} images but {lab_src} holds {len(labels)} labels")


# ----------------------------------------------------------------------------------------------- IDX
def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (the MNIST format), raw or gzip-compressed.

    The header is two zero bytes, a type code (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
    0x0D float32, 0x0E float64), the number of dimensions ``d``, then ``d`` big-endian uint32 sizes;
    the data follow, big-endian, in C order.

    Args:
        path: an IDX file, e.g. ``train-images-idx3-ubyte`` or ``train-images-idx3-ubyte.gz``.

    Returns:
        The array, shape ``(d0, ..., d_{d-1})``, in native byte order (uint8 for MNIST files).

    Raises:
        InputError: the file is missing, has a bad magic number, or is truncated / too long.
    """
    p = check_file(path, what="IDX file")
    data = _read_bytes(p)
    if len(data) < 4 or data[:2] != b"\x00\x00" or data[2] not in IDX_DTYPES:
        raise InputError(f"{str(p)!r}: not an IDX file (magic bytes {data[:4].hex() or 'none'})")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise InputError(f"{str(p)!r}: truncated IDX header ({len(data)} bytes, need {header})")
    shape = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
    dtype = np.dtype(IDX_DTYPES[data[2]])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) - header != expected:
        what = "truncated" if len(data) - header < expected else "too long"
        raise InputError(
            f"{str(p)!r}: IDX file {what}: shape {shape} needs {expected} data bytes; "
            f"found {len(data) - header}"
        )
    arr = np.frombuffer(data, dtype, count=int(np.prod(shape, dtype=np.int64)), offset=header)
    return arr.reshape(shape).astype(dtype.newbyteorder("="))


# ----------------------------------------------------------------------------------------------- MNIST
def mnist_search_dirs(root: str | Path, *, prefix_dirs: Sequence[str] = ("MNIST",)) -> list[Path]:
    """The folders searched for MNIST-like IDX files: ``root``, ``root/raw``, ``root/<prefix>/raw``."""
    r = Path(root).expanduser()
    return [r, r / "raw", *(r / d / "raw" for d in prefix_dirs)]


def _find_idx(folder: Path, stem: str) -> Path | None:
    # Accept the canonical dash name and the common dotted variant, uncompressed first (faster to read).
    dotted = stem.replace("-idx", ".idx")
    for name in (stem, dotted, stem + ".gz", dotted + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def find_mnist_files(
    root: str | Path, split: str, *, prefix_dirs: Sequence[str] = ("MNIST",), npz_prefix: str = "mnist"
) -> tuple[Path, ...] | None:
    """Locate one split of an MNIST-like dataset under ``root``; ``None`` when it is not there.

    Searches :func:`mnist_search_dirs` in order for the images/labels IDX pair (``train-*`` for "train",
    ``t10k-*`` for "test", raw or ``.gz``), then ``root/<npz_prefix>_<split>.npz``.

    Args:
        root: a dataset folder or a torchvision root (holding ``MNIST/raw``, ``FashionMNIST/raw``).
        split: "train" or "test".
        prefix_dirs: torchvision class folders to look into, e.g. ``("FashionMNIST",)``.
        npz_prefix: stem of the single-file ``.npz`` alternative.

    Returns:
        ``(images_idx, labels_idx)`` or ``(npz,)``; ``None`` when nothing matches.
    """
    img_stem, lab_stem = MNIST_STEMS[check_split(split)]
    for folder in mnist_search_dirs(root, prefix_dirs=prefix_dirs):
        images, labels = _find_idx(folder, img_stem), _find_idx(folder, lab_stem)
        if images is not None and labels is not None:
            return images, labels
    npz = Path(root).expanduser() / f"{npz_prefix}_{split}.npz"
    return (npz,) if npz.is_file() else None


def read_mnist_like(
    root: str | Path, split: str, *, folder_names: Sequence[str] = ("MNIST",), npz_prefix: str = "mnist"
) -> tuple[np.ndarray, np.ndarray]:
    """Read one split of MNIST / Fashion-MNIST (any MNIST-like IDX dataset) found under ``root``.

    Args:
        root: see :func:`find_mnist_files`.
        split: "train" or "test".
        folder_names: torchvision class folders (``("FashionMNIST",)`` for Fashion-MNIST).
        npz_prefix: stem of the single-file ``<npz_prefix>_<split>.npz`` alternative.

    Returns:
        ``images`` uint8 ``(N, 28, 28)`` and ``labels`` int64 ``(N,)``, in file order.

    Raises:
        InputError: nothing found (the message lists the places searched), images and labels differ in
            length, or the files are malformed.
    """
    found = find_mnist_files(root, split, prefix_dirs=folder_names, npz_prefix=npz_prefix)
    if found is None:
        places = [str(d) for d in mnist_search_dirs(root, prefix_dirs=folder_names)]
        places.append(str(Path(root).expanduser() / f"{npz_prefix}_{split}.npz"))
        stems = " + ".join(s + "[.gz]" for s in MNIST_STEMS[split])
        raise InputError(f"no {split} split ({stems}) found; searched: {', '.join(places)}")
    img_src, lab_src = repr(str(found[0])), repr(str(found[-1]))
    if len(found) == 1:
        fields = _npz_fields(found[0], ("images", "labels"))
        images, labels = fields["images"], fields["labels"]
    else:
        images, labels = read_idx(found[0]), read_idx(found[1])
    if images.ndim != 3 or images.dtype != np.uint8:
        raise InputError(f"{img_src}: images must be uint8 (N, H, W); got {images.dtype} {images.shape}")
    labels = _as_labels(labels, lab_src)
    _check_lengths(images, labels, img_src, lab_src)
    return images, labels


# ----------------------------------------------------------------------------------------------- CIFAR
# The CIFAR python batches are pickles. Only the globals needed to rebuild arrays (and bytes, which a
# Python 3 protocol-2 pickle writes as _codecs.encode) are allowed, so a tampered file cannot run code.
# The numpy ones are looked up from numpy itself (numpy.core vs numpy._core differ across versions).
_SAFE_PICKLE_GLOBALS: dict[str, Any] = {
    "_reconstruct": np.zeros(1).__reduce__()[0],
    "_frombuffer": np.zeros(1).__reduce_ex__(5)[0],
    "scalar": np.float64(0).__reduce__()[0],
    "ndarray": np.ndarray,
    "dtype": np.dtype,
}
_SAFE_CODECS_GLOBALS: dict[str, Any] = {"encode": codecs.encode}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that resolves only numpy's array-rebuilding globals (and bytes) and refuses the rest."""

    def find_class(self, module: str, name: str) -> Any:
        if module.split(".")[0] == "numpy" and name in _SAFE_PICKLE_GLOBALS:
            return _SAFE_PICKLE_GLOBALS[name]
        if module in ("_codecs", "codecs") and name in _SAFE_CODECS_GLOBALS:
            return _SAFE_CODECS_GLOBALS[name]
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")


def _load_cifar_pickle(path: Path) -> dict[str, Any]:
    """One CIFAR python pickle (a dict, bytes keys from Python 2) with its keys decoded to str."""
    p = check_file(path, what="CIFAR batch file")
    try:
        with open(p, "rb") as f:
            obj = _NumpyOnlyUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as err:
        raise InputError(f"{str(p)!r}: not a CIFAR python batch ({err})") from err
    if not isinstance(obj, dict):
        raise InputError(f"{str(p)!r}: not a CIFAR python batch (holds a {type(obj).__name__}, not a dict)")
    return {(k.decode("latin-1") if isinstance(k, bytes) else str(k)): v for k, v in obj.items()}


def _field(table: dict[str, Any], key: str, path: Path) -> Any:
    if key not in table:
        raise InputError(f"{str(path)!r}: missing field {key!r} (has: {', '.join(sorted(table))})")
    return table[key]


def _names(values: Any) -> list[str]:
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values]


def _cifar_batch(path: Path, label_keys: Sequence[str]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Images ``(n, 32, 32, 3)`` HWC and one int64 ``(n,)`` array per ``label_keys`` from one batch."""
    batch = _load_cifar_pickle(path)
    data = np.asarray(_field(batch, "data", path))
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise InputError(f"{str(path)!r}: 'data' must be uint8 (n, 3072); got {data.dtype} {data.shape}")
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    labels = [_as_labels(_field(batch, k, path), f"{str(path)!r} field {k!r}") for k in label_keys]
    for lab, key in zip(labels, label_keys, strict=True):
        _check_lengths(images, lab, f"{str(path)!r} field 'data'", f"field {key!r}")
    return images, labels


def cifar_search_dirs(root: str | Path, folder: str) -> list[Path]:
    """Where a CIFAR python folder is looked for: ``root`` itself, then ``root/<folder>``."""
    r = Path(root).expanduser()
    return [r, r / folder]


def find_cifar10_files(root: str | Path, split: str) -> tuple[Path, ...] | None:
    """The CIFAR-10 batch files of ``split`` (in official order), or ``(jpeg_npz,)``; ``None`` if absent.

    Looks in ``root`` and ``root/cifar-10-batches-py`` for ``data_batch_1..5`` / ``test_batch``, then for
    ``root/cifar10_<split>_jpeg.npz``.
    """
    names = CIFAR10_BATCHES[check_split(split)]
    for folder in cifar_search_dirs(root, CIFAR10_DIR):
        if all((folder / n).is_file() for n in names):
            return tuple(folder / n for n in names)
    npz = Path(root).expanduser() / f"cifar10_{split}_jpeg.npz"
    return (npz,) if npz.is_file() else None


def read_cifar10(root: str | Path, split: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Read one CIFAR-10 split from ``cifar-10-batches-py`` (preferred: lossless) or the JPEG ``.npz``.

    Args:
        root: the ``cifar-10-batches-py`` folder, its parent (a torchvision root), or a folder holding
            ``cifar10_<split>_jpeg.npz``.
        split: "train" (50,000 images) or "test" (10,000).

    Returns:
        ``images`` uint8 ``(N, 32, 32, 3)`` HWC, ``labels`` int64 ``(N,)`` and the 10 class names, in the
        official python-batch order (data_batch_1..5, test_batch).

    Raises:
        InputError: nothing found (listing the places searched) or a malformed file.
    """
    found = find_cifar10_files(root, split)
    if found is None:
        places = [
            *cifar_search_dirs(root, CIFAR10_DIR),
            Path(root).expanduser() / f"cifar10_{split}_jpeg.npz",
        ]
        wanted = "/".join(CIFAR10_BATCHES[split][:1] + CIFAR10_BATCHES[split][-1:])
        raise InputError(
            f"no CIFAR-10 {split} split ({wanted}) found; searched: {', '.join(map(str, places))}"
        )
    if found[0].suffix == ".npz":
        return read_jpeg_npz(found[0])
    parts = [_cifar_batch(p, ("labels",)) for p in found]
    images = np.ascontiguousarray(np.concatenate([im for im, _ in parts]))
    labels = np.concatenate([lab[0] for _, lab in parts])
    meta_path = found[0].parent / "batches.meta"
    names = list(CIFAR10_CLASSES)
    if meta_path.is_file():
        names = _names(_field(_load_cifar_pickle(meta_path), "label_names", meta_path))
    return images, labels, names


def find_cifar100_files(root: str | Path, split: str) -> tuple[Path, Path] | None:
    """``(split_file, meta)`` from ``root/cifar-100-python`` or ``root`` itself; ``None`` if absent."""
    check_split(split)
    for folder in cifar_search_dirs(root, CIFAR100_DIR)[::-1]:
        if (folder / split).is_file() and (folder / "meta").is_file():
            return folder / split, folder / "meta"
    return None


def read_cifar100(root: str | Path, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Read one CIFAR-100 split from the upstream ``cifar-100-python`` folder (``train``, ``test``, ``meta``).

    Args:
        root: the ``cifar-100-python`` folder or its parent (a torchvision root).
        split: "train" (50,000 images) or "test" (10,000).

    Returns:
        ``images`` uint8 ``(N, 32, 32, 3)`` HWC, ``fine_labels`` int64 ``(N,)`` (0..99), ``coarse_labels``
        int64 ``(N,)`` (0..19) and the 100 fine class names, in file order.

    Raises:
        InputError: nothing found (listing the places searched) or a malformed file.
    """
    found = find_cifar100_files(root, split)
    if found is None:
        places = ", ".join(str(d) for d in cifar_search_dirs(root, CIFAR100_DIR)[::-1])
        raise InputError(f"no CIFAR-100 {split} split ({split} + meta) found; searched: {places}")
    images, (fine, coarse) = _cifar_batch(found[0], ("fine_labels", "coarse_labels"))
    names = _names(_field(_load_cifar_pickle(found[1]), "fine_label_names", found[1]))
    return np.ascontiguousarray(images), fine, coarse, names


# ----------------------------------------------------------------------------------------------- JPEG npz
def _check_offsets(offsets: np.ndarray, n_bytes: int, n_labels: int, path: Path) -> list[int]:
    if offsets.ndim != 1 or len(offsets) != n_labels + 1:
        raise InputError(
            f"{str(path)!r}: 'offsets' must have n+1 = {n_labels + 1} entries; got {offsets.shape}"
        )
    if len(offsets) and (offsets[0] < 0 or offsets[-1] > n_bytes or np.any(np.diff(offsets) <= 0)):
        raise InputError(
            f"{str(path)!r}: 'offsets' must increase from >= 0 to <= {n_bytes} (len of 'jpeg_bytes'); "
            f"got {offsets[0]}..{offsets[-1]}"
        )
    return [int(o) for o in offsets]


def decode_jpegs(jpeg_bytes: np.ndarray, offsets: Sequence[int], *, source: str = "<array>") -> np.ndarray:
    """Decode the JPEG images stored end to end in ``jpeg_bytes`` with Pillow.

    Serial on purpose: each 32x32 decode is mostly Python-side Pillow overhead that holds the GIL, and a
    ``ThreadPoolExecutor`` measured slower (50k CIFAR images on 2 cores: 4.6 s serial, 5.6-6.2 s with 2-8
    threads).

    Args:
        jpeg_bytes: ``(B,)`` uint8, all JPEG files concatenated.
        offsets: ``(N + 1,)``; image ``i`` is ``jpeg_bytes[offsets[i]:offsets[i + 1]]``.
        source: the file name used in error messages.

    Returns:
        ``(N, H, W, 3)`` uint8 RGB; every image must have the size of the first.
    """
    from PIL import Image  # Pillow is only needed here

    n = len(offsets) - 1
    view = np.ascontiguousarray(jpeg_bytes, dtype=np.uint8).data
    out: np.ndarray | None = None
    for i in range(n):
        try:
            im = Image.open(io.BytesIO(view[offsets[i] : offsets[i + 1]]), formats=("JPEG",))
            rgb = np.asarray(im if im.mode == "RGB" else im.convert("RGB"))
            if out is None:
                out = np.empty((n, *rgb.shape), np.uint8)
            out[i] = rgb
        except (OSError, ValueError) as err:
            raise InputError(f"{source}: cannot decode JPEG image {i} ({err})") from err
    return out if out is not None else np.empty((0, 32, 32, 3), np.uint8)


def read_jpeg_npz(path: str | Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Read a pickle-free JPEG ``.npz`` such as ``shared/data/cifar10_jpeg/cifar10_test_jpeg.npz``.

    Args:
        path: an ``.npz`` with ``jpeg_bytes`` (uint8), ``offsets`` (int64, N+1), ``labels`` (N,) and
            ``class_names``.

    Returns:
        ``images`` uint8 ``(N, H, W, 3)`` (lossy JPEG pixels), ``labels`` int64 ``(N,)``, class names;
        stored order kept.
    """
    p = check_file(path, what="JPEG npz")
    z = _npz_fields(p, ("jpeg_bytes", "offsets", "labels", "class_names"))
    labels = _as_labels(z["labels"], f"{str(p)!r} field 'labels'")
    offsets = _check_offsets(np.asarray(z["offsets"]), len(z["jpeg_bytes"]), len(labels), p)
    images = decode_jpegs(z["jpeg_bytes"], offsets, source=repr(str(p)))
    return images, labels, _names(z["class_names"].tolist())


# ----------------------------------------------------------------------------------------------- CIFAR-N
def _load_torch_label_dict(path: Path) -> dict[str, Any]:
    import torch  # heavy: imported only for this file type

    # The upstream CIFAR-10_human.pt / CIFAR-100_human.pt (UCSC-REAL/cifar-10-100n) are torch.save'd dicts
    # of *numpy* arrays, which the safe weights_only=True loader refuses; reading them needs full
    # unpickling, so weights_only=False is used for this one file type and nowhere else. Prefer the
    # pickle-free cifar10n_labels.npz / cifar100n_labels.npz when you have them.
    try:
        obj = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # torch raises many types for a bad file; report them all the same way
        raise InputError(f"{str(path)!r}: not a readable torch file ({err})") from err
    if not isinstance(obj, dict):
        raise InputError(f"{str(path)!r}: expected a dict of label arrays; got {type(obj).__name__}")
    return {str(k): v for k, v in obj.items()}


def read_cifar_n(path: str | Path, key: str) -> np.ndarray:
    """Read one CIFAR-N label column (real human noisy labels for the 50k CIFAR training images).

    Args:
        path: ``cifar10n_labels.npz`` / ``cifar100n_labels.npz`` (pickle-free), or the upstream
            ``CIFAR-10_human.pt`` / ``CIFAR-100_human.pt``.
        key: e.g. ``clean_label``, ``aggre_label``, ``worse_label``, ``random_label1..3`` (CIFAR-10N);
            ``clean_label``, ``noisy_label``, ``clean_coarse_label``, ``noisy_coarse_label`` (CIFAR-100N).

    Returns:
        int64 ``(50000,)`` labels in python-batch order (the order of :func:`read_cifar10` "train").

    Raises:
        InputError: missing/unreadable file, or ``key`` not in it (the message lists the keys there).
    """
    p = check_file(path, what="CIFAR-N label file")
    if p.suffix == ".pt":
        table = _load_torch_label_dict(p)
    else:
        with reading(p, what="CIFAR-N label file", kind="a readable .npz archive"), np.load(p, allow_pickle=False) as z:
            table = {k: z[k] for k in z.files}
    if key not in table:
        raise InputError(f"{str(p)!r}: unknown CIFAR-N key {key!r}; available: {', '.join(table)}")
    return _as_labels(np.asarray(table[key]), f"{str(p)!r} key {key!r}")


# ----------------------------------------------------------------------------------------------- text
def _int_cell(value: Any, path: Path, line: int, column: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError) as err:
        raise InputError(f"{str(path)!r} line {line}: {column!r} must be an integer; got {value!r}") from err


def read_noisy_agnews(path: str | Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Read a NoisyAG-News CSV (``noisyagnews_val10k_mid.csv.gz``, ``agnews_test7600_clean.csv.gz``).

    Args:
        path: CSV, optionally gzip-compressed, with columns ``label`` (noisy), ``gt`` (true, 0-3), ``text``
            (``group`` and any other columns are ignored).

    Returns:
        ``texts`` (N strings), ``noisy`` int64 ``(N,)`` and ``true`` int64 ``(N,)``, in file order.

    Raises:
        InputError: missing file or column (named), a non-integer label, or unreadable data.
    """
    p = check_file(path, what="NoisyAG-News CSV")
    texts: list[str] = []
    noisy: list[int] = []
    true: list[int] = []
    try:
        with _open_text(p) as f:
            reader = csv.DictReader(f)
            columns = reader.fieldnames or []
            for col in AGNEWS_COLUMNS:
                if col not in columns:
                    raise InputError(f"{str(p)!r}: missing column {col!r} (columns: {', '.join(columns)})")
            for row in reader:
                texts.append(row["text"])
                noisy.append(_int_cell(row["label"], p, reader.line_num, "label"))
                true.append(_int_cell(row["gt"], p, reader.line_num, "gt"))
    except (OSError, EOFError, UnicodeDecodeError, csv.Error, zlib.error) as err:
        raise InputError(f"{str(p)!r}: unreadable CSV ({err})") from err
    src = repr(str(p))
    return texts, _as_labels(np.array(noisy, np.int64), src), _as_labels(np.array(true, np.int64), src)


def _iter_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    try:
        with _open_text(path) as f:
            for lineno, line in enumerate(f, start=1):
                if line.strip():
                    yield lineno, json.loads(line)
    except json.JSONDecodeError as err:
        raise InputError(f"{str(path)!r} line {lineno}: invalid JSON ({err.msg})") from err
    except (OSError, EOFError, UnicodeDecodeError, zlib.error) as err:
        raise InputError(f"{str(path)!r}: unreadable JSON-lines file ({err})") from err


def read_text_jsonl(
    path: str | Path, *, text_key: str = "text", label_key: str = "label"
) -> tuple[list[str], np.ndarray]:
    """Read a JSON-lines text dataset (``20news_test.jsonl.gz``, ``imdb_test.jsonl.gz``), optionally gzipped.

    Args:
        path: one JSON object per line; blank lines are skipped.
        text_key: the field holding the text.
        label_key: the field holding the integer label.

    Returns:
        ``texts`` (N strings) and ``labels`` int64 ``(N,)``, in file order.

    Raises:
        InputError: missing file, invalid JSON, a missing key or a non-integer label (file and line named).
    """
    p = check_file(path, what="JSON-lines file")
    texts: list[str] = []
    labels: list[int] = []
    for lineno, record in _iter_jsonl(p):
        for key in (text_key, label_key):
            if not isinstance(record, dict) or key not in record:
                raise InputError(f"{str(p)!r} line {lineno}: missing key {key!r}")
        label = record[label_key]
        if isinstance(label, bool) or not isinstance(label, int):
            raise InputError(f"{str(p)!r} line {lineno}: {label_key!r} must be an integer; got {label!r}")
        texts.append(str(record[text_key]))
        labels.append(label)
    return texts, _as_labels(np.array(labels, np.int64), repr(str(p)))


def read_label_names(path: str | Path, *, label_key: str = "label") -> list[str] | None:
    """Class names from a JSON-lines file's ``<label_key>_name`` field (20 Newsgroups' ``label_name``), indexed by
    label; ``None`` when no line has that field. A label never named gets its number.

    Raises:
        InputError: one label named two ways (file, line and both names).
    """
    p = check_file(path, what="JSON-lines file")
    name_key = f"{label_key}_name"
    names: dict[int, str] = {}
    for lineno, record in _iter_jsonl(p):
        if not isinstance(record, dict) or name_key not in record or not isinstance(record.get(label_key), int):
            continue
        label, name = record[label_key], str(record[name_key])
        if names.setdefault(label, name) != name:
            raise InputError(f"{str(p)!r} line {lineno}: label {label} is named {name!r} here but {names[label]!r} "
                             "before")  # fmt: skip
    if not names:
        return None
    return [names.get(c, str(c)) for c in range(max(names) + 1)]


# ----------------------------------------------------------------------------------------------- a user's own
def split_label_spec(spec: str) -> tuple[str, str]:
    """``(file, key)`` of a label spec ``FILE`` (key ``""``) or ``FILE:KEY`` (a path that exists wins)."""
    file, _, key = spec.rpartition(":") if ":" in spec and not Path(spec).exists() else (spec, "", "")
    return file, key


def read_label_spec(spec: str, *, what: str) -> tuple[np.ndarray, str, str]:
    """``(labels (N,) int64, file, sha256)`` from a ``.npy`` / ``.csv`` file or an ``FILE.npz:KEY`` /
    ``FILE.pt:KEY`` key (:func:`read_cifar_n`); ``what`` names the option in messages."""
    file, key = split_label_spec(spec)
    check_file(file, what=what)
    if not key and Path(file).suffix.lower() in (".npz", ".pt"):
        raise InputError(f"{what} {file!r}: name the array to read as {file}:KEY")
    with reading(file, what=what):
        labels = read_cifar_n(file, key) if key else read_labels(file)
        return labels.astype(np.int64), file, sha256_of_file(file)


def read_image_npz(path: Path, *, what: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``(images (N, H, W[, 3]) uint8, labels (N,), class names)`` from an ``.npz`` with ``images`` and
    ``labels`` (optional ``class_names``); ``what`` names the option in messages."""
    with reading(path, what=what, kind="a readable .npz archive"), np.load(path, allow_pickle=False) as z:
        missing = [k for k in ("images", "labels") if k not in z.files]
        if missing:
            raise InputError(f"{what} {str(path)!r}: missing array {missing[0]!r} (arrays: {', '.join(z.files)})")
        images, labels = z["images"], z["labels"]
        names = [str(n) for n in z["class_names"]] if "class_names" in z.files else []
    if images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[3] not in (1, 3)):
        raise InputError(f"{what} {str(path)!r}: 'images' must be (N, H, W) or (N, H, W, 3); got {images.shape}")
    if images.dtype != np.uint8:
        if images.size and (images.min() < 0 or images.max() > 255):
            raise InputError(f"{what} {str(path)!r}: 'images' must be uint8 (0..255); got {images.dtype}")
        images = images.astype(np.uint8)
    images = images[..., 0] if images.ndim == 4 and images.shape[3] == 1 else images
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.number) or np.any(labels != np.round(labels)):
        raise InputError(f"{what} {str(path)!r}: 'labels' must be a 1-D array of integer labels; got "
                         f"{labels.dtype} {labels.shape}")  # fmt: skip
    return images, labels.astype(np.int64), names


def read_image_folder(root: Path, *, what: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``(images, labels, class names)`` from ``root/<class name>/<image>``: classes sorted by name, images by
    path, each resized to the first one's size; ``what`` names the option in messages."""
    from PIL import Image

    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    files = [(f, c) for c, name in enumerate(classes) for f in sorted((root / name).rglob("*"))
             if f.suffix.lower() in IMAGE_SUFFIXES]  # fmt: skip
    if not files:
        raise InputError(f"{what} {str(root)!r}: no images found in class sub-folders (<class>/<image>.png)")
    images, size, mode = [], None, None
    for file, _ in files:
        try:
            with Image.open(file) as img:
                mode = mode or ("L" if img.mode in ("L", "1", "I;16") else "RGB")
                converted = img.convert(mode)
                size = size or converted.size
                images.append(np.asarray(converted.resize(size) if converted.size != size else converted,
                                         dtype=np.uint8))  # fmt: skip
        except OSError as err:
            raise InputError(f"{what} image {str(file)!r} is not readable: {err}") from None
    return np.stack(images), np.array([c for _, c in files], dtype=np.int64), classes
