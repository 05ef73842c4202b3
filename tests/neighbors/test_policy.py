"""The one meaning of ``index="auto"``: :func:`robustlabels.neighbors.policy.choose_index`."""

from __future__ import annotations

import numpy as np
import pytest

from robustlabels.errors import InputError
from robustlabels.neighbors import build
from robustlabels.neighbors.policy import IndexChoice, choose_index, parse_ivf


@pytest.mark.parametrize(
    ("num_points", "backend", "purpose", "expected"),
    [
        (99_999, "faiss", "search", ("faiss", "Flat", None)),
        (100_000, "faiss", "search", ("faiss", "IVF1265,Flat", None)),  # 4 √N lists, FAISS's own nprobe
        (99_999, "torch", "search", ("torch", "Flat", None)),
        (1_000_000, "torch", "search", ("torch", "IVF1000", 6)),  # √N lists, nprobe 6 (the 1M measurement)
        (99_999, "auto", "search", ("faiss", "Flat", None)),  # exact: FAISS
        (100_000, "auto", "search", ("torch", "IVF316", 6)),  # approximate: the torch IVF
        (10**7, "sklearn", "search", ("sklearn", "Flat", None)),  # exact only
        (4095, "torch", "refresh", ("torch", "Flat", None)),
        (4096, "torch", "refresh", ("torch", "IVF16", 2)),
        (20_000, "torch", "refresh", ("torch", "IVF35", 2)),  # NCR's measured banks: √N / 4 lists
        (54_000, "torch", "refresh", ("torch", "IVF58", 3)),
        (99_999, "torch", "refresh", ("torch", "IVF79", 4)),
        (1_000_000, "torch", "refresh", ("torch", "IVF1000", 6)),  # from 100k: the same as a one-off search
        (20_000, "auto", "refresh", ("torch", "IVF35", 2)),
        (20_000, "faiss", "refresh", ("faiss", "IVF566,Flat", None)),
    ],
)
def test_auto_thresholds(num_points: int, backend: str, purpose: str, expected: tuple) -> None:
    choice = choose_index(num_points, backend=backend, purpose=purpose)  # type: ignore[arg-type]
    assert choice == IndexChoice(*expected)


def test_explicit_choices_pass_through() -> None:
    assert choose_index(10, backend="faiss", index="HNSW32", nprobe=3) == ("faiss", "HNSW32", 3)
    assert choose_index(10**6, backend="torch", index="Flat") == ("torch", "Flat", None)
    assert choose_index(20_000, backend="torch", index="IVF64", nprobe=4, purpose="refresh") == ("torch", "IVF64", 4)
    assert choose_index(10**6, index="auto", nprobe=12) == ("torch", "IVF1000", 12)  # the rule's index, your nprobe
    # backend "auto" with an explicit index: IVF{n} strings on the torch IVF, every other string on FAISS
    assert choose_index(500, index="IVF16,Flat") == ("torch", "IVF16,Flat", None)
    assert choose_index(10**6, index="Flat") == ("faiss", "Flat", None)
    assert choose_index(500, index="IVF16,PQ8") == ("faiss", "IVF16,PQ8", None)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"backend": "annoy"}, "`backend` must be one of auto, faiss, torch, sklearn; got 'annoy'"),
        ({"backend": "torch", "index": "HNSW32"}, r"backend='torch' .* got 'HNSW32'"),
        ({"backend": "torch", "index": "IVF16,PQ8"}, r"backend='torch' .* got 'IVF16,PQ8'"),
        ({"backend": "sklearn", "index": "IVF16"}, "'auto' or 'Flat' with backend='sklearn'"),
        ({"index": ""}, "`index` must be 'auto' or an index factory string; got ''"),
        ({"nprobe": 0}, "`nprobe` must be a positive integer or None; got 0"),
        ({"purpose": "often"}, "`purpose` must be one of search, refresh; got 'often'"),
        ({"num_points": -1}, "`num_points` must be a non-negative integer; got -1"),
    ],
)
def test_bad_arguments_are_one_line_errors(kwargs: dict, message: str) -> None:
    arguments = {"num_points": 1000, **kwargs}
    with pytest.raises(InputError, match=message) as info:
        choose_index(arguments.pop("num_points"), **arguments)
    assert "\n" not in str(info.value)


def test_parse_ivf() -> None:
    assert [parse_ivf(s) for s in ("IVF64", "IVF64,Flat", "IVF64,PQ8", "Flat", "ivf64")] == [64, 64, None, None, None]


def test_every_backend_builds_what_the_policy_chooses() -> None:
    x = np.random.default_rng(0).standard_normal((300, 8)).astype(np.float32)
    assert build(x, backend="faiss").factory == choose_index(300, backend="faiss").factory == "Flat"
    index = build(x, backend="torch", index="IVF8")
    assert (index.factory, index.nprobe) == ("IVF8,Flat", 8)  # nprobe: min(nlist, max(16, nlist // 8))
    with pytest.raises(InputError, match="with backend='sklearn' \\(exact only\\); got 'HNSW32'"):
        build(x, backend="sklearn", index="HNSW32")
