"""k-NN search benchmark: our ``robustlabels.neighbors`` index against raw FAISS, torch and scikit-learn.

Every case runs in a fresh child process (``--case ...``) so that its peak memory is its own; inside a case
all methods run side by side, interleaved, so that their time ratios share the machine's load. Peak memory
of each step is the process's ``VmHWM`` (reset through ``/proc/self/clear_refs`` before the step) minus the
resident size once the features exist.

    python benchmarks/knn.py --out /tmp/knn.md --json /tmp/knn.json
    python benchmarks/knn.py --sizes 50000 --dims 128 --skip-approx --skip-coretype --skip-large --skip-sklearn \
        --exact-rounds 6 --busy 1      # exact ours vs raw FAISS with one busy-loop process as load

Exact cases also record each method's process CPU time (user + system, all threads), whose ratio moves less
with the machine's load than wall time does.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

K = 10
TIE_TOL = 1e-4
CORETYPES = ("unset", "Haswell", "SkylakeX")
SEARCH_GRID = {"nprobe": (8, 16, 32, 64, 128, 256), "ef_search": (16, 32, 64, 128, 256, 512)}
TORCH_NPROBE = (2, 3, 4, 6, 8, 12, 16, 24, 32)  # torch IVF has fewer, longer lists (about sqrt(N))
TARGET_RECALL = 0.95


# ----------------------------------------------------------------------------------------------- data and memory
def make_features(n: int, d: int, seed: int = 0, centres: int = 100, intrinsic: int = 16) -> np.ndarray:
    """Seeded Gaussian mixture of low intrinsic dimension: centre + rank-``intrinsic`` spread + small noise.

    Returned float32, C-contiguous, with L2-normalised rows (ready for cosine / inner product).
    """
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((centres, d), dtype=np.float32)
    basis = rng.standard_normal((centres, intrinsic, d), dtype=np.float32) / math.sqrt(intrinsic)
    labels = rng.integers(0, centres, n)
    x = np.empty((n, d), dtype=np.float32)
    for c in range(centres):  # per centre, so no (n, intrinsic, d) temporary
        rows = np.flatnonzero(labels == c)
        z = rng.standard_normal((rows.size, intrinsic), dtype=np.float32)
        x[rows] = means[c] + 0.8 * (z @ basis[c]) + 0.1 * rng.standard_normal((rows.size, d), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def _status_kb(field: str) -> int:
    """A ``kB`` field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak() -> None:
    """Reset the process's peak RSS (``VmHWM``) to its current RSS (Linux >= 4.0)."""
    Path("/proc/self/clear_refs").write_text("5")


def measure(fn: Callable[[], Any], baseline_kb: int) -> tuple[Any, float, float]:
    """Run ``fn``; return its result, wall seconds and peak RSS above ``baseline_kb`` in MiB."""
    reset_peak()
    start = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    return result, seconds, (_status_kb("VmHWM") - baseline_kb) / 1024


def cpu_seconds() -> float:
    """User + system CPU seconds of this process so far, all threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@contextlib.contextmanager
def busy_load(processes: int):
    """Run the body with ``processes`` busy-loop processes beside it (a reproducible "busy machine")."""
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(processes)]
    try:
        yield
    finally:
        for proc in busy:
            proc.kill()
            proc.wait()


def gemm_ceiling(d: int = 512, repeats: int = 10, tries: int = 5) -> dict[str, float]:
    """fp32 GEMM rate of one core in GFLOP per CPU-second (CPU time of the calling thread, so a busy machine
    does not lower it): best of ``tries`` x ``repeats`` products ``(4096, d) @ (d, 1024)``, FAISS's tile shape,
    in numpy's OpenBLAS and in torch, each on 1 thread."""
    import torch
    from threadpoolctl import threadpool_limits

    def thread_cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_THREAD)
        return usage.ru_utime + usage.ru_stime

    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((4096, d), dtype=np.float32), rng.standard_normal((d, 1024), dtype=np.float32)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    flop = 2 * 4096 * d * 1024 * repeats
    rates = {}
    with threadpool_limits(1), contextlib.ExitStack() as stack:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        stack.callback(torch.set_num_threads, threads)
        for name, product in (("numpy", lambda: a @ b), ("torch", lambda: ta @ tb)):
            product()
            best = 0.0
            for _ in range(tries):
                start = thread_cpu()
                for _ in range(repeats):
                    product()
                best = max(best, flop / (thread_cpu() - start) / 1e9)
            rates[name] = best
    return rates


def openblas_corename() -> str:
    """The kernel name the loaded OpenBLAS (faiss-cpu's bundled copy) reports, or ``"?"``."""
    for line in Path("/proc/self/maps").read_text().splitlines():
        path = line.split()[-1]
        if "libopenblas" in path:
            lib = ctypes.CDLL(path)
            lib.openblas_get_corename.restype = ctypes.c_char_p
            return lib.openblas_get_corename().decode()
    return "?"


# ----------------------------------------------------------------------------------------------- exact methods
def without_self(distances: np.ndarray, indices: np.ndarray, k: int = K) -> tuple[np.ndarray, np.ndarray]:
    """Drop each row's own index (row ``i`` is point ``i``) from a ``(Q, k + 1)`` result; keep the first ``k``."""
    not_self = indices != np.arange(len(indices))[:, None]
    order = np.argsort(~not_self, axis=1, kind="stable")[:, :k]  # non-self columns first, order kept
    return np.take_along_axis(distances, order, axis=1), np.take_along_axis(indices, order, axis=1)


def run_ours(x: np.ndarray, threads: int) -> tuple[np.ndarray, np.ndarray]:
    """Our index: exact ``Flat`` cosine, all-vs-all with ``exclude_self``."""
    from robustlabels.neighbors import build

    return build(x, metric="cosine", index="Flat", threads=threads).search(None, K, exclude_self=True)


def run_faiss(x: np.ndarray, threads: int) -> tuple[np.ndarray, np.ndarray]:
    """Raw FAISS with default settings: ``IndexFlatIP`` on the normalised array, ``search(x, k + 1)``."""
    import faiss

    faiss.omp_set_num_threads(threads)
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    return without_self(*index.search(x, K + 1))


def run_torch(x: np.ndarray, threads: int, budget: int = 256 * 2**20) -> tuple[np.ndarray, np.ndarray]:
    """Blockwise ``torch`` matmul + ``topk``; one ``(block, N)`` score matrix of at most ``budget`` bytes."""
    import torch

    torch.set_num_threads(threads)
    xt = torch.from_numpy(x)
    block = max(1, budget // (4 * len(x)))
    distances, indices = np.empty((len(x), K + 1), np.float32), np.empty((len(x), K + 1), np.int64)
    with torch.no_grad():
        for start in range(0, len(x), block):
            values, idx = torch.topk(xt[start : start + block] @ xt.T, K + 1, dim=1)
            distances[start : start + block], indices[start : start + block] = values.numpy(), idx.numpy()
    return without_self(distances, indices)


def run_sklearn(x: np.ndarray, threads: int) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn ``NearestNeighbors(algorithm="brute", metric="cosine")``; cosine distance -> similarity."""
    from sklearn.neighbors import NearestNeighbors
    from threadpoolctl import threadpool_limits

    with threadpool_limits(threads):
        nn = NearestNeighbors(n_neighbors=K + 1, algorithm="brute", metric="cosine").fit(x)
        dist, idx = nn.kneighbors(x)
    return without_self((1 - dist).astype(np.float32), idx)


EXACT_METHODS: dict[str, Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]] = {
    "ours": run_ours, "faiss": run_faiss, "torch": run_torch, "sklearn": run_sklearn,
}  # fmt: skip


def agreement(ref: tuple[np.ndarray, np.ndarray], got: tuple[np.ndarray, np.ndarray]) -> tuple[float, float]:
    """Fraction of rows with the same neighbour set as ``ref``, and the same up to ties.

    "Up to ties" also counts a row whose sorted similarities match ``ref``'s within ``TIE_TOL`` everywhere:
    it returned different but equally close neighbours.
    """
    same = (np.sort(ref[1], axis=1) == np.sort(got[1], axis=1)).all(axis=1)
    close = (np.abs(np.sort(ref[0], axis=1) - np.sort(got[0], axis=1)) <= TIE_TOL).all(axis=1)
    return float(same.mean()), float((same | close).mean())


# ----------------------------------------------------------------------------------------------- child cases
def _baseline(n: int, d: int) -> tuple[np.ndarray, int]:
    """Features of shape ``(n, d)`` and the resident size (kB) once they exist and the libraries are loaded."""
    from robustlabels.neighbors.faiss_index import import_faiss

    import_faiss()  # our OpenBLAS kernel choice, before anything else loads faiss
    import sklearn.neighbors  # noqa: F401
    import torch  # noqa: F401

    x = make_features(n, d)
    return x, _status_kb("VmRSS")


def case_exact(n: int, d: int, threads: int, methods: list[str], rounds: int) -> dict[str, Any]:
    """All-vs-all exact k=10 with each method, interleaved for ``rounds`` rounds (memory from round 1)."""
    x, base = _baseline(n, d)
    times: dict[str, list[float]] = {m: [] for m in methods}
    cpu: dict[str, list[float]] = {m: [] for m in methods}
    mem: dict[str, float] = {}
    results: dict[str, Any] = {}
    for r in range(rounds):
        for m in methods if r % 2 == 0 else methods[::-1]:
            cpu_start = cpu_seconds()
            out, seconds, peak = measure(lambda m=m: EXACT_METHODS[m](x, threads), base)
            times[m].append(seconds)
            cpu[m].append(cpu_seconds() - cpu_start)
            mem.setdefault(m, peak)
            results[m] = out
            print(f"  {n}x{d} {m}: {seconds:.2f} s, {cpu[m][-1]:.2f} CPU-s, +{peak:.0f} MiB", file=sys.stderr,
                  flush=True)  # fmt: skip
    ref = results.get("faiss")
    rows = []
    for m in methods:
        row = {"method": m, "seconds": min(times[m]), "times": times[m], "cpu": cpu[m], "peak_mib": mem[m]}
        if ref is not None:
            row["ratio"] = statistics.median(a / b for a, b in zip(times[m], times["faiss"], strict=True))
            row["cpu_ratio"] = statistics.median(a / b for a, b in zip(cpu[m], cpu["faiss"], strict=True))
            row["same"], row["same_ties"] = agreement(ref, results[m])
        rows.append(row)
    return {"n": n, "d": d, "features_mib": x.nbytes / 2**20, "openblas": openblas_corename(), "rows": rows}


def _recall(approx: np.ndarray, exact: np.ndarray) -> float:
    """Mean recall@k of ``approx`` index rows against ``exact`` ones."""
    return float(np.mean([len(set(a) & set(e)) / exact.shape[1] for a, e in zip(approx, exact, strict=True)]))


def _search_sub(index: Any, x: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Search ``x[rows]`` through our index for k + 1 neighbours, drop each query's own point; indices."""
    _, idx = index.search(x[rows], K + 1)
    not_self = idx != rows[:, None]
    order = np.argsort(~not_self, axis=1, kind="stable")[:, :K]
    return np.take_along_axis(idx, order, axis=1)


def _set_param(index: Any, name: str, value: int) -> None:
    """Set ``nprobe`` (IVF) or ``ef_search`` (HNSW) on a built index (faiss or torch IVF)."""
    if name == "nprobe" and index.backend == "faiss":
        import faiss

        faiss.extract_index_ivf(index.index).nprobe = value
    setattr(index, name, value)


def _tune(index: Any, x: np.ndarray, sample: np.ndarray, exact: np.ndarray, name: str) -> dict[str, Any]:
    """Smallest ``name`` value of the grid with recall@10 >= 0.95 on the sample (else the largest tried)."""
    tried = []
    grid = TORCH_NPROBE if index.backend == "torch" else SEARCH_GRID[name]
    for value in grid:
        _set_param(index, name, value)
        idx, seconds, _ = measure(lambda: _search_sub(index, x, sample), 0)
        tried.append({"value": value, "recall": _recall(idx, exact), "sample_seconds": seconds})
        print(f"    {name}={value}: recall {tried[-1]['recall']:.4f}", file=sys.stderr, flush=True)
        if tried[-1]["recall"] >= TARGET_RECALL:
            break
    return {"param": name, "tried": tried, **tried[-1]}


def approx_indexes(n: int, nlist: int) -> list[tuple[str, str, str, dict[str, Any]]]:
    """``(label, backend, index, build options)`` of the approximate indexes compared at ``n`` points."""
    torch_nlist = round(math.sqrt(n))
    return [
        (f"IVF{nlist},Flat", "faiss", f"IVF{nlist},Flat", {}),
        ("HNSW32", "faiss", "HNSW32", {}),
        (f"torch IVF{torch_nlist}", "torch", f"IVF{torch_nlist}", {"nprobe": max(TORCH_NPROBE)}),
    ]


def case_approx(n: int, d: int, threads: int, n_sample: int, n_sub: int, nlist: int) -> dict[str, Any]:
    """IVF and HNSW against exact on ``n`` points: build, tuned recall on a sample, search time extrapolated."""
    from robustlabels.neighbors import build

    x, base = _baseline(n, d)
    rng = np.random.default_rng(1)
    sub = np.sort(rng.choice(n, n_sub, replace=False))
    sample = sub[np.sort(rng.choice(n_sub, n_sample, replace=False))]  # the sample is part of the subset
    flat, build_s, flat_mem = measure(lambda: build(x, metric="cosine", index="Flat", threads=threads), base)
    exact_sub, exact_s, search_mem = measure(lambda flat=flat: _search_sub(flat, x, sub), base)
    exact = exact_sub[np.searchsorted(sub, sample)]
    del flat
    rows = [{"index": "Flat (exact)", "setting": "", "build_s": build_s, "sub_s": exact_s, "recall": 1.0,
             "peak_mib": max(flat_mem, search_mem)}]  # fmt: skip
    for label, backend, factory, options in approx_indexes(n, nlist):
        param = "ef_search" if factory.startswith("HNSW") else "nprobe"
        print(f"  building {label}", file=sys.stderr, flush=True)
        index, build_s, build_mem = measure(
            lambda b=backend, f=factory, o=options: build(x, metric="cosine", backend=b, index=f, threads=threads, **o),
            base,
        )
        tuned = _tune(index, x, sample, exact, param)
        _, sub_s, search_mem = measure(lambda index=index: _search_sub(index, x, sub), base)
        rows.append({"index": label, "setting": f"{param}={tuned['value']}", "build_s": build_s, "sub_s": sub_s,
                     "recall": tuned["recall"], "sample_s": tuned["sample_seconds"], "tried": tuned["tried"],
                     "peak_mib": max(build_mem, search_mem)})  # fmt: skip
        del index
    for row in rows:
        row["all_s"] = row["sub_s"] * n / n_sub
        row["speedup"] = rows[0]["all_s"] / row["all_s"]
        row["speedup_with_build"] = (rows[0]["all_s"] + rows[0]["build_s"]) / (row["all_s"] + row["build_s"])
    return {"n": n, "d": d, "n_sample": n_sample, "n_sub": n_sub, "features_mib": x.nbytes / 2**20,
            "openblas": openblas_corename(), "rows": rows}  # fmt: skip


def _truth_path(n: int, d: int, n_sample: int) -> Path:
    return Path(f"/tmp/knn_truth_{n}x{d}_{n_sample}.npz")


def case_truth(n: int, d: int, threads: int, n_sample: int) -> dict[str, Any]:
    """Exact top-10 (self excluded) of the seeded ``n_sample`` queries, saved for the large case's children."""
    from robustlabels.neighbors import build

    path = _truth_path(n, d, n_sample)
    if path.exists():  # made by an earlier run: same seeds, same data
        seconds = float(np.load(path)["seconds"])
        return {"sample_s": seconds, "all_s_extrapolated": seconds * n / n_sample, "cached": True}
    x, _ = _baseline(n, d)
    sample = np.sort(np.random.default_rng(1).choice(n, n_sample, replace=False))
    flat = build(x, metric="ip", backend="torch", threads=threads)  # rows are unit-norm: ip is cosine, no copy
    exact, seconds, _ = measure(lambda: _search_sub(flat, x, sample), 0)
    np.savez(path, sample=sample, exact=exact, seconds=seconds)
    return {"sample_s": seconds, "all_s_extrapolated": seconds * n / n_sample}


LARGE_METHODS: dict[str, tuple[str, str, str]] = {  # name -> (backend, index, tuned parameter)
    "torch-ivf": ("torch", "IVF{torch_nlist}", "nprobe"),
    "faiss-ivf": ("faiss", "IVF{faiss_nlist},Flat", "nprobe"),
    "faiss-hnsw": ("faiss", "HNSW32", "ef_search"),
}


def case_large(n: int, d: int, threads: int, method: str, n_sample: int, n_sub: int, budget: int) -> dict[str, Any]:
    """One approximate method, all-vs-all k=10 cosine over ``n`` x ``d`` in a fresh process.

    Build, tune on the 2k-query sample (recall@10 against :func:`case_truth`), then search. torch IVF searches
    all ``n`` points (``search(None, k, exclude_self=True)``, its intended use); faiss indexes search an
    ``n_sub``-query subset, extrapolated to ``n``. Both faiss indexes are built with ``copy=False`` (the
    features are normalised in place, so no normalised copy); peak RSS is over the features.
    """
    from robustlabels.neighbors import build

    x, base = _baseline(n, d)
    truth = np.load(_truth_path(n, d, n_sample))
    sample, exact = truth["sample"], truth["exact"]
    backend, factory, param = LARGE_METHODS[method]
    factory = factory.format(torch_nlist=round(math.sqrt(n)), faiss_nlist=min(4096, round(4 * math.sqrt(n))))
    options: dict[str, Any] = {"nprobe": max(TORCH_NPROBE), "memory_budget": budget} if backend == "torch" else {}
    if backend == "faiss":
        options["copy"] = False
    index, build_s, build_mem = measure(
        lambda: build(x, metric="cosine", backend=backend, index=factory, threads=threads, **options), base
    )
    print(f"  {method} {factory}: built in {build_s:.1f} s, +{build_mem:.0f} MiB", file=sys.stderr, flush=True)
    tuned = _tune(index, x, sample, exact, param)
    if backend == "torch":
        _, search_s, search_mem = measure(lambda: index.search(None, K, exclude_self=True), base)
        queries, all_s = n, search_s
    else:
        sub = np.sort(np.random.default_rng(2).choice(n, n_sub, replace=False))
        _, search_s, search_mem = measure(lambda: _search_sub(index, x, sub), base)
        queries, all_s = n_sub, search_s * n / n_sub
    return {"method": method, "index": factory, "setting": f"{param}={tuned['value']}", "recall": tuned["recall"],
            "tried": tuned["tried"], "build_s": build_s, "search_s": search_s, "queries_timed": queries,
            "all_s": all_s, "total_s": build_s + all_s, "peak_mib": max(build_mem, search_mem),
            "features_mib": x.nbytes / 2**20, "n": n, "d": d,
            "exact_all_s": float(truth["seconds"]) * n / n_sample}  # fmt: skip


def case_bank(path: str, threads: int, configs: list[str], rounds: int) -> dict[str, Any]:
    """NCR's refresh on a saved feature bank: all-vs-all cosine k=10 with FAISS ``Flat`` (the reference and
    NCR's former default) and torch ``IVF{n}/{nprobe}`` configs, interleaved ABBA; time ratio and recall@10."""
    from robustlabels.neighbors import build

    if path.endswith(".ckpt"):  # features of configs/fashion_mnist/ce.yaml's 20k training subset
        from overhead import trained_bank

        x = trained_bank(path).numpy()
    else:
        x = np.load(path).astype(np.float32)

    def search(config: str) -> np.ndarray:
        if config == "Flat":
            index = build(x, metric="cosine", index="Flat", threads=threads)
        else:
            factory, nprobe = config.split("/")
            index = build(x, metric="cosine", backend="torch", index=factory, nprobe=int(nprobe), threads=threads)
        return index.search(None, K, exclude_self=True)[1]

    configs = ["Flat", *configs]
    times: dict[str, list[float]] = {c: [] for c in configs}
    found: dict[str, np.ndarray] = {}
    for r in range(rounds):
        for c in configs if r % 2 == 0 else configs[::-1]:
            found[c], seconds, _ = measure(lambda c=c: search(c), 0)
            times[c].append(seconds)
    rows = [{"config": c, "seconds": min(times[c]), "recall": _recall(found[c], found["Flat"]),
             "ratio": statistics.median(a / b for a, b in zip(times[c], times["Flat"], strict=True))}
            for c in configs]  # fmt: skip
    return {"path": path, "n": len(x), "d": x.shape[1], "rows": rows}


def case_coretype(n: int, d: int, threads: int, method: str, save: str) -> dict[str, Any]:
    """One exact run of ``method`` (``ours`` or ``faiss`` imported first) under the inherited kernel setting."""
    before = os.environ.get("OPENBLAS_CORETYPE", "unset")
    import resource

    from robustlabels.neighbors._blas import configure_openblas

    if method == "ours":  # our kernel choice; "faiss" leaves OpenBLAS to its own detection
        configure_openblas()
    import faiss  # noqa: F401

    x = make_features(n, d)
    base = _status_kb("VmRSS")
    out, seconds, peak = measure(lambda: EXACT_METHODS[method](x, threads), base)
    np.save(save, out[1])
    maxrss_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024
    return {"env": before, "seen": os.environ.get("OPENBLAS_CORETYPE", "unset"), "openblas": openblas_corename(),
            "method": method, "seconds": seconds, "peak_mib": peak, "maxrss_mib": maxrss_mib,
            "features_mib": x.nbytes / 2**20}  # fmt: skip


# ----------------------------------------------------------------------------------------------- parent
def child(args: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run this script with ``--case ...`` in a fresh process; return the JSON it prints last."""
    proc = subprocess.run([sys.executable, __file__, *args], env=env, stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def coretype_runs(opts: argparse.Namespace) -> list[dict[str, Any]]:
    """Exact 50k x 128 under each ``OPENBLAS_CORETYPE`` (fresh process each), two interleaved rounds."""
    variants = [(c, "ours") for c in CORETYPES] + [("unset", "faiss")]
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {v: [] for v in variants}
    for _ in range(2):
        for core, method in variants:
            env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
            if core != "unset":
                env["OPENBLAS_CORETYPE"] = core
            save = f"/tmp/knn_core_{core}_{method}.npy"
            args = ["--case", "coretype", "--n", "50000", "--d", "128", "--method", method, "--save", save]
            runs[(core, method)].append(child([*args, "--threads", str(opts.threads)], env))
    ref = np.load("/tmp/knn_core_unset_ours.npy")
    rows = []
    for (core, method), rs in runs.items():
        same = float((np.sort(np.load(f"/tmp/knn_core_{core}_{method}.npy"), 1) == np.sort(ref, 1)).all(1).mean())
        rows.append({**rs[0], "times": [r["seconds"] for r in rs], "seconds": min(r["seconds"] for r in rs),
                     "same_as_unset": same})  # fmt: skip
    return rows


def exact_runs(opts: argparse.Namespace) -> list[dict[str, Any]]:
    """One child per (N, d); scikit-learn only where cheap enough (see ``--sklearn-max``)."""
    cases = []
    for n in opts.sizes:
        for d in opts.dims:
            if n * d > opts.max_nd:
                print(f"skip exact {n}x{d}: above --max-nd", file=sys.stderr)
                continue
            methods = opts.exact_methods.split(",")
            if not opts.skip_sklearn and n <= 50_000 and n * d <= opts.sklearn_max:
                methods.append("sklearn")
            rounds = opts.exact_rounds or (2 if n * n * d <= 50_000**2 * 128 else 1)
            args = ["--case", "exact", "--n", str(n), "--d", str(d), "--methods", ",".join(methods)]
            cases.append(child([*args, "--rounds", str(rounds), "--threads", str(opts.threads)]))
    return cases


def approx_run(opts: argparse.Namespace) -> dict[str, Any]:
    """The approximate case at ``--approx-n`` x 128 in a fresh child."""
    args = ["--case", "approx", "--n", str(opts.approx_n), "--d", "128", "--approx-sub", str(opts.approx_sub)]
    return child([*args, "--threads", str(opts.threads)])


def bank_run(opts: argparse.Namespace) -> dict[str, Any]:
    """The ``--bank`` feature file through NCR-style refresh configs, in a fresh child."""
    args = ["--case", "bank", "--bank", opts.bank, "--bank-configs", opts.bank_configs, "--rounds", "3"]
    return child([*args, "--threads", str(opts.threads)])


def large_runs(opts: argparse.Namespace) -> dict[str, Any]:
    """The exact reference for the sample, then one fresh child per method of ``--large-methods``."""
    n, d = opts.large_n, opts.large_d
    common = ["--n", str(n), "--d", str(d), "--threads", str(opts.threads)]
    truth = child(["--case", "truth", *common])
    rows = []
    for method in opts.large_methods.split(","):
        args = ["--case", "large", "--method", method, "--approx-sub", str(opts.large_sub), *common]
        rows.append(child([*args, "--memory-budget", str(opts.memory_budget)]))
    return {"n": n, "d": d, "n_sample": 2000, "n_sub": opts.large_sub, "truth": truth, "rows": rows}


def _table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def markdown(res: dict[str, Any]) -> str:
    """Markdown tables of every part that ran."""
    parts = []
    exact_rows = [
        [f"{c['n']:,}", str(c["d"]), r["method"], f"{r['seconds']:.2f}", f"{r.get('ratio', 0):.3f}×",
         f"{r.get('cpu_ratio', 0):.3f}×", f"{r.get('same', 0):.4f}", f"{r.get('same_ties', 0):.4f}",
         f"{r['peak_mib']:.0f}",
         f"{r['peak_mib'] / c['features_mib']:.2f}×"]
        for c in res.get("exact", []) for r in c["rows"]
    ]  # fmt: skip
    if exact_rows:
        head = ["N", "d", "method", "seconds (best)", "× raw FAISS", "× raw FAISS (CPU time)", "same sets",
                "same up to ties", "peak RSS − base (MiB)", "× features"]  # fmt: skip
        parts.append(_table(head, exact_rows))
    if res.get("approx"):
        a = res["approx"]
        head = ["index", "setting", "build (s)", f"{a['n_sample']:,} queries (s)", f"{a['n_sub']:,} queries (s)",
                f"all {a['n']:,} (s, extrap.)", f"recall@{K}", "speed-up vs exact", "incl. build",
                "peak RSS − base (MiB)", "× features"]  # fmt: skip
        parts.append(_table(head, [[r["index"], r["setting"] or "–", f"{r['build_s']:.1f}",
                                    f"{r['sample_s']:.2f}" if "sample_s" in r else "–", f"{r['sub_s']:.1f}",
                                    f"{r['all_s']:.0f}", f"{r['recall']:.4f}", f"{r['speedup']:.1f}×",
                                    f"{r['speedup_with_build']:.1f}×", f"{r['peak_mib']:.0f}",
                                    f"{r['peak_mib'] / a['features_mib']:.2f}×"] for r in a["rows"]]))  # fmt: skip
    if res.get("bank"):
        b = res["bank"]
        head = ["config", f"seconds (best, {b['n']:,} × {b['d']})", "× FAISS Flat (median)", f"recall@{K}"]
        parts.append(_table(head, [[r["config"], f"{r['seconds']:.3f}", f"{r['ratio']:.3f}×",
                                    f"{r['recall']:.4f}"] for r in b["rows"]]))  # fmt: skip
    if res.get("large"):
        a = res["large"]
        head = ["method", "index", "setting", "build (s)", f"all {a['n']:,} queries (s)", "build + search (s)",
                "≤ 300 s", f"recall@{K} (2k sample)", "peak RSS − base (MiB)", "× features", "≤ 2×"]  # fmt: skip
        parts.append(_table(head, [[r["method"], r["index"], r["setting"], f"{r['build_s']:.1f}",
                                    f"{r['all_s']:.0f}" + ("" if r["queries_timed"] == a["n"] else " (extrap.)"),
                                    f"{r['total_s']:.0f}", "yes" if r["total_s"] <= 300 else "no",
                                    f"{r['recall']:.4f}", f"{r['peak_mib']:.0f}",
                                    f"{r['peak_mib'] / r['features_mib']:.2f}×",
                                    "yes" if r["peak_mib"] <= 2 * r["features_mib"] else "no"]
                                   for r in a["rows"]]))  # fmt: skip
    if res.get("coretype"):
        ref = next(r for r in res["coretype"] if r["env"] == "SkylakeX")["seconds"]
        head = ["OPENBLAS_CORETYPE at launch", "first import", "seen after import", "OpenBLAS core",
                "seconds (best of 2)", "× SkylakeX", "same sets as unset/ours", "ru_maxrss − base (MiB)"]  # fmt: skip
        parts.append(_table(head, [[r["env"], r["method"], r["seen"], r["openblas"], f"{r['seconds']:.2f}",
                                    f"{r['seconds'] / ref:.2f}×", f"{r['same_as_unset']:.4f}",
                                    f"{r['maxrss_mib']:.0f}"] for r in res["coretype"]]))  # fmt: skip
    return "\n\n".join(parts) + "\n"


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (``--case`` and the options after it are for the child processes)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=lambda s: [int(v) for v in s.split(",")], default=[50_000, 200_000])
    p.add_argument("--dims", type=lambda s: [int(v) for v in s.split(",")], default=[128, 512])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--approx-n", type=int, default=1_000_000)
    p.add_argument("--approx-sub", type=int, default=20_000, help="queries timed and extrapolated to all N")
    p.add_argument("--skip-approx", action="store_true")
    p.add_argument("--skip-exact", action="store_true")
    p.add_argument("--skip-coretype", action="store_true")
    p.add_argument("--skip-sklearn", action="store_true")
    p.add_argument("--gemm-ceiling", action="store_true", help="print one core's fp32 GEMM GFLOP per CPU-second")
    p.add_argument("--exact-methods", default="ours,faiss,torch", help="exact methods besides scikit-learn")
    p.add_argument("--exact-rounds", type=int, help="interleaved rounds per exact case (default: 2, 1 when large)")
    p.add_argument("--busy", type=int, default=0, help="busy-loop processes running beside every case (load)")
    p.add_argument("--sklearn-max", type=int, default=50_000 * 512, help="largest N*d for scikit-learn (N <= 50k)")
    p.add_argument("--max-nd", type=int, default=200_000 * 512, help="largest N*d for the exact cases")
    p.add_argument("--large-n", type=int, default=1_000_000)
    p.add_argument("--large-d", type=int, default=384)
    p.add_argument("--large-sub", type=int, default=50_000, help="faiss queries timed and extrapolated to all N")
    p.add_argument("--large-methods", default="torch-ivf,faiss-ivf,faiss-hnsw")
    p.add_argument("--memory-budget", type=int, default=256 * 2**20, help="torch IVF working memory per block")
    p.add_argument("--skip-large", action="store_true")
    p.add_argument("--bank", help="(N, D) .npy of features, or a .ckpt of configs/fashion_mnist/ce.yaml to extract "
                   "them from: time NCR-style refresh configs on them (see --bank-configs)")  # fmt: skip
    p.add_argument("--bank-configs", default="IVF35/2,IVF58/3,IVF32/2,IVF64/4", help="torch IVF{nlist}/{nprobe}")
    p.add_argument("--out", type=Path)
    p.add_argument("--json", type=Path)
    p.add_argument("--case", choices=("exact", "approx", "coretype", "truth", "large", "bank"))
    p.add_argument("--n", type=int)
    p.add_argument("--d", type=int)
    p.add_argument("--methods", default="ours,faiss,torch")
    p.add_argument("--method", default="ours")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--save", default="/tmp/knn_indices.npy")
    return p.parse_args(argv)


def run_case(opts: argparse.Namespace) -> dict[str, Any]:
    """The child side: one case, returned as a dict."""
    if opts.case == "exact":
        return case_exact(opts.n, opts.d, opts.threads, opts.methods.split(","), opts.rounds)
    if opts.case == "approx":
        nlist = min(4096, round(4 * math.sqrt(opts.n)))
        return case_approx(opts.n, opts.d, opts.threads, 2000, opts.approx_sub, nlist)
    if opts.case == "bank":
        return case_bank(opts.bank, opts.threads, opts.bank_configs.split(","), opts.rounds)
    if opts.case == "truth":
        return case_truth(opts.n, opts.d, opts.threads, 2000)
    if opts.case == "large":
        return case_large(opts.n, opts.d, opts.threads, opts.method, 2000, opts.approx_sub, opts.memory_budget)
    return case_coretype(opts.n, opts.d, opts.threads, opts.method, opts.save)


def save(res: dict[str, Any], opts: argparse.Namespace) -> None:
    """Write what has been measured so far (after every part, so an interrupted run keeps its results)."""
    text = markdown(res)
    if opts.out:
        opts.out.write_text(text)
    if opts.json:
        opts.json.write_text(json.dumps(res, indent=1))


def main(argv: list[str] | None = None) -> None:
    """Run the child case, or every part in fresh children and print the markdown tables."""
    opts = parse(argv)
    if opts.gemm_ceiling:
        print(json.dumps(gemm_ceiling()))
        return
    if opts.case:
        print(json.dumps(run_case(opts)))
        return
    res: dict[str, Any] = {"threads": opts.threads, "env_coretype": os.environ.get("OPENBLAS_CORETYPE", "unset"),
                           "busy": opts.busy}  # fmt: skip
    steps = [("coretype", opts.skip_coretype, coretype_runs), ("exact", opts.skip_exact, exact_runs)]
    steps += [("approx", opts.skip_approx, approx_run), ("large", opts.skip_large, large_runs)]
    steps.append(("bank", opts.bank is None, bank_run))
    for name, skip, fn in steps:
        if not skip:
            start = time.perf_counter()
            with busy_load(opts.busy):
                res[name] = fn(opts)
            res[f"{name}_wall_s"] = time.perf_counter() - start
            save(res, opts)
    print(markdown(res))


if __name__ == "__main__":
    main()
