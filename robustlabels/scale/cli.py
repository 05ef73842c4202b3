"""``python -m robustlabels.audit --executor ray``: the kNN or confident-learning audit over sharded inputs on Ray.

Examples::

    python -m robustlabels.audit --executor ray --data feats/ --labels labels.npy --method knn --out a
    python -m robustlabels.audit --executor ray --data feats.npy --labels labels.npy --pred-probs probs/ \
        --method confident_learning --ray-address auto --out b

``--data`` is a features ``.npy`` (cut into ``--shard-rows`` ranges) or a folder of ``.npy`` shards whose rows,
in file-name order, are the examples; ``--pred-probs`` the same for probabilities; ``--labels`` (and
``--clean-labels``) ``(N,)`` ``.npy``/``.csv``. Writes, as one output set: ``scores.npy``, ``flagged.npy``,
``suggested.npy`` (``(N,)``, streamed shard by shard), ``issues.csv`` (the ``--top`` most suspicious examples,
from a running selection) and ``summary.json``. Intermediate shard files live in ``--out/.scale-work-<pid>`` and
are removed at the end. The local executor (the default) is unchanged; docs/scale.md compares them.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from robustlabels.arguments import integer, positive_integer
from robustlabels.errors import InputError
from robustlabels.io import atomic_open, atomic_write_text, read_labels
from robustlabels.output_set import OutputSet

OUTPUT_NAMES = ("issues.csv", "summary.json", "scores.npy", "flagged.npy", "suggested.npy")
METHODS = ("knn", "confident_learning")
INDEXES = ("auto", "flat", "ivf")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of the Ray executor (``--executor`` itself is the audit's)."""
    group = parser.add_argument_group("--executor ray (sharded inputs on a Ray cluster; docs/scale.md)")
    group.add_argument("--ray-address", metavar="ADDRESS", help="a running Ray cluster ('auto', 'ray://host:10001'); "
                       "default: a local cluster on this machine")  # fmt: skip
    group.add_argument("--num-cpus", type=positive_integer, help="CPUs of the local cluster (default: all)")
    group.add_argument("--shard-rows", type=positive_integer, help="rows per shard when a single .npy is cut "
                       "(default: 4 shards per CPU, at most 1,048,576 rows)")  # fmt: skip
    group.add_argument("--nlist", type=positive_integer, help="IVF lists (default: sqrt(N))")
    group.add_argument("--nprobe", type=positive_integer, help="IVF lists searched per query (default: 6)")
    group.add_argument("--top", type=integer(1), default=1000, help="suspects listed in issues.csv (1000)")


def check_args(args: argparse.Namespace) -> str:
    """The one method the Ray executor runs, or :class:`InputError` for what it does not take."""
    if args.dataset or not args.data:
        raise InputError("--executor ray reads --data FILE.npy or a folder of .npy shards, not --dataset")
    if not args.labels:
        raise InputError("--executor ray needs --labels (an (N,) .npy or .csv)")
    methods = [m.strip() for m in args.method.split(",") if m.strip()]
    if len(methods) != 1 or methods[0] not in METHODS:
        raise InputError(f"--method with --executor ray must be one of {', '.join(METHODS)}; got {args.method!r}")
    if methods[0] == "knn" and args.rule != "mv":
        raise InputError("--rule rank needs per-class percentiles over all rows: use --executor local")
    if methods[0] == "confident_learning" and not args.pred_probs:
        raise InputError("--method confident_learning with --executor ray needs --pred-probs (out-of-sample)")
    if methods[0] == "knn" and args.index.lower() not in INDEXES:
        raise InputError(f"--index with --executor ray must be one of {', '.join(INDEXES)}; got {args.index!r}")
    return methods[0]


def _shards(path: str, args: argparse.Namespace, what: str, cpus: int) -> list[Any]:
    from robustlabels.scale.executor import rows_per_task
    from robustlabels.scale.shards import list_shards

    rows = args.shard_rows
    if rows is None and not Path(path).is_dir():
        from robustlabels.io import load_npy

        rows = rows_per_task(load_npy(path, what=what, mmap=True).shape[0], cpus)
    return list_shards(path, shard_rows=rows, what=what)


def run(args: argparse.Namespace, method: str, work: Path) -> tuple[Any, np.ndarray]:
    """Run ``method`` on Ray; return the :class:`~robustlabels.scale.executor.ShardedResult` and the labels."""
    from robustlabels.noise.sample import validate_labels
    from robustlabels.scale import executor
    from robustlabels.scale.shards import columns

    labels = read_labels(args.labels)
    ray = executor.start_ray(args.ray_address, args.num_cpus)
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    if method == "knn":
        num_classes = int(labels.max(initial=0)) + 1
        if num_classes < 2:
            raise InputError(f"--labels {args.labels!r} holds one class; the kNN vote compares classes")
        shards = _shards(args.data, args, "--data", cpus)
        return executor.simifeat_on_ray(shards, labels, work, num_classes=num_classes, k=args.k, rounds=args.rounds,
                                        seed=args.seed, index=args.index.lower(), nlist=args.nlist,
                                        nprobe=args.nprobe), labels  # fmt: skip
    shards = _shards(args.pred_probs, args, "--pred-probs", cpus)
    num_classes = columns(shards)
    labels = validate_labels(labels, num_classes, name=f"--labels {args.labels!r}")
    return executor.confident_on_ray(shards, labels, work, num_classes=num_classes), labels


def write_outputs(files: OutputSet, result: Any, labels: np.ndarray, clean: np.ndarray | None, top: int,
                  extra: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    """Stream the shards' columns into the output set, list the top suspects; return the summary written."""
    from robustlabels.audit.scoring import flag_metrics
    from robustlabels.scale.shards import RunningTop, write_npy_blocks

    n = result.num_rows
    for name, dtype in (("scores", "<f8"), ("flagged", "|b1"), ("suggested", "<i8")):
        write_npy_blocks(files.path(f"{name}.npy"), result.column(name), shape=(n,), dtype=dtype)
    scores = np.load(files.path("scores.npy"), mmap_mode="r")
    flagged = np.load(files.path("flagged.npy"))
    suggested = np.load(files.path("suggested.npy"), mmap_mode="r")
    best = RunningTop(min(top, n))
    for start in range(0, n, 1 << 20):
        best.add(np.arange(start, min(start + (1 << 20), n)), scores[start : start + (1 << 20)])
    ids, values = best.result()
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["rank", "index", "given_label", "suggested_label", "score", "flagged"])
    for rank, (i, value) in enumerate(zip(ids, values, strict=True), start=1):
        writer.writerow([rank, int(i), int(labels[i]), int(suggested[i]), f"{value:.6g}", int(flagged[i])])
    atomic_write_text(files.path("issues.csv"), text.getvalue())
    noise = float(1 - np.trace(result.joint)) if result.joint is not None else float(flagged.mean())
    summary: dict[str, Any] = {
        "num_examples": n, "num_flagged": int(flagged.sum()), "noise_rate": noise, "executor": "ray",
        "method": result.method, "params": result.params, "peak_rss_mb": result.peak_rss_mb,
        "seconds": {k: round(v, 3) for k, v in result.seconds.items()}, **extra,
    }  # fmt: skip
    if result.joint is not None:
        summary["joint"] = np.round(result.joint, 6).tolist()
    if clean is not None:
        summary["flag_metrics"] = flag_metrics(flagged, clean != labels)
    with atomic_open(files.path("summary.json"), "w", encoding="utf-8") as handle:
        json.dump(summary, handle, indent=2, default=float)
    return summary


def main(args: argparse.Namespace, argv: list[str] | None) -> int:
    """The audit's ``--executor ray`` path: exit 0, 2 (bad input, one ``error:`` line) or 130 (Ctrl-C)."""
    from robustlabels.cli import error_line, report_error, report_interrupt

    try:
        method = check_args(args)
        clean = read_labels(args.clean_labels) if args.clean_labels else None
        inputs = [Path(p) for p in (args.data, args.labels, args.clean_labels, args.pred_probs) if p]
        with OutputSet(args.out, OUTPUT_NAMES, seal="summary.json", force=args.force, inputs=inputs) as files:
            work = Path(args.out) / f".scale-work-{os.getpid()}"
            start = time.perf_counter()
            try:
                result, labels = run(args, method, work)
                if clean is not None and len(clean) != len(labels):
                    raise InputError(f"--clean-labels has {len(clean)} entries, --labels {len(labels)}")
                command = shlex.join([sys.executable, "-m", "robustlabels.audit", *(argv or sys.argv[1:])])
                extra = {"command": command, "out": str(args.out),
                         "total_seconds": round(time.perf_counter() - start, 3)}  # fmt: skip
                summary = write_outputs(files, result, labels, clean, args.top, extra)
            finally:
                shutil.rmtree(work, ignore_errors=True)
    except (InputError, OSError) as err:
        return report_error(error_line(err))
    except KeyboardInterrupt:
        return report_interrupt(args.out)
    if args.format == "json":
        keys = ("num_examples", "num_flagged", "noise_rate", "method", "flag_metrics", "out")
        print(json.dumps({key: summary[key] for key in keys if key in summary}, default=float))
    else:
        print(f"\naudited {summary['num_examples']} examples with {method} on Ray ({result.params['shards']} shards): "
              f"{summary['num_flagged']} flagged, estimated noise rate {summary['noise_rate']:.2%}")  # fmt: skip
        if "flag_metrics" in summary:
            m = summary["flag_metrics"]
            print(f"against the clean labels: precision {m['precision']:.3f}, recall {m['recall']:.3f}, "
                  f"F1 {m['f1']:.3f} ({m['num_errors']} wrong labels)")  # fmt: skip
        print(f"wrote {', '.join(str(Path(args.out) / name) for name in OUTPUT_NAMES)}")
    return 0
