"""File helpers shared by the command-line tools: atomic writes, output sets, label and matrix files, hashes,
checks.

Writes go to a temporary file in the target's directory and are moved into place with :func:`os.replace`,
so a reader sees either the old file or the complete new one, never a partial file. A command line that
writes several files that belong together (``inject``: labels and their manifest) writes them as one
:class:`robustlabels.output_set.OutputSet`: the set appears whole or not at all, also when the run is killed.
Reads of a user's file go through :func:`reading`, which turns whatever the read raises into one
:class:`InputError` line naming the file.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import uuid
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np

from robustlabels.errors import InputError, check_file

LABEL_SUFFIXES = (".npy", ".csv")
LABEL_COLUMNS = ("label", "noisy_label")
#: What reading a bad file raises: missing, a folder, no permission, I/O errors (OSError); empty or truncated
#: (EOFError); not UTF-8, malformed contents (ValueError, UnicodeDecodeError among them); corrupt archives.
READ_ERRORS = (OSError, EOFError, ValueError, zlib.error, csv.Error, zipfile.BadZipFile)


@contextmanager
def reading(path: str | Path, *, what: str = "file", kind: str = "readable") -> Iterator[None]:
    """Turn an error raised while reading ``path`` inside the block into an :class:`InputError`, one line:
    ``<what> '<path>' is not <kind>: <why>`` (``kind``: what the file should be, ``"a readable .npy array"``).
    An :class:`InputError` raised there already names the file and passes unchanged."""
    try:
        yield
    except InputError:
        raise
    except READ_ERRORS as error:
        raise InputError(f"{what} {str(path)!r} is not {kind}: {read_failure(error)}") from None


def read_failure(error: BaseException) -> str:
    """Why a read failed, in a few words: ``not UTF-8 text (byte 0xff at offset 11)``, ``Permission denied``..."""
    if isinstance(error, UnicodeDecodeError):
        return f"not UTF-8 text (byte 0x{error.object[error.start]:02x} at offset {error.start})"
    if isinstance(error, EOFError):
        return f"empty or truncated ({error})" if str(error) else "empty or truncated"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def missing_folders(folder: Path) -> list[Path]:
    """``folder`` and those of its parents that do not exist yet, deepest first: what creating it would create."""
    missing = []
    for candidate in (folder, *folder.parents):
        if os.path.lexists(candidate):
            break
        missing.append(candidate)
    return missing


def remove_empty_folders(folders: list[Path]) -> None:
    """Remove ``folders`` (deepest first, as :func:`missing_folders` lists them) up to the first that is not empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            break


def check_output_folder(out: Path, *, flag: str = "--out") -> None:
    """:class:`InputError` unless ``out`` is a folder, or can be made one, in which this process may write."""
    existing = out
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing == out and not out.is_dir():
        raise InputError(f"{flag} {str(out)!r} is a file, not a folder")
    if not existing.is_dir():
        raise InputError(f"{flag} {str(out)!r} cannot be made: {str(existing)!r} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"{flag} {str(out)!r}: cannot write in {str(existing)!r} (read-only or permission denied)")


@contextmanager
def atomic_open(path: str | Path, mode: str = "wb", **kwargs: Any) -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path`` for writing; on success it is fsynced and renamed onto ``path``.

    Parent directories are created. The temporary file has mode 0o666 (less the umask), like an ordinary
    ``open``, and is removed if anything fails, so ``path`` is either the old file or the complete new one.
    ``mode`` and ``kwargs`` are those of :func:`open` (``"wb"``, or ``"w"`` with ``encoding``/``newline``).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, mode, **kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        if error.errno is None or error.filename not in (None, str(temporary)):
            raise
        raise OSError(error.errno, error.strerror, str(target)) from error  # name the file, not the temporary
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_open`); return the path."""
    with atomic_open(path, "wb") as handle:
        handle.write(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` as UTF-8 to ``path`` atomically (no newline translation); return the path."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_save_npy(path: str | Path, array: np.ndarray) -> Path:
    """Save ``array`` in ``.npy`` format (no pickles) to ``path`` atomically; return the path."""
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array), allow_pickle=False)
    return atomic_write_bytes(path, buffer.getvalue())


def sha256_of_array(array: np.ndarray) -> str:
    """Hex SHA-256 of the array's C-order little-endian bytes (dtype and shape are not hashed).

    Cast first to make hashes comparable: ``sha256_of_array(labels.astype(np.int64))``.
    """
    array = np.asarray(array)
    little_endian = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
    return hashlib.sha256(little_endian.tobytes()).hexdigest()


def sha256_of_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_labels(path: str | Path) -> np.ndarray:
    """Read a ``(N,)`` int64 label array from a ``.npy`` or ``.csv`` file.

    ``.npy``: a 1-D integer array (integral floats such as ``3.0`` are accepted). ``.csv``: a header row,
    then one row per sample; the labels are the column named ``label``, else ``noisy_label``, else the only
    column besides ``index``. If an ``index`` column is present it must hold ``0..N-1`` once each, and the
    rows are ordered by it.

    Raises:
        InputError: one line naming the file (and the line and value, for bad entries).
    """
    file = check_file(path, what="labels file")
    if file.suffix.lower() not in LABEL_SUFFIXES:
        raise InputError(f"labels file {str(file)!r} must end in .npy or .csv; got {file.suffix!r}")
    with reading(file, what="labels file"):
        return _read_npy_labels(file) if file.suffix.lower() == ".npy" else _read_csv_labels(file)


def _read_npy_labels(file: Path) -> np.ndarray:
    array = load_npy(file, what="labels file")
    if array.ndim != 1:
        raise InputError(f"labels file {str(file)!r} must hold a 1-D array; got shape {array.shape}")
    if np.issubdtype(array.dtype, np.integer):
        return array.astype(np.int64)
    if not np.issubdtype(array.dtype, np.floating):
        raise InputError(f"labels file {str(file)!r} must hold integers; got dtype {array.dtype}")
    bad = np.flatnonzero(~np.isfinite(array) | (array != np.round(array)))
    if bad.size:
        position = bad[0]
        value = float(array[position])
        raise InputError(
            f"labels file {str(file)!r} has a non-integer value {value!r} at position {position}"
        )
    return array.astype(np.int64)


def load_npy(path: str | Path, *, what: str = "file", mmap: bool = False) -> np.ndarray:
    """Load a ``.npy`` array without pickles (memory-mapped if ``mmap``), or raise :class:`InputError`."""
    file = check_file(path, what=what)
    with reading(file, what=what, kind="a readable .npy array"):
        array: np.ndarray = np.load(file, allow_pickle=False, mmap_mode="r" if mmap else None)
    return array


def _read_csv_labels(file: Path) -> np.ndarray:
    name = str(file)
    with reading(file, what="labels file", kind="a readable UTF-8 CSV"):
        with open(file, newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.reader(handle))
    if not rows:
        raise InputError(f"labels file {name!r} is empty; expected a header row")
    header = [column.strip() for column in rows[0]]
    column = _label_column(header, name)
    columns = [column] + ([header.index("index")] if "index" in header else [])
    values: list[list[int]] = []
    for line_number, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue  # blank line
        if len(row) != len(header):
            raise InputError(
                f"labels file {name!r} line {line_number} has {len(row)} fields, not {len(header)}"
            )
        values.append([_parse_int(row[c], name, line_number, header[c]) for c in columns])
    table = np.array(values, dtype=np.int64).reshape(len(values), len(columns))
    if len(columns) == 1:
        return table[:, 0].copy()
    ordered: np.ndarray = table[_order_by_index(table[:, 1], name), 0]
    return ordered


def _label_column(header: list[str], name: str) -> int:
    for wanted in LABEL_COLUMNS:
        if wanted in header:
            return header.index(wanted)
    others = [i for i, column in enumerate(header) if column != "index"]
    if len(others) == 1:
        return others[0]
    raise InputError(
        f"labels file {name!r} has no `label` or `noisy_label` column (columns: {', '.join(header)})"
    )


def _parse_int(text: str, name: str, line_number: int, column: str) -> int:
    """Parse an integer, accepting integral floats like ``3.0``."""
    text = text.strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        number = float("nan")
    if not number.is_integer():
        raise InputError(f"labels file {name!r} line {line_number}: {column} {text!r} is not an integer")
    return int(number)


def _order_by_index(index: np.ndarray, name: str) -> np.ndarray:
    """Positions that sort rows by ``index``, which must hold each of ``0..N-1`` once."""
    outside = np.flatnonzero((index < 0) | (index >= index.size))
    if outside.size:
        raise InputError(
            f"labels file {name!r}: `index` value {index[outside[0]]} is outside 0..{index.size - 1}"
        )
    repeated = np.flatnonzero(np.bincount(index, minlength=index.size) > 1)
    if repeated.size:
        raise InputError(f"labels file {name!r}: `index` value {repeated[0]} appears more than once")
    return np.argsort(index)


def read_matrix(path: str | Path, *, what: str = "matrix file") -> np.ndarray:
    """Read a 2-D float64 matrix from ``.npy`` or from a ``.csv`` of numbers (no header); not validated.

    Raises:
        InputError: missing file, unsupported suffix, or unreadable contents.
    """
    file = check_file(path, what=what)
    suffix = file.suffix.lower()
    if suffix == ".npy":
        matrix = load_npy(file, what=what)
    elif suffix == ".csv":
        with reading(file, what=what, kind="a CSV of numbers"):
            matrix = np.loadtxt(file, delimiter=",", dtype=np.float64, ndmin=2)
    else:
        raise InputError(f"{what} {str(file)!r} must end in .npy or .csv; got {suffix!r}")
    try:
        return np.asarray(matrix, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{what} {str(file)!r} must hold numbers; got dtype {matrix.dtype}") from None
