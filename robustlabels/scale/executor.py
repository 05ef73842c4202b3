"""The audit's sharded passes on Ray: Ray Data ``map_batches`` for model passes, Ray tasks for FAISS and scores.

Every pass works shard by shard (:mod:`robustlabels.scale.shards`) and writes each shard's result to its own file,
named by the shard's number and replaced atomically, so a task that Ray retries after its worker died rewrites the
same file: no row is lost or written twice. Nothing holds an ``(N, D)`` or ``(N, k)`` array in one process; the
driver keeps ``(N,)`` label vectors, the rounds' bit-packed subsample masks and ``(C³,)`` counts.

- :func:`embed_shards`: an embedding or probability pass, ``ray.data`` over the shard list, one shard per batch,
  through an actor pool of a callable class (a model loaded once per actor), writing ``part-NNNNN.npy``;
- :func:`knn_graph`: IVF shards trained once, added in parallel tasks, merged on disk, then searched per shard
  (or exact flat shards), giving each shard's ``(R, width)`` neighbour lists (:mod:`robustlabels.scale.knn`);
- :func:`simifeat_on_ray`: SimiFeat's rule ``mv`` per shard, HOC's counts added up (:mod:`robustlabels.scale.simifeat`);
- :func:`confident_on_ray`: cleanlab's two passes per shard, thresholds merged in between
  (:mod:`robustlabels.scale.confident`).

Each task reports its worker's peak resident memory (``ru_maxrss``), collected per process in
:attr:`ShardedResult.peak_rss_mb`. Tested in ``tests/scale/test_ray_audit.py``; measured in
``benchmarks/audit_ray.py`` and ``docs/scale.md``.
"""

from __future__ import annotations

import math
import os
import resource
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from robustlabels.errors import InputError
from robustlabels.io import load_npy
from robustlabels.scale import confident, knn
from robustlabels.scale.shards import Shard, list_shards, save_npy, total_rows

TASK_RETRIES = 3  # a task whose worker dies is run again (its output file is replaced, not duplicated)


def start_ray(address: str | None = None, num_cpus: int | None = None) -> Any:
    """``ray.init`` once per process (a local cluster unless ``address``), quiet; returns the ``ray`` module."""
    try:
        import ray
    except ImportError:
        raise InputError("--executor ray needs Ray: pip install -e '.[ray]'") from None
    if not ray.is_initialized():
        ray.init(address=address, num_cpus=None if address else num_cpus, include_dashboard=False,
                 log_to_driver=False, logging_level="ERROR")  # fmt: skip
        import ray.data

        ray.data.DataContext.get_current().enable_progress_bars = False
    return ray


def peak_rss() -> tuple[int, float]:
    """``(pid, peak resident MiB)`` of this process."""
    return os.getpid(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass
class ShardedResult:
    """A sharded method's verdict, shard by shard: ``parts[i]`` maps ``scores``, ``flagged`` and ``suggested`` to
    the ``.npy`` files of shard ``i``'s rows (in shard order, so they concatenate to the ``(N,)`` vectors).

    ``joint`` ``(C, C)`` (rows true) or ``None``; ``params`` as in ``summary.json``; ``seconds`` per stage;
    ``peak_rss_mb`` the peak resident memory of every process that ran a task, and of the driver.
    """

    method: str
    parts: list[dict[str, str]]
    num_rows: int
    joint: np.ndarray | None = None
    params: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    peak_rss_mb: dict[str, float] = field(default_factory=dict)

    def column(self, name: str) -> Iterator[np.ndarray]:
        """The shards' blocks of one output (``scores``, ``flagged``, ``suggested``), in row order."""
        for part in self.parts:
            yield np.load(part[name], mmap_mode="r")


class _Peaks:
    """Peak memory per process, from the ``(pid, MiB)`` pairs tasks return."""

    def __init__(self) -> None:
        self.mb: dict[str, float] = {}

    def note(self, pid_mb: tuple[int, float]) -> None:
        pid, mb = pid_mb
        self.mb[f"worker {pid}"] = max(self.mb.get(f"worker {pid}", 0.0), round(mb, 1))

    def with_driver(self) -> dict[str, float]:
        return {**self.mb, "driver": round(peak_rss()[1], 1)}


def _remote(ray: Any, fn: Callable[..., Any]) -> Any:
    return ray.remote(num_cpus=1, max_retries=TASK_RETRIES)(fn)


# ------------------------------------------------------------------------------------------ model passes (Ray Data)
class _ShardPass:
    """Ray Data callable class: one model per actor; each batch lists shards, each shard's output is one file."""

    def __init__(self, model: Callable[[], Callable[[np.ndarray], np.ndarray]], out_dir: str) -> None:
        self.model = model()
        self.out_dir = Path(out_dir)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = []
        for path, start, stop, first, number in zip(batch["path"], batch["start"], batch["stop"], batch["first"],
                                                    batch["number"], strict=True):  # fmt: skip
            out = np.asarray(self.model(Shard(str(path), int(start), int(stop), int(first)).read()))
            if out.ndim != 2 or len(out) != stop - start:
                raise ValueError(f"the model returned shape {out.shape} for {stop - start} rows")
            save_npy(self.out_dir / f"part-{int(number):05d}.npy", out)
            rows.append(len(out))
        return {"number": batch["number"], "rows": np.asarray(rows, dtype=np.int64)}


def embed_shards(shards: list[Shard], out_dir: str | Path, model: Callable[[], Callable[[np.ndarray], np.ndarray]], *,
                 workers: int = 2) -> list[Shard]:  # fmt: skip
    """Run ``model()(rows)`` over every shard with Ray Data and return the output shards (same row order).

    Args:
        shards: the input shards.
        out_dir: where ``part-NNNNN.npy`` go, one per input shard.
        model: a picklable factory, called once per actor, returning ``(R, D_in) -> (R, D_out)`` (an encoder
            giving embeddings, or a classifier giving probabilities).
        workers: actors in the pool (Ray Data's ``ActorPoolStrategy(size=workers)``).
    """
    ray = start_ray()  # imports ray.data too
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    items = [{**asdict(s), "number": i} for i, s in enumerate(shards)]
    dataset = ray.data.from_items(items, override_num_blocks=len(items))
    done = dataset.map_batches(_ShardPass, fn_constructor_kwargs={"model": model, "out_dir": str(out)}, batch_size=1,
                               compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=1).take_all()  # fmt: skip
    numbers = sorted(int(row["number"]) for row in done)
    if numbers != list(range(len(shards))):  # Ray Data runs each batch once to completion, retries included
        raise RuntimeError(f"the pass returned shards {numbers}, expected 0..{len(shards) - 1} once each")
    return list_shards(out, what="pass output")


# ------------------------------------------------------------------------------------------------ the kNN graph
def _add_task(trained: bytes, shard: Shard, path: str) -> tuple[str, tuple[int, float]]:
    knn.add_shard(trained, shard, path)
    return path, peak_rss()


def _save_lists(sims: np.ndarray, idx: np.ndarray, out: str) -> dict[str, str]:
    paths = {"sims": f"{out}-sims.npy", "idx": f"{out}-idx.npy"}
    save_npy(paths["sims"], sims)
    save_npy(paths["idx"], idx)
    return paths


def _search_ivf_task(index_path: str, shard: Shard, width: int, nprobe: int, out: str) -> tuple[dict, tuple]:
    return _save_lists(*knn.search_ivf_shard(index_path, shard, width, nprobe=nprobe), out), peak_rss()


def _search_flat_task(shards: list[Shard], shard: Shard, width: int, out: str) -> tuple[dict, tuple]:
    return _save_lists(*knn.search_flat_shard(shards, shard, width), out), peak_rss()


@dataclass
class Graph:
    """Each shard's neighbour-list files (``sims``, ``idx``: ``(R, width)``), what was built, and stage times."""

    lists: list[dict[str, str]]
    index: str
    nprobe: int | None
    seconds: dict[str, float]


def knn_graph(shards: list[Shard], work: str | Path, width: int, *, index: str = "auto", nlist: int | None = None,
              nprobe: int | None = None, seed: int = 0, peaks: _Peaks | None = None) -> Graph:  # fmt: skip
    """All-vs-all cosine neighbour lists (own row excluded), ``width`` per row, built and searched per shard.

    ``index``: ``"flat"`` (exact), ``"ivf"`` (IVF shards merged on disk; ``nlist``/``nprobe`` default to
    :func:`robustlabels.scale.knn.choose_ivf`) or ``"auto"`` (flat below 100,000 points, as the local audit).
    """
    ray = start_ray()
    peaks = peaks or _Peaks()
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    n = total_rows(shards)
    kind = ("flat" if n < knn.FLAT_BELOW else "ivf") if index == "auto" else index
    seconds: dict[str, float] = {}
    outs = [str(work / f"knn-{i:05d}") for i in range(len(shards))]
    if kind == "flat":
        start = time.perf_counter()
        search = _remote(ray, _search_flat_task)
        shards_ref = ray.put(shards)
        done = ray.get([search.remote(shards_ref, s, width, o) for s, o in zip(shards, outs, strict=True)])
        seconds["search"] = time.perf_counter() - start
        used, probe = "Flat (exact, per shard)", None
    elif kind == "ivf":
        nlist, probe = knn.choose_ivf(n, nlist, nprobe)
        start = time.perf_counter()
        trained = knn.train_ivf(knn.training_sample(shards, nlist, seed), nlist, seed=seed)
        seconds["train"] = time.perf_counter() - start
        start = time.perf_counter()
        add = _remote(ray, _add_task)
        trained_ref = ray.put(trained)
        added = ray.get([add.remote(trained_ref, s, str(work / f"ivf-{i:05d}.index")) for i, s in enumerate(shards)])
        for _, rss in added:
            peaks.note(rss)
        seconds["add"] = time.perf_counter() - start
        start = time.perf_counter()
        merged = knn.merge_shards(trained, [path for path, _ in added], work / "merged.index")
        for path, _ in added:
            Path(path).unlink()
        seconds["merge"] = time.perf_counter() - start
        start = time.perf_counter()
        search = _remote(ray, _search_ivf_task)
        done = ray.get([search.remote(str(merged), s, width, probe, o) for s, o in zip(shards, outs, strict=True)])
        seconds["search"] = time.perf_counter() - start
        used = f"IVF{nlist},Flat (shards merged on disk)"
    else:
        raise InputError(f"--index with --executor ray must be auto, flat or ivf; got {index!r}")
    for _, rss in done:
        peaks.note(rss)
    return Graph([paths for paths, _ in done], used, probe, seconds)


# ---------------------------------------------------------------------------------------------------- SimiFeat
def _votes_task(shard: Shard, lists: dict[str, str], labels: np.ndarray, packed: np.ndarray, k: int, num_classes: int,
                out: str) -> tuple[dict[str, str], np.ndarray, tuple]:  # fmt: skip
    from robustlabels.scale import simifeat  # imports torch (through HOC): only in the workers that vote

    sims, idx = np.load(lists["sims"]), np.load(lists["idx"])
    n = len(labels)

    def masks() -> Iterator[np.ndarray]:  # one unpacked (N,) mask at a time
        return (np.unpackbits(row, count=n).view(bool) for row in packed)

    counts = simifeat.shard_triplet_counts(sims, idx, shard.first, labels, masks(), num_classes)
    scores, flagged, suggested = simifeat.shard_votes(sims, idx, shard.first, labels, masks(), k=k,
                                                      num_classes=num_classes)  # fmt: skip
    paths = {"scores": f"{out}-scores.npy", "flagged": f"{out}-flagged.npy", "suggested": f"{out}-suggested.npy"}
    for name, array in (("scores", scores), ("flagged", flagged), ("suggested", suggested)):
        save_npy(paths[name], array)
    return paths, counts, peak_rss()


def simifeat_on_ray(shards: list[Shard], labels: np.ndarray, work: str | Path, *, num_classes: int, k: int = 10,
                    rounds: int = 21, subsample: float = 0.9, seed: int = 0, index: str = "auto",
                    nlist: int | None = None, nprobe: int | None = None, hoc_steps: int | None = None,
                    search_k: int | None = None) -> ShardedResult:  # fmt: skip
    """SimiFeat (rule ``mv``) over sharded features on Ray; per row equal to
    :func:`robustlabels.audit.simifeat.simifeat` given the same neighbour lists (exact with ``index="flat"``)."""
    from robustlabels.audit.hoc import STEPS, hoc_estimate
    from robustlabels.audit.simifeat import default_search_k
    from robustlabels.scale import simifeat

    ray = start_ray()
    simifeat.check_classes(num_classes)
    n = total_rows(shards)
    if len(labels) != n:
        raise InputError(f"the labels have {len(labels)} entries but the features have {n} rows")
    size = int(n * subsample)
    if not 3 <= k <= size:
        raise InputError(f"--k must be in [3, {size}]; got {k}")
    width = search_k or default_search_k(k, subsample, n)
    peaks = _Peaks()
    graph = knn_graph(shards, work, width, index=index, nlist=nlist, nprobe=nprobe, seed=seed, peaks=peaks)
    start = time.perf_counter()
    labels_ref = ray.put(np.asarray(labels, dtype=np.int64))
    packed_ref = ray.put(simifeat.packed_masks(n, size, rounds, seed))
    votes = _remote(ray, _votes_task)
    done = ray.get([votes.remote(s, lists, labels_ref, packed_ref, k, num_classes, str(Path(work) / f"votes-{i:05d}"))
                    for i, (s, lists) in enumerate(zip(shards, graph.lists, strict=True))])  # fmt: skip
    seconds = {**graph.seconds, "votes": time.perf_counter() - start}
    total = np.sum([counts for _, counts, _ in done], axis=0)
    for _, _, rss in done:
        peaks.note(rss)
    start = time.perf_counter()
    c = num_classes
    codes = np.flatnonzero(total)
    if not codes.size:
        raise InputError("no sampled point has two sampled neighbours; raise --k or the subsample")
    triplets = np.stack([codes // (c * c), (codes // c) % c, codes % c], axis=1)
    hoc = hoc_estimate(triplets, num_classes=c, weights=total[codes].astype(np.float64), steps=hoc_steps or STEPS,
                       seed=seed)  # fmt: skip
    seconds["hoc"] = time.perf_counter() - start
    params = {"k": k, "rule": "mv", "rounds": rounds, "subsample": subsample, "seed": seed, "index": index,
              "index_used": graph.index, "nprobe": graph.nprobe, "search_k": int(width), "metric": "cosine",
              "joint": "hoc", "shards": len(shards), "executor": "ray"}  # fmt: skip
    return ShardedResult("knn", [paths for paths, _, _ in done], n, hoc.joint, params, seconds, peaks.with_driver())


# ------------------------------------------------------------------------------------------- confident learning
def _threshold_task(shard: Shard, labels: np.ndarray, num_classes: int) -> tuple[confident.Thresholds, tuple]:
    rows = labels[shard.first : shard.first + shard.rows]
    return confident.threshold_pass(rows, _mapped(shard), num_classes=num_classes), peak_rss()


def _score_task(shard: Shard, labels: np.ndarray, thresholds: confident.Thresholds, out: str
                ) -> tuple[dict[str, str], int, tuple]:  # fmt: skip
    part = confident.score_pass(labels[shard.first : shard.first + shard.rows], _mapped(shard), thresholds)
    paths = {name: f"{out}-{name}.npy" for name in ("quality", "argmax_is_given", "suggested")}
    for name in paths:
        save_npy(paths[name], getattr(part, name))
    return paths, part.confident_issues, peak_rss()


def _mapped(shard: Shard) -> np.ndarray:
    """The shard's rows, memory-mapped (pass 1 and 2 read them batch by batch)."""
    return load_npy(shard.path, what="shard", mmap=True)[shard.start : shard.stop]


def confident_on_ray(shards: list[Shard], labels: np.ndarray, work: str | Path, *, num_classes: int) -> ShardedResult:
    """cleanlab's low-memory confident learning over sharded probabilities on Ray (two passes; see
    :mod:`robustlabels.scale.confident`); equal to
    :func:`~robustlabels.scale.confident.confident_learning_out_of_core`."""
    ray = start_ray()
    n = total_rows(shards)
    if len(labels) != n:
        raise InputError(f"the labels have {len(labels)} entries but --pred-probs has {n} rows")
    peaks, seconds, work = _Peaks(), {}, Path(work)
    work.mkdir(parents=True, exist_ok=True)
    labels_ref = ray.put(np.asarray(labels, dtype=np.int64))
    start = time.perf_counter()
    first = ray.get([_remote(ray, _threshold_task).remote(s, labels_ref, num_classes) for s in shards])
    thresholds = confident.Thresholds.merge(t for t, _ in first)
    seconds["thresholds"] = time.perf_counter() - start
    start = time.perf_counter()
    score = _remote(ray, _score_task)
    second = ray.get([score.remote(s, labels_ref, thresholds, str(work / f"cl-{i:05d}")) for i, s in enumerate(shards)])
    seconds["scores"] = time.perf_counter() - start
    start = time.perf_counter()
    num_issues = int(sum(count for _, count, _ in second))
    quality = [(s.ids, np.load(paths["quality"], mmap_mode="r")) for s, (paths, _, _) in zip(shards, second,
                                                                                             strict=True)]  # fmt: skip
    flagged_ids = confident.lowest(quality, num_issues)
    parts = []
    for i, (s, (paths, _, _)) in enumerate(zip(shards, second, strict=True)):
        mine = flagged_ids[(flagged_ids >= s.first) & (flagged_ids < s.first + s.rows)] - s.first
        flagged = np.zeros(s.rows, dtype=bool)
        flagged[mine] = True
        flagged &= ~np.load(paths["argmax_is_given"])
        out = {"scores": f"{work}/cl-{i:05d}-scores.npy", "flagged": f"{work}/cl-{i:05d}-flagged.npy",
               "suggested": paths["suggested"]}  # fmt: skip
        save_npy(out["scores"], 1.0 - np.load(paths["quality"]))
        save_npy(out["flagged"], flagged)
        parts.append(out)
    seconds["select"] = time.perf_counter() - start
    for item in (*first, *second):
        peaks.note(item[-1])
    params = {"filter_by": "low_self_confidence (batched, sharded)", "rank_by": "self_confidence",
              "num_issues": num_issues, "thresholds": [round(float(t), 6) for t in thresholds.values],
              "shards": len(shards), "executor": "ray"}  # fmt: skip
    return ShardedResult("confident_learning", parts, n, None, params, seconds, peaks.with_driver())


def rows_per_task(n: int, cpus: int, *, at_most: int = 1 << 20) -> int:
    """Rows per shard when one file is cut: at least 4 shards per CPU (load balance), at most ``at_most`` rows."""
    return max(1, min(at_most, math.ceil(n / (4 * cpus))))
