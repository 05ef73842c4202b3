"""What ``index="auto"`` means, everywhere: one function, :func:`choose_index`, for every caller.

``"auto"`` is an exact ``Flat`` search below a size threshold and an IVF index above it:

- exact below :data:`EXACT_BELOW` points: 100,000 for a search made once (``purpose="search"``), 4,096 for
  one repeated every epoch (``purpose="refresh"``);
- above, on the faiss backend: ``IVF{4√N},Flat`` with FAISS's ``nprobe = max(16, nlist // 8)``;
- above, on the torch backend: ``IVF{√N}`` with ``nprobe = 6`` from 100,000 points, and ``IVF{√N / 4}``
  with ``nprobe = max(2, nlist // 16)`` below (which only a refresh reaches).

The sklearn backend is exact only. ``backend="auto"`` picks FAISS for exact search (as fast as the torch
oracle at 50k × 128 and 1.8× faster at 200k × 128, with less memory; ``docs/benchmarks.md``, "Exact
all-vs-all") and for every factory string but ``IVF{n}`` / ``IVF{n},Flat``, which run on the torch backend's
cluster-major IVF (3.8× faster than FAISS's IVF at 1M × 128 and 8.6× at 1M × 384, build included, at about
the same recall; "Approximate, N = 1,000,000" and "All-vs-all at N = 1,000,000, d = 384"). Explicit index
strings and ``nprobe`` are passed through unchanged.

Why two thresholds. A search made once (the audit's kNN, ``neighbors.build``) can afford exact search up to
100k points (13.8 s at 50k × 128) and keeps exact results there, which matters on weakly clustered features:
the rule's IVF reached recall@10 only 0.83 on a synthetic bank with little class structure. NCR's dataset pool
re-searches its bank every epoch, where exact search made NCR 1.89× CE per step against 1.24× with the torch
IVF at 20k (recall@10 0.974–0.988 on trained features at 20k and 54k; "Neighbour consistency (NCR) overhead").

Why the torch IVF changes shape at 100,000 points. ``√N / 4`` lists with ``nprobe = max(2, nlist // 16)`` is
what was measured on NCR's banks (20k: IVF35/2; 54k: IVF58/3); ``√N`` lists with ``nprobe = 6`` is what was
measured at 1M (IVF1000/6: recall@10 0.973–0.981, 129 s all-vs-all at 1M × 384). Past 100k the first rule
would scan about ten times more of the data per query (1M: IVF250 with nprobe 15 reads 6 % of the points,
IVF1000/6 0.6 %), so both purposes switch to the second there.

What this rule changed against the four rules it replaced (everything else is as before): NCR's bank from
100k points (before: ``√N / 4`` lists at every size); :func:`robustlabels.neighbors.build` with
``backend="torch", index="auto"`` from 100k points (before: always exact); and the audit's kNN with
``backend="auto"`` and an explicit index, where ``IVF{n}`` now always runs on torch (before: from 100k points
only) and ``Flat`` always on FAISS (before: on torch from 100k points).
"""

from __future__ import annotations

import math
import re
from typing import Literal, NamedTuple

from robustlabels.errors import InputError, check_choice
from robustlabels.neighbors.base import BACKENDS

PURPOSES = ("search", "refresh")
EXACT_BELOW = {"search": 100_000, "refresh": 4096}  # points; see the module docstring
TORCH_LARGE_FROM = 100_000  # points; the torch IVF's √N lists and nprobe 6 from here, √N / 4 below
TORCH_EXACT = ("auto", "Flat")
_IVF = re.compile(r"IVF(\d+)(,Flat)?")


class IndexChoice(NamedTuple):
    """What to build: ``backend`` (faiss, torch or sklearn), ``factory`` (the ``index`` string: ``"Flat"``,
    ``"IVF{n}"``, a faiss factory string) and ``nprobe`` (``None``: the index's own default, or no IVF index)."""

    backend: str
    factory: str
    nprobe: int | None


def parse_ivf(index: str) -> int | None:
    """``nlist`` of an ``"IVF{nlist}"`` or ``"IVF{nlist},Flat"`` string; ``None`` for any other string."""
    match = _IVF.fullmatch(index)
    return int(match.group(1)) if match else None


def default_nprobe(nlist: int) -> int:
    """Lists visited per query when ``nprobe`` is not given: FAISS wrapper's rule, ``max(16, nlist // 8)``."""
    return min(nlist, max(16, nlist // 8))


def check_index(index: str, backend: str) -> str:
    """Return ``index`` or raise :class:`InputError` when ``backend`` cannot build it (faiss checks its own)."""
    if not isinstance(index, str) or not index:
        raise InputError(f"`index` must be 'auto' or an index factory string; got {index!r}")
    if backend == "torch" and index not in TORCH_EXACT and parse_ivf(index) is None:
        raise InputError(f"`index` must be 'auto', 'Flat', 'IVF{{n}}' or 'IVF{{n}},Flat' with backend='torch' "
                         f"(other FAISS factory strings need backend='faiss'); got {index!r}")  # fmt: skip
    if backend == "sklearn" and index not in TORCH_EXACT:
        raise InputError(f"`index` must be 'auto' or 'Flat' with backend={backend!r} (exact only); got {index!r}")
    return index


def torch_ivf_size(num_points: int) -> tuple[int, int]:
    """``(nlist, nprobe)`` of the torch IVF that ``"auto"`` builds over ``num_points`` points."""
    if num_points >= TORCH_LARGE_FROM:
        return round(math.sqrt(num_points)), 6
    nlist = max(1, round(math.sqrt(num_points) / 4))
    return nlist, max(2, nlist // 16)


def choose_index(
    num_points: int,
    *,
    backend: str = "auto",
    index: str = "auto",
    nprobe: int | None = None,
    purpose: Literal["search", "refresh"] = "search",
) -> IndexChoice:
    """The index to build over ``num_points`` points (the rule is in the module docstring).

    Args:
        num_points: N, the points indexed (and, for all-vs-all, searched).
        backend: ``"faiss"``, ``"torch"``, ``"sklearn"`` or ``"auto"``.
        index: ``"auto"``, ``"Flat"``, or a factory string the backend accepts (:func:`check_index`).
        nprobe: IVF lists visited per query; ``None`` lets the rule (or the index) choose.
        purpose: ``"search"`` for a search made once, ``"refresh"`` for one repeated every epoch.

    Raises:
        InputError: one line naming the bad argument.
    """
    check_choice("backend", backend, ("auto", *BACKENDS))
    check_choice("purpose", purpose, PURPOSES)
    check_index(index, backend)
    if isinstance(num_points, bool) or not isinstance(num_points, int) or num_points < 0:
        raise InputError(f"`num_points` must be a non-negative integer; got {num_points!r}")
    if nprobe is not None and (isinstance(nprobe, bool) or not isinstance(nprobe, int) or nprobe < 1):
        raise InputError(f"`nprobe` must be a positive integer or None; got {nprobe!r}")
    exact = num_points < EXACT_BELOW[purpose]
    if backend == "auto":
        ivf = parse_ivf(index) is not None if index != "auto" else not exact
        backend = "torch" if ivf else "faiss"
    if index != "auto":
        return IndexChoice(backend, index, nprobe)
    if exact or backend == "sklearn":
        return IndexChoice(backend, "Flat", None)
    if backend == "faiss":
        return IndexChoice(backend, f"IVF{round(4 * math.sqrt(num_points))},Flat", nprobe)
    nlist, rule_nprobe = torch_ivf_size(num_points)
    return IndexChoice(backend, f"IVF{nlist}", nprobe or rule_nprobe)
