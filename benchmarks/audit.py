"""Audit speed: ``confident_learning`` on given pred_probs against calling cleanlab directly.

Each (N, K) case runs in a fresh child process. Inside it, ours (:func:`robustlabels.audit.confident_learning`:
``find_label_issues`` + quality scores + the calibrated joint) and cleanlab's ``find_label_issues`` alone run
interleaved (ABBA), so the ratio shares the machine's load; both use the same ``n_jobs``. Peak memory is the
``tracemalloc`` peak of each call (numpy reports its buffers to tracemalloc), beside the pred_probs' size.

    python benchmarks/audit.py --out /tmp/audit_speed.md
    python benchmarks/audit.py --knn 1000000,384,auto,faiss     # the kNN audit at 1M x 384 (SimiFeat)
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np

CASES = [(50_000, 10), (50_000, 100), (1_000_000, 10), (1_000_000, 100)]


def make_pred_probs(n: int, k: int, noise: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(labels, pred_probs)``: a confident-ish classifier (true class logit +4) with ``noise`` wrong labels."""
    rng = np.random.default_rng(seed)
    true = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)).astype(np.float32)
    logits[np.arange(n), true] += 4.0
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    labels = np.where(rng.random(n) < noise, rng.integers(0, k, n), true)
    return labels, probs


def measure(fn: Any) -> tuple[float, int]:
    """``(seconds, tracemalloc peak bytes)``: timed alone, then called again under tracemalloc (which slows
    allocation several-fold, so it never runs during the timed call)."""
    start = time.perf_counter()
    fn()
    seconds = time.perf_counter() - start
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return seconds, peak


def run_case(n: int, k: int, rounds: int, n_jobs: int) -> dict[str, Any]:
    from cleanlab.filter import find_label_issues

    from robustlabels.audit.confident import confident_learning

    labels, probs = make_pred_probs(n, k)
    methods = {
        "cleanlab find_label_issues": lambda: find_label_issues(labels, probs, n_jobs=n_jobs),
        "robustlabels confident_learning": lambda: confident_learning(labels, probs, n_jobs=n_jobs),
    }
    same = np.array_equal(find_label_issues(labels, probs, n_jobs=n_jobs),
                          confident_learning(labels, probs, n_jobs=n_jobs).flagged)  # fmt: skip
    times: dict[str, list[float]] = {m: [] for m in methods}
    peaks: dict[str, int] = {}
    for r in range(rounds):
        order = list(methods) if r % 2 == 0 else list(reversed(methods))  # ABBA
        for name in order:
            seconds, peak = measure(methods[name])
            times[name].append(seconds)
            peaks[name] = max(peaks.get(name, 0), peak)
    a, b = (times[m] for m in methods)
    return {"n": n, "k": k, "pred_probs_mb": probs.nbytes / 2**20, "same_flags": bool(same),
            "seconds": {m: statistics.median(t) for m, t in times.items()},
            "ratio": statistics.median(y / x for x, y in zip(a, b, strict=True)),
            "peak_mb": {m: p / 2**20 for m, p in peaks.items()}}  # fmt: skip


def status_kb(field: str) -> int:
    """A ``kB`` field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``)."""
    line = next(ln for ln in Path("/proc/self/status").read_text().splitlines() if ln.startswith(field + ":"))
    return int(line.split()[1])


def run_knn_case(n: int, d: int, index: str, backend: str) -> dict[str, Any]:
    """SimiFeat (``knn``) at ``n × d``: wall time, peak RSS above the features, F1 against the flips."""
    sys.path.insert(0, str(Path(__file__).parent))
    from knn import make_features  # the neighbour benchmark's seeded clustered features

    from robustlabels.audit.scoring import flag_metrics
    from robustlabels.audit.simifeat import simifeat

    x = make_features(n, d)
    rng = np.random.default_rng(1)  # classes = the mixture's 100 centres would be too easy; use 10 blocks of them
    true = np.argmax(x[:, :10], axis=1)
    noisy = np.where(rng.random(n) < 0.2, rng.integers(0, 10, n), true)
    baseline_kb = status_kb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak RSS (VmHWM) to the current RSS
    start = time.perf_counter()
    result = simifeat(x, noisy, num_classes=10, index=index, backend=backend, threads=2)  # "auto": choose_index
    seconds = time.perf_counter() - start
    peak_mb = (status_kb("VmHWM") - baseline_kb) / 1024
    return {"n": n, "d": d, "index": index, "backend": backend, "seconds": seconds, "features_mb": x.nbytes / 2**20,
            "peak_mb": peak_mb, "f1": flag_metrics(result.flagged, noisy != true)["f1"],
            "search": result.params.get("index", index)}  # fmt: skip


def markdown(rows: list[dict[str, Any]], n_jobs: int) -> str:
    lines = [f"`n_jobs={n_jobs}` for both; times are medians of interleaved rounds; peak = tracemalloc peak.", "",
             "| N | K | pred_probs (MB) | cleanlab (s) | ours (s) | ours / cleanlab | same flags | "
             "peak cleanlab (MB) | peak ours (MB) |", "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        (ca, ou), (pa, po) = r["seconds"].values(), r["peak_mb"].values()
        lines.append(f"| {r['n']:,} | {r['k']} | {r['pred_probs_mb']:.0f} | {ca:.2f} | {ou:.2f} | "
                     f"{r['ratio']:.3f} | {r['same_flags']} | {pa:.0f} | {po:.0f} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", help="N,K: run one case in this process and print JSON")
    parser.add_argument("--knn", metavar="N,D,INDEX,BACKEND", help="time the knn audit (SimiFeat) on one case")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--n-jobs", type=int, default=1)
    parser.add_argument("--out", help="write the markdown table here")
    args = parser.parse_args()
    if args.knn:
        n, d, index, backend = args.knn.split(",")
        print(json.dumps(run_knn_case(int(n), int(d), index, backend)))
        return
    if args.case:
        n, k = map(int, args.case.split(","))
        print(json.dumps(run_case(n, k, args.rounds, args.n_jobs)))
        return
    rows = []
    for n, k in CASES:
        cmd = [sys.executable, __file__, "--case", f"{n},{k}", "--rounds", str(args.rounds if n < 10**6 else 2),
               "--n-jobs", str(args.n_jobs)]  # fmt: skip
        rows.append(json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout))
        print(markdown(rows[-1:], args.n_jobs).splitlines()[-1], flush=True)
    table = markdown(rows, args.n_jobs)
    print(table)
    if args.out:
        with open(args.out, "w") as f:
            f.write(table)


if __name__ == "__main__":
    main()
