"""What the text and image encoders share: the on-disk embedding cache and the thread budget of an encoding.

:func:`cached_array` reads ``<folder>/<key>.npy`` or computes and writes it, once across processes (an
inter-process lock), atomically; a damaged file is recomputed with a warning, an unwritable folder costs a
recompute next time, not the run.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from robustlabels.io import atomic_save_npy

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


@contextlib.contextmanager
def cache_lock(folder: Path) -> Iterator[None]:
    """Hold an inter-process ``flock`` on the cache folder while inputs are encoded, so that runs started together
    (an experiment suite's parallel cells) encode the same inputs once: the others wait, then read the cache.
    Without ``fcntl`` (Windows), a usable folder or ``flock`` support, it goes on unlocked."""
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
    try:
        yield
    finally:
        if fd is not None:
            os.close(fd)  # releases the lock


def cached_array(folder: Path, key: str, n: int, compute: Callable[[], np.ndarray], *, what: str) -> np.ndarray:
    """``<folder>/<key>.npy`` when it holds ``n`` rows, else ``compute()`` (``(n, D)``), cached for next time.

    Raises:
        RuntimeError: ``compute`` returned another number of rows (``what`` names the inputs).
    """
    path = folder / f"{key}.npy"
    cached = read_cached(path, n)
    if cached is not None:
        return cached
    with cache_lock(folder):
        cached = read_cached(path, n)  # another process may have written it while we waited
        if cached is not None:
            return cached
        array = np.ascontiguousarray(compute(), dtype=np.float32)
        if array.ndim != 2 or array.shape[0] != n:
            raise RuntimeError(f"encoder returned shape {array.shape} for {n} {what}")
        try:
            atomic_save_npy(path, array)
        except OSError as err:  # a read-only or full cache folder costs a recompute next time, not the run
            warnings.warn(f"could not cache {what} embeddings in {str(folder)!r}: {err}", stacklevel=3)
    return array


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
