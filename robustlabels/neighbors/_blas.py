"""Choose OpenBLAS's kernel for faiss-cpu before faiss is first imported.

faiss-cpu's exact search (``IndexFlat*`` with many queries) is a matrix product in its bundled OpenBLAS.
OpenBLAS picks its kernel once, when the library loads, from ``OPENBLAS_CORETYPE`` or from CPU detection.
On AVX-512 machines we ask for the ``SkylakeX`` kernel unless the user has set ``OPENBLAS_CORETYPE``
themselves: a user's value is never overridden. To get the fast kernel while some other tool (a cluster
profile, a container image) sets ``OPENBLAS_CORETYPE=Haswell``, launch with ``OPENBLAS_CORETYPE=SkylakeX``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping
from pathlib import Path

ENV_VAR = "OPENBLAS_CORETYPE"
AVX512_FLAGS = frozenset({"avx512f", "avx512bw", "avx512vl"})


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> frozenset[str]:
    """Return the CPU feature flags listed in ``cpuinfo`` (empty when the file cannot be read)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def configure_openblas(
    environ: MutableMapping[str, str] | None = None, *, cpuinfo: str | Path = "/proc/cpuinfo"
) -> str | None:
    """Set ``OPENBLAS_CORETYPE=SkylakeX`` on AVX-512 CPUs unless the user already chose a kernel.

    Must run before the first ``import faiss`` (OpenBLAS reads the variable only when it loads); once faiss
    is imported this does nothing. Returns the kernel name in effect after the call, or ``None`` when
    OpenBLAS is left to its own CPU detection.
    """
    env = os.environ if environ is None else environ
    if ENV_VAR in env:
        return env[ENV_VAR]
    if "faiss" in sys.modules:
        return None
    if AVX512_FLAGS <= cpu_flags(cpuinfo):
        env[ENV_VAR] = "SkylakeX"
        return "SkylakeX"
    return None
