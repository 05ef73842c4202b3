"""robustlabels.neighbors: FAISS and scikit-learn against the exact torch oracle, plus validation."""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import subprocess
import sys
import threading

import numpy as np
import pytest
import torch

from robustlabels.errors import InputError
from robustlabels.neighbors import build
from robustlabels.neighbors._blas import configure_openblas, cpu_flags
from robustlabels.neighbors.base import drop_self
from robustlabels.neighbors.faiss_index import DEFAULT_BLOCK_SIZE, FLAT_SLICES, K_HINT, SCRATCH_SHARE, flat_block_size

from .synthetic import assert_same_neighbors, low_dim_data, recall

faiss = pytest.importorskip("faiss")

K = 10


@pytest.fixture(scope="module")
def data() -> np.ndarray:
    return low_dim_data()


@pytest.fixture(scope="module")
def queries() -> np.ndarray:
    return low_dim_data(n=300, seed=1338)[:300] + np.float32(0.05)


@pytest.mark.parametrize("metric", ["cosine", "ip", "l2"])
@pytest.mark.parametrize("backend", ["faiss", "sklearn"])
def test_exact_backends_match_torch_oracle(data, queries, metric, backend) -> None:
    oracle = build(data, metric=metric, backend="torch")
    ref_d, ref_i = oracle.search(queries, K + 1)
    index = build(data, metric=metric, backend=backend, index="Flat")
    distances, indices = index.search(queries, K)
    assert distances.shape == indices.shape == (len(queries), K)
    assert distances.dtype == np.float32 and indices.dtype == np.int64
    assert (index.ntotal, index.dim, index.metric) == (len(data), data.shape[1], metric)
    assert_same_neighbors(distances, indices, ref_d, ref_i)
    if metric == "l2":
        assert (np.diff(distances, axis=1) >= 0).all()
    else:
        assert (np.diff(distances, axis=1) <= 0).all()


def test_cosine_returns_similarities(data) -> None:
    distances, _ = build(data, metric="cosine", backend="faiss").search(None, 1)
    np.testing.assert_allclose(distances[:, 0], 1.0, atol=1e-5)  # each point is its own best match


@pytest.mark.parametrize("factory", ["IVF32,Flat", "HNSW16"])
@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_approximate_recall(data, factory, metric) -> None:
    _, ref_i = build(data, metric=metric, backend="torch").search(None, K)
    index = build(data, metric=metric, index=factory, seed=0)
    _, indices = index.search(None, K)
    assert recall(indices, ref_i) >= 0.9
    assert (index.nprobe is not None) == factory.startswith("IVF")
    assert (index.ef_search is not None) == factory.startswith("HNSW")


def test_ivf_pq_builds_and_is_seeded(data) -> None:
    a = build(data, metric="l2", index="IVF16,PQ8x4", seed=3).search(None, K)[1]
    b = build(data, metric="l2", index="IVF16,PQ8x4", seed=3).search(None, K)[1]
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("backend", ["faiss", "torch", "sklearn"])
def test_exclude_self(data, backend) -> None:
    index = build(data, metric="l2", backend=backend)
    distances, indices = index.search(None, K, exclude_self=True)
    assert indices.shape == (len(data), K)
    assert not (indices == np.arange(len(data))[:, None]).any()
    full_d, full_i = index.search(None, K + 1)
    np.testing.assert_array_equal(indices, full_i[:, 1:])  # no duplicates: self is first
    np.testing.assert_allclose(distances, full_d[:, 1:])
    same = index.search(data, K, exclude_self=True)[1]  # explicit queries that are the indexed points
    np.testing.assert_array_equal(same, indices)


def test_exclude_self_with_duplicates() -> None:
    x = low_dim_data(n=200)
    x[1::2] = x[0::2]  # every point has a twin at distance 0: ties can put the twin before the point itself
    for backend in ("faiss", "torch"):
        distances, indices = build(x, metric="l2", backend=backend).search(None, 3, exclude_self=True)
        assert not (indices == np.arange(len(x))[:, None]).any()
        twin = np.arange(len(x)) ^ 1
        np.testing.assert_array_equal(indices[:, 0], twin)
        np.testing.assert_allclose(distances[:, 0], 0.0, atol=1e-3)  # expansion rounding


def test_drop_self_finds_self_anywhere() -> None:
    distances = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 2.0], [0.0, 0.0, 0.0]], dtype=np.float32)
    indices = np.array([[5, 0, 7], [3, 1, 9], [4, 6, 8]])  # row 0: self second; row 2: self missing
    d, i = drop_self(distances, indices, np.array([0, 1, 2]))
    np.testing.assert_array_equal(i, [[5, 7], [3, 9], [4, 6]])
    np.testing.assert_array_equal(d, [[0.0, 1.0], [0.0, 2.0], [0.0, 0.0]])


@pytest.mark.parametrize("backend", ["faiss", "torch", "sklearn"])
def test_blockwise_equals_one_shot(data, backend) -> None:
    one_shot = build(data, metric="ip", backend=backend)
    blocked = build(data, metric="ip", backend=backend, block_size=7)
    assert blocked.block_size == 7
    for exclude_self in (False, True):
        d0, i0 = one_shot.search(None, K, exclude_self=exclude_self)
        d1, i1 = blocked.search(None, K, exclude_self=exclude_self)
        np.testing.assert_array_equal(i0, i1)
        np.testing.assert_allclose(d0, d1, rtol=1e-6)


def test_torch_block_size_from_memory_budget(data) -> None:
    index = build(data, metric="l2", backend="torch", memory_budget=8 * len(data) * 5)
    assert index.block_size == 5


@pytest.mark.parametrize("n", [1, 7, 8, 9, 2000, 2001])
def test_query_blocks_are_balanced_and_cover_every_row(n) -> None:
    index = build(low_dim_data(n=max(n, 2)), metric="l2", backend="faiss", block_size=4)
    blocks = [ids for ids, _ in index._blocks(np.zeros((n, 1), dtype=np.float32))]
    np.testing.assert_array_equal(np.concatenate(blocks), np.arange(n))
    sizes = [len(ids) for ids in blocks]
    assert max(sizes) <= 4 and max(sizes) - min(sizes) <= 1  # no small remainder block


@pytest.mark.parametrize("ntotal", [500, 20_000, 50_000, 200_000, 1_000_000])
@pytest.mark.parametrize("dim", [32, 128, 512])
@pytest.mark.parametrize("workers", [1, 2, 8])
def test_flat_block_size_bounds_scratch_and_keeps_blas(ntotal, dim, workers) -> None:
    threshold = faiss.cvar.distance_compute_blas_threshold
    block = flat_block_size(ntotal, dim, workers=workers, blas_threshold=threshold)
    budget = SCRATCH_SHARE * 4 * ntotal * dim
    scratch_of = lambda s: workers * s * (4 * 1024 + 12 * K_HINT)  # noqa: E731
    assert block % workers == 0
    piece = block // workers  # one worker's slice
    assert piece in FLAT_SLICES and piece * dim >= threshold  # never FAISS's pair-by-pair path
    if scratch_of(piece) > budget:  # over budget only at the smallest slice BLAS still takes
        assert piece == min(s for s in FLAT_SLICES if s * dim >= threshold)
    else:  # within budget: the largest slice that is
        assert all(scratch_of(s) > budget for s in FLAT_SLICES if s > piece)


def test_exact_faiss_index_sizes_its_blocks_by_the_rule(data) -> None:
    index = build(data, metric="cosine", index="Flat", threads=3)
    threshold = faiss.cvar.distance_compute_blas_threshold
    assert index.block_size == flat_block_size(*data.shape, workers=3, blas_threshold=threshold)
    assert build(data, metric="cosine", index="HNSW16").block_size == DEFAULT_BLOCK_SIZE


def test_exact_faiss_search_runs_single_threaded_slices_in_worker_threads(monkeypatch) -> None:
    x = low_dim_data(n=4000, d=128)
    ref = build(x, metric="cosine", index="Flat", threads=1).search(None, K, exclude_self=True)
    calls: list[tuple[int, int, int]] = []  # (queries, OpenMP threads seen inside, Python thread id)
    knn = faiss.knn

    def spy(queries, *args):
        calls.append((len(queries), faiss.omp_get_max_threads(), threading.get_ident()))
        return knn(queries, *args)

    monkeypatch.setattr(faiss, "knn", spy)
    before = faiss.omp_get_max_threads()
    got = build(x, metric="cosine", index="Flat", threads=2, block_size=4000).search(None, K, exclude_self=True)
    np.testing.assert_array_equal(got[1], ref[1])
    np.testing.assert_allclose(got[0], ref[0], rtol=1e-6)
    assert sorted(c[0] for c in calls) == [2000, 2000] and {c[1] for c in calls} == {1}
    assert threading.get_ident() not in {c[2] for c in calls}
    assert faiss.omp_get_max_threads() == before  # the caller's setting is untouched


def two_worker_search(x: np.ndarray) -> np.ndarray:
    """Exact l2 search of ``x`` in one block of two single-threaded worker slices; the indices of 3 neighbours."""
    return build(x, metric="l2", index="Flat", threads=2, block_size=len(x)).search(None, 3)[1]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_exact_search_works_in_a_forked_child_after_the_parent_searched() -> None:
    x = low_dim_data(n=4000, d=128)
    expected = two_worker_search(x)  # the parent's worker threads exist now; a forked child does not inherit them
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")) as pool:
        np.testing.assert_array_equal(pool.submit(two_worker_search, x).result(timeout=60), expected)


def test_float32_contiguous_input_is_not_copied(data) -> None:
    for metric in ("l2", "ip"):
        index = build(data, metric=metric, backend="faiss")
        assert np.shares_memory(index._points, data)
    assert not np.shares_memory(build(data, metric="cosine")._points, data)  # normalising must copy
    assert not np.shares_memory(build(data.astype(np.float64), metric="l2")._points, data)
    assert build(data, metric="l2", index="Flat").index is None  # faiss.knn on the points: no IndexFlat copy


@pytest.mark.parametrize("backend", ["faiss", "torch", "sklearn"])
def test_cosine_with_copy_false_normalises_in_place(data, backend) -> None:
    ref = build(data, metric="cosine", backend=backend).search(None, K)
    own = data.copy()
    index = build(torch.from_numpy(own) if backend == "torch" else own, metric="cosine", backend=backend, copy=False)
    assert np.shares_memory(np.asarray(index._points), own)
    np.testing.assert_allclose(np.linalg.norm(own, axis=1), 1.0, rtol=1e-5)
    distances, indices = index.search(None, K)
    np.testing.assert_array_equal(indices, ref[1])
    np.testing.assert_allclose(distances, ref[0], rtol=1e-5)


def test_accepts_tensors(data) -> None:
    tensor = torch.from_numpy(data)
    ref = build(data, metric="l2").search(data[:50], K)[1]
    np.testing.assert_array_equal(build(tensor, metric="l2").search(tensor[:50], K)[1], ref)
    torch_ref = build(tensor, metric="l2", backend="torch").search(tensor[:50], K + 1)
    assert_same_neighbors(*build(data, metric="l2").search(data[:50], K), *torch_ref)


def test_accepts_nested_lists() -> None:
    points = [[0.0, 0.0], [1.0, 0.0], [5.0, 5.0]]
    distances, indices = build(points, metric="l2").search([[0.9, 0.1]], 2)
    np.testing.assert_array_equal(indices, [[1, 0]])
    np.testing.assert_allclose(distances, [[0.02, 0.82]], rtol=1e-5)


def test_threads_are_restored(data) -> None:
    torch_before, faiss_before = torch.get_num_threads(), faiss.omp_get_max_threads()
    build(data, metric="l2", backend="torch", threads=1).search(None, K)
    build(data, metric="l2", index="IVF16,Flat", threads=1).search(None, K)
    assert (torch.get_num_threads(), faiss.omp_get_max_threads()) == (torch_before, faiss_before)


def test_errors_name_the_value(data) -> None:
    bad = data.copy()
    bad[17, 3] = np.nan
    with pytest.raises(InputError, match="`features` row 17 holds NaN or inf"):
        build(bad)
    bad[17, 3], bad[5, 0] = 0.0, np.inf
    with pytest.raises(InputError, match="row 5"):
        build(bad, backend="torch")
    index = build(data[:20], metric="l2")
    with pytest.raises(InputError, match="`queries` row 2"):
        index.search(bad[3:10], 2)
    with pytest.raises(InputError, match="`k` must be <= ntotal = 20; got 21"):
        index.search(None, 21)
    index.search(None, 20)
    with pytest.raises(InputError, match="exclude_self=True = 19; got 20"):
        index.search(None, 20, exclude_self=True)
    with pytest.raises(InputError, match="`k` must be a positive integer; got 0"):
        index.search(None, 0)
    with pytest.raises(InputError, match="dimension 16, but the index has dimension 32"):
        index.search(data[:5, :16], 2)
    with pytest.raises(InputError, match="ntotal = 20 rows with exclude_self=True; got 5"):
        index.search(data[:5], 2, exclude_self=True)
    with pytest.raises(InputError, match=r"`features` is empty \(shape \(0, 32\)\)"):
        build(data[:0])
    with pytest.raises(InputError, match="`metric` must be one of cosine, ip, l2; got 'hamming'"):
        build(data, metric="hamming")
    with pytest.raises(InputError, match="`backend` must be one of faiss, torch, sklearn; got 'annoy'"):
        build(data, backend="annoy")
    with pytest.raises(InputError, match="'IVFbogus' is not a valid faiss factory string"):
        build(data, index="IVFbogus")
    with pytest.raises(InputError, match=r"backend='torch' .* got 'HNSW32'"):
        build(data, backend="torch", index="HNSW32")
    with pytest.raises(InputError, match="could not be trained on 20 points"):
        build(data[:20], index="IVF64,Flat")
    with pytest.raises(InputError, match="'IVF4,PQ5' is not a valid faiss factory string"):
        build(data, index="IVF4,PQ5")  # 32 is not divisible by 5
    with pytest.raises(InputError, match="shape"):
        build(data[0])


def test_configure_openblas(tmp_path, monkeypatch) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512bw avx512vl\n")
    plain = tmp_path / "plain"
    plain.write_text("flags\t\t: fpu sse avx2\n")
    assert {"avx512f", "avx2"} <= cpu_flags(cpuinfo)
    assert configure_openblas({"OPENBLAS_CORETYPE": "Haswell"}, cpuinfo=cpuinfo) == "Haswell"  # user wins
    monkeypatch.delitem(sys.modules, "faiss", raising=False)
    env: dict[str, str] = {}
    assert configure_openblas(env, cpuinfo=cpuinfo) == "SkylakeX"
    assert env == {"OPENBLAS_CORETYPE": "SkylakeX"}
    env = {}
    assert configure_openblas(env, cpuinfo=plain) is None and env == {}
    assert configure_openblas(env, cpuinfo=tmp_path / "missing") is None


def test_configure_openblas_is_a_no_op_after_faiss_loaded(tmp_path, monkeypatch) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("flags\t\t: avx512f avx512bw avx512vl\n")
    monkeypatch.setitem(sys.modules, "faiss", faiss)
    env: dict[str, str] = {}
    assert configure_openblas(env, cpuinfo=cpuinfo) is None and env == {}


def test_import_does_not_load_faiss() -> None:
    code = "import sys, robustlabels.neighbors; assert 'faiss' not in sys.modules, 'faiss imported'"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_torch_backend_on_cuda_matches_cpu(data) -> None:
    ref = build(data, metric="cosine", backend="torch").search(data[:100], K + 1)
    index = build(torch.from_numpy(data).cuda(), metric="cosine", backend="torch")
    assert index.device.type == "cuda"
    assert_same_neighbors(*index.search(torch.from_numpy(data[:100]).cuda(), K), *ref)


PEAK_SCRIPT = """
import sys
from pathlib import Path
import numpy as np
from robustlabels.neighbors import build
from robustlabels.neighbors.faiss_index import import_faiss

import_faiss()
rng = np.random.default_rng(0)
x = rng.standard_normal((50_000, 128), dtype=np.float32)
def kb(field):
    line = next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith(field + ":"))
    return int(line.split()[1])
base = kb("VmRSS")
Path("/proc/self/clear_refs").write_text("5")
build(x, metric="cosine", index="Flat", threads=2).search(None, 10, exclude_self=True)
print((kb("VmHWM") - base) * 1024 / x.nbytes)
"""


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_exact_cosine_all_vs_all_peak_memory_within_twice_the_features() -> None:
    out = subprocess.run([sys.executable, "-c", PEAK_SCRIPT], capture_output=True, text=True, check=True).stdout
    assert float(out.split()[-1]) <= 2.0  # issue 17: the normalised copy, FAISS's score tiles and the results
