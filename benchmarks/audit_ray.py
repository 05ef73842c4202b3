"""The kNN audit (SimiFeat, rule mv) on Ray against the local executor, on clustered vectors with planted noise.

Synthetic data are written shard by shard (no ``(N, D)`` array in this process): ``--classes`` clusters, each a
centre plus a rank-16 spread and a little noise (low intrinsic dimension, as embeddings), the cluster as the true
label and ``--noise`` of the labels flipped to another class. The Ray run (``ray.init(num_cpus=--num-cpus)``) is
timed stage by stage; recall@10 of its sharded IVF search is measured on ``--recall-sample`` rows against an exact
search streamed over the shards; F1 of its flags against the planted noise; peak memory of every process.
``--local`` also runs the local executor (:func:`robustlabels.audit.simifeat.simifeat` on the features loaded
into memory) in the same process, after the Ray run, and reports the time ratio and whether the flags agree.

    python benchmarks/audit_ray.py --n 1000000 --d 128 --json /tmp/ray_1m.json
    python benchmarks/audit_ray.py --n 1000000 --d 384 --local --json /tmp/ray_1m_384.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

INTRINSIC = 16


def write_data(folder: Path, n: int, d: int, classes: int, noise: float, shard_rows: int, seed: int
               ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Feature shards ``folder/part-NNNNN.npy``; returns the true and the noisy labels."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((classes, d), dtype=np.float32)
    basis = rng.standard_normal((classes, INTRINSIC, d), dtype=np.float32) / math.sqrt(INTRINSIC)
    true = rng.integers(0, classes, n)
    noisy = true.copy()
    flip = rng.random(n) < noise
    noisy[flip] = (true[flip] + rng.integers(1, classes, int(flip.sum()))) % classes
    for number, start in enumerate(range(0, n, shard_rows)):
        rows = true[start : start + shard_rows]
        part_rng = np.random.default_rng([seed, number])
        x = 0.1 * part_rng.standard_normal((len(rows), d), dtype=np.float32)
        for c in np.unique(rows):  # per class: no (rows, INTRINSIC, d) gather of the bases
            mine = np.flatnonzero(rows == c)
            z = part_rng.standard_normal((mine.size, INTRINSIC), dtype=np.float32)
            x[mine] += centres[c] + 0.8 * (z @ basis[c])
        np.save(folder / f"part-{number:05d}.npy", x.astype(np.float32))
    return true, noisy


def exact_neighbours(shards: list, rows: np.ndarray, k: int) -> np.ndarray:
    """``(Q, k)`` exact cosine neighbours (own row excluded) of global ``rows``, streamed over the shards."""
    from robustlabels.neighbors.base import drop_self, normalize_rows
    from robustlabels.neighbors.faiss_index import import_faiss
    from robustlabels.scale.knn import unit_rows

    faiss = import_faiss()
    queries = []
    for shard in shards:
        mine = rows[(rows >= shard.first) & (rows < shard.first + shard.rows)]
        if mine.size:
            queries.append(unit_rows(shard)[mine - shard.first])
    q = normalize_rows(np.concatenate(queries))
    heap = faiss.ResultHeap(len(q), k + 1, keep_max=True)
    for shard in shards:
        sims, local = faiss.knn(q, unit_rows(shard), k + 1, metric=faiss.METRIC_INNER_PRODUCT)
        heap.add_result(sims, np.where(local >= 0, local + shard.first, -1))
    heap.finalize()
    return drop_self(heap.D, heap.I, rows)[1]


def sharded_neighbours(work: Path, shards: list, rows: np.ndarray, k: int) -> np.ndarray:
    """The Ray run's first ``k`` neighbours of global ``rows`` (from its per-shard list files)."""
    found = []
    for number, shard in enumerate(shards):
        mine = rows[(rows >= shard.first) & (rows < shard.first + shard.rows)]
        if mine.size:
            found.append(np.load(work / f"knn-{number:05d}-idx.npy", mmap_mode="r")[mine - shard.first, :k])
    return np.concatenate(found)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--d", type=int, default=128)
    p.add_argument("--classes", type=int, default=100)
    p.add_argument("--noise", type=float, default=0.2)
    p.add_argument("--shard-rows", type=int, default=125_000)
    p.add_argument("--num-cpus", type=int, default=2)
    p.add_argument("--recall-sample", type=int, default=2000)
    p.add_argument("--local", action="store_true", help="also run the local executor and compare")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--worker-niceness", type=int, default=0, help="Ray starts its workers at nice 15 unless told; "
                   "0 gives them the local executor's priority on a machine shared with other jobs (0)")  # fmt: skip
    p.add_argument("--tmp", default=None, help="folder for the shards and the work files (removed after)")
    p.add_argument("--json", help="write the measurements here")
    args = p.parse_args()

    from robustlabels.audit.scoring import flag_metrics
    from robustlabels.scale import executor
    from robustlabels.scale.knn import recall_at
    from robustlabels.scale.shards import list_shards

    tmp = Path(tempfile.mkdtemp(prefix="audit_ray_", dir=args.tmp))
    try:
        data, work = tmp / "features", tmp / "work"
        data.mkdir()
        start = time.perf_counter()
        true, noisy = write_data(data, args.n, args.d, args.classes, args.noise, args.shard_rows, args.seed)
        generated = time.perf_counter() - start
        shards = list_shards(data)
        os.environ["RAY_worker_niceness"] = str(args.worker_niceness)  # read when the local cluster starts
        executor.start_ray(num_cpus=args.num_cpus)
        start = time.perf_counter()
        result = executor.simifeat_on_ray(shards, noisy, work, num_classes=args.classes, index="ivf", seed=args.seed)
        ray_seconds = time.perf_counter() - start
        flagged = np.concatenate(list(result.column("flagged")))
        sample = np.sort(np.random.default_rng(1).choice(args.n, size=min(args.recall_sample, args.n), replace=False))
        recall = recall_at(sharded_neighbours(work, shards, sample, 10), exact_neighbours(shards, sample, 10))
        report = {
            "n": args.n, "d": args.d, "classes": args.classes, "noise": args.noise, "shards": len(shards),
            "num_cpus": args.num_cpus, "worker_niceness": args.worker_niceness,
            "generate_seconds": round(generated, 1), "ray_seconds": round(ray_seconds, 1),
            "ray_stages": {k: round(v, 1) for k, v in result.seconds.items()}, "index": result.params["index_used"],
            "nprobe": result.params["nprobe"], "search_k": result.params["search_k"], "recall_at_10": recall,
            "ray_flag_metrics": flag_metrics(flagged, true != noisy), "peak_rss_mb": result.peak_rss_mb,
            "disk_gb_features": round(sum(f.stat().st_size for f in data.glob("*.npy")) / 1e9, 2),
        }  # fmt: skip
        print(json.dumps(report, indent=1), flush=True)
        if args.local:
            from robustlabels.audit.simifeat import simifeat

            features = np.concatenate([s.read() for s in shards])
            start = time.perf_counter()
            local = simifeat(features, noisy, num_classes=args.classes, seed=args.seed)
            local_seconds = time.perf_counter() - start
            report.update({
                "local_seconds": round(local_seconds, 1), "local_index": local.params["index_used"],
                "ray_over_local": round(ray_seconds / local_seconds, 3),
                "local_flag_metrics": flag_metrics(local.flagged, true != noisy),
                "flags_agree": float((local.flagged == flagged).mean()),
                "driver_peak_rss_mb_after_local": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            })  # fmt: skip
            print(json.dumps({k: report[k] for k in report if "local" in k or k in ("ray_over_local", "flags_agree")},
                             indent=1), flush=True)  # fmt: skip
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=1))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
