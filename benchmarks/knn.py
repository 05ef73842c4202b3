"""k-NN search benchmark: our ``robustlabels.neighbors`` index against raw FAISS, torch and scikit-learn.

Every case runs in a fresh child process (``--case ...``) so that its peak memory is its own; inside a case
all methods run side by side, interleaved, so that their time ratios share the machine's load. Peak memory
of each step is the process's ``VmHWM`` (reset through ``/proc/self/clear_refs`` before the step) minus the
resident size once the features exist.

    python benchmarks/knn.py --out /tmp/knn.md --json /tmp/knn.json
"""

from __future__ import annotations

import argparse
import ctypes
import json
import math
import os
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
    mem: dict[str, float] = {}
    results: dict[str, Any] = {}
    for r in range(rounds):
        for m in methods if r % 2 == 0 else methods[::-1]:
            out, seconds, peak = measure(lambda m=m: EXACT_METHODS[m](x, threads), base)
            times[m].append(seconds)
            mem.setdefault(m, peak)
            results[m] = out
            print(f"  {n}x{d} {m}: {seconds:.2f} s, +{peak:.0f} MiB", file=sys.stderr, flush=True)
    ref = results.get("faiss")
    rows = []
    for m in methods:
        row = {"method": m, "seconds": min(times[m]), "times": times[m], "peak_mib": mem[m]}
        if ref is not None:
            row["ratio"] = statistics.median(a / b for a, b in zip(times[m], times["faiss"], strict=True))
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
    """Set ``nprobe`` (IVF) or ``ef_search`` (HNSW) on a built :class:`FaissIndex`."""
    import faiss

    if name == "nprobe":
        faiss.extract_index_ivf(index.index).nprobe = value
        index.nprobe = value
    else:
        index.ef_search = value


def _tune(index: Any, x: np.ndarray, sample: np.ndarray, exact: np.ndarray, name: str) -> dict[str, Any]:
    """Smallest ``name`` value of the grid with recall@10 >= 0.95 on the sample (else the largest tried)."""
    tried = []
    for value in SEARCH_GRID[name]:
        _set_param(index, name, value)
        idx, seconds, _ = measure(lambda: _search_sub(index, x, sample), 0)
        tried.append({"value": value, "recall": _recall(idx, exact), "sample_seconds": seconds})
        print(f"    {name}={value}: recall {tried[-1]['recall']:.4f}", file=sys.stderr, flush=True)
        if tried[-1]["recall"] >= 0.95:
            break
    return {"param": name, "tried": tried, **tried[-1]}


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
    for factory, param in ((f"IVF{nlist},Flat", "nprobe"), ("HNSW32", "ef_search")):
        print(f"  building {factory}", file=sys.stderr, flush=True)
        index, build_s, build_mem = measure(lambda f=factory: build(x, metric="cosine", index=f, threads=threads), base)
        tuned = _tune(index, x, sample, exact, param)
        _, sub_s, search_mem = measure(lambda index=index: _search_sub(index, x, sub), base)
        rows.append({"index": factory, "setting": f"{param}={tuned['value']}", "build_s": build_s, "sub_s": sub_s,
                     "recall": tuned["recall"], "sample_s": tuned["sample_seconds"], "tried": tuned["tried"],
                     "peak_mib": max(build_mem, search_mem)})  # fmt: skip
        del index
    for row in rows:
        row["all_s"] = row["sub_s"] * n / n_sub
        row["speedup"] = rows[0]["all_s"] / row["all_s"]
        row["speedup_with_build"] = (rows[0]["all_s"] + rows[0]["build_s"]) / (row["all_s"] + row["build_s"])
    return {"n": n, "d": d, "n_sample": n_sample, "n_sub": n_sub, "features_mib": x.nbytes / 2**20,
            "openblas": openblas_corename(), "rows": rows}  # fmt: skip


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
            methods = ["ours", "faiss", "torch"]
            if not opts.skip_sklearn and n <= 50_000 and n * d <= opts.sklearn_max:
                methods.append("sklearn")
            rounds = 2 if n * n * d <= 50_000**2 * 128 else 1
            args = ["--case", "exact", "--n", str(n), "--d", str(d), "--methods", ",".join(methods)]
            cases.append(child([*args, "--rounds", str(rounds), "--threads", str(opts.threads)]))
    return cases


def approx_run(opts: argparse.Namespace) -> dict[str, Any]:
    """The approximate case at ``--approx-n`` x 128 in a fresh child."""
    args = ["--case", "approx", "--n", str(opts.approx_n), "--d", "128", "--approx-sub", str(opts.approx_sub)]
    return child([*args, "--threads", str(opts.threads)])


def _table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def markdown(res: dict[str, Any]) -> str:
    """Markdown tables of every part that ran."""
    parts = []
    exact_rows = [
        [f"{c['n']:,}", str(c["d"]), r["method"], f"{r['seconds']:.2f}", f"{r.get('ratio', 0):.3f}×",
         f"{r.get('same', 0):.4f}", f"{r.get('same_ties', 0):.4f}", f"{r['peak_mib']:.0f}",
         f"{r['peak_mib'] / c['features_mib']:.2f}×"]
        for c in res.get("exact", []) for r in c["rows"]
    ]  # fmt: skip
    if exact_rows:
        head = ["N", "d", "method", "seconds (best)", "× raw FAISS", "same sets", "same up to ties",
                "peak RSS − base (MiB)", "× features"]  # fmt: skip
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
    p.add_argument("--sklearn-max", type=int, default=50_000 * 512, help="largest N*d for scikit-learn (N <= 50k)")
    p.add_argument("--max-nd", type=int, default=200_000 * 512, help="largest N*d for the exact cases")
    p.add_argument("--out", type=Path)
    p.add_argument("--json", type=Path)
    p.add_argument("--case", choices=("exact", "approx", "coretype"))
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
    if opts.case:
        print(json.dumps(run_case(opts)))
        return
    res: dict[str, Any] = {"threads": opts.threads, "env_coretype": os.environ.get("OPENBLAS_CORETYPE", "unset")}
    steps = [("coretype", opts.skip_coretype, coretype_runs), ("exact", opts.skip_exact, exact_runs)]
    steps.append(("approx", opts.skip_approx, approx_run))
    for name, skip, fn in steps:
        if not skip:
            start = time.perf_counter()
            res[name] = fn(opts)
            res[f"{name}_wall_s"] = time.perf_counter() - start
            save(res, opts)
    print(markdown(res))


if __name__ == "__main__":
    main()
