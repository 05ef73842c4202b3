"""Process-level memory settings for training on CPU."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

_M_TRIM_THRESHOLD, _M_TOP_PAD = -1, -2  # glibc <malloc.h>


def keep_freed_heap(trim_threshold: int = 1 << 30, top_pad: int = 256 << 20) -> bool:
    """Stop glibc from handing freed heap memory back to the OS after every training step.

    Each step allocates and frees the activations; by default glibc trims the heap top once more than
    128 KiB is free, so the next step page-faults the same memory in again. Keeping up to
    ``trim_threshold`` bytes free (and growing the heap by ``top_pad`` at a time) removes that churn: a
    two-network small-CNN step on 2 CPU threads went from 2.5× to 2.05× a one-network step, and one
    network's step is unchanged (``docs/benchmarks.md``). The cost is up to ``trim_threshold`` of freed
    memory kept by the process.

    Does nothing (returns False) off glibc or when ``ROBUSTLABELS_KEEP_FREED_HEAP=0``.
    """
    if os.environ.get("ROBUSTLABELS_KEEP_FREED_HEAP", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl has no mallopt)
        return False
    return bool(mallopt(_M_TRIM_THRESHOLD, trim_threshold)) and bool(mallopt(_M_TOP_PAD, top_pad))
