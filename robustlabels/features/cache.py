"""What the text and image encoders share: the on-disk embedding cache and the thread budget of an encoding.

:func:`cached_array` reads ``<folder>/<key>.npy`` or computes and writes it, once across processes (an
inter-process lock), atomically; a damaged file is recomputed with a warning, an unwritable folder costs a
recompute next time, not the run.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import numpy as np

from robustlabels.io import atomic_save_npy, atomic_write_bytes

T = TypeVar("T")

CACHE_ENV = "ROBUSTLABELS_CACHE"


def default_cache_dir() -> Path:
    """``$ROBUSTLABELS_CACHE/embeddings`` when the variable is set, else ``~/.cache/robustlabels/embeddings``."""
    base = os.environ.get(CACHE_ENV)
    root = Path(base).expanduser() if base else Path.home() / ".cache" / "robustlabels"
    return root / "embeddings"


def read_cached(path: Path, n: int) -> np.ndarray | None:
    """The cached ``(n, D)`` finite float32 array at ``path``; ``None`` when absent, or (with a warning) damaged."""
    if not path.is_file():
        return None
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        warnings.warn(f"embedding cache {str(path)!r} is unreadable ({err}); recomputing it", stacklevel=3)
        return None
    if array.ndim != 2 or array.shape[0] != n or array.dtype != np.float32 or not np.isfinite(array).all():
        warnings.warn(f"embedding cache {str(path)!r} holds {array.dtype} {array.shape}, not ({n}, D) finite "
                      "float32; recomputing it", stacklevel=3)  # fmt: skip
        return None
    return array


_HELD: set[Path] = set()  # cache folders this process holds the lock of (the lock is re-entrant per process)


@contextlib.contextmanager
def cache_lock(folder: Path) -> Iterator[None]:
    """Hold an inter-process ``flock`` on the cache folder while inputs are encoded, so that runs started together
    (an experiment suite's parallel cells) encode the same inputs once: the others wait, then read the cache.
    Re-entrant within a process (a cached value computed from another cached value: a second ``flock`` on a new
    descriptor of the same folder would wait for itself). Without ``fcntl`` (Windows), a usable folder or ``flock``
    support, it goes on unlocked."""
    key = folder.expanduser().absolute()
    if key in _HELD:
        yield
        return
    fd: int | None = None
    try:
        import fcntl

        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder, os.O_RDONLY)
        fcntl.flock(fd, fcntl.LOCK_EX)
    except (ImportError, OSError):
        if fd is not None:
            os.close(fd)
            fd = None
    _HELD.add(key)
    try:
        yield
    finally:
        _HELD.discard(key)
        if fd is not None:
            os.close(fd)  # releases the lock


def read_or_compute(folder: Path, path: Path, read: Callable[[], T | None], compute: Callable[[], T],
                    write: Callable[[T], object], *, what: str) -> T:
    """``read()`` when it finds a usable file at ``path``, else ``compute()`` under :func:`cache_lock` (re-reading
    first: another process may have written it while this one waited), then ``write`` it for next time."""
    cached = read()
    if cached is not None:
        return cached
    with cache_lock(folder):
        cached = read()
        if cached is not None:
            return cached
        value = compute()
        try:
            write(value)
        except OSError as err:  # a read-only or full cache folder costs a recompute next time, not the run
            warnings.warn(f"could not cache {what} in {str(folder)!r}: {err}", stacklevel=3)
    return value


def cached_array(folder: Path, key: str, n: int, compute: Callable[[], np.ndarray], *, what: str) -> np.ndarray:
    """``<folder>/<key>.npy`` when it holds ``n`` rows, else ``compute()`` (``(n, D)``), cached for next time.

    Raises:
        RuntimeError: ``compute`` returned another number of rows (``what`` names the inputs).
    """
    path = folder / f"{key}.npy"

    def computed() -> np.ndarray:
        array = np.ascontiguousarray(compute(), dtype=np.float32)
        if array.ndim != 2 or array.shape[0] != n:
            raise RuntimeError(f"encoder returned shape {array.shape} for {n} {what}")
        return array

    return read_or_compute(folder, path, lambda: read_cached(path, n), computed,
                           lambda array: atomic_save_npy(path, array), what=f"{what} embeddings")  # fmt: skip


def cached_npz(
    folder: Path, key: str, compute: Callable[[], dict[str, np.ndarray]], *, what: str
) -> dict[str, np.ndarray]:
    """``<folder>/<key>.npz`` (arrays by name, no pickles) when readable, else ``compute()``, cached for next time."""
    path = folder / f"{key}.npz"

    def read() -> dict[str, np.ndarray] | None:
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                return {name: z[name] for name in z.files}
        except (OSError, ValueError, zipfile.BadZipFile) as err:
            warnings.warn(f"cache {str(path)!r} is unreadable ({err}); recomputing it", stacklevel=4)
            return None

    def write(arrays: dict[str, np.ndarray]) -> None:
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)  # type: ignore[arg-type]  # numpy's stub takes the keywords for its own options
        atomic_write_bytes(path, buffer.getvalue())

    return read_or_compute(folder, path, read, compute, write, what=what)


@contextlib.contextmanager
def using_all_cores() -> Iterator[None]:
    """Let torch use every core this process may run on, for the block only (an encoding pass)."""
    import torch

    previous = torch.get_num_threads()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    torch.set_num_threads(max(1, cores))
    try:
        yield
    finally:
        torch.set_num_threads(previous)
