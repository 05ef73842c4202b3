"""Inject synthetic label noise once, with a seed, and save it: ``python -m robustlabels.inject``.

Example::

    python -m robustlabels.inject --dataset cifar10 --noise symmetric --rate 0.4 --seed 1 --out runs/noise/c10

writes ``OUT/labels.npy`` (int64), ``OUT/labels.csv`` (``index,label``) and ``OUT/manifest.json``. With
``--pairs FILE`` (preference pairs, docs/pairs.md) the noise swaps chosen and rejected: label 1 marks a swapped pair,
and the swapped pairs are written as ``OUT/pairs.jsonl`` (or ``OUT/pairs.npy`` for ``(N, 2, D)`` features). The
manifest has no timestamps, so the same inputs and seed give byte-identical files. Noise is data: train
from the saved labels (``LabelsFile``) instead of regenerating them. ``T[i, j] = P(noisy=j | true=i)``.
The files are written as one set that appears whole or not at all, even when the run is killed
(:class:`robustlabels.output_set.OutputSet`). User errors print one ``error: ...`` line on stderr and exit with code 2;
Ctrl-C prints one ``interrupted: ...`` line and exits with code 130.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from robustlabels.arguments import OneLineParser, integer, seed
from robustlabels.checks import BYTES_PER_MATRIX_CELL, check_allocation, check_finite_rows
from robustlabels.cli import error_line, report_error, report_interrupt
from robustlabels.errors import InputError
from robustlabels.io import (
    atomic_save_npy,
    atomic_write_text,
    load_npy,
    read_labels,
    reading,
    sha256_of_array,
    sha256_of_file,
)
from robustlabels.noise import (
    Cifar10AsymmetricNoise,
    Cifar100AsymmetricNoise,
    DifficultySwapNoise,
    InstanceDependentNoise,
    MatrixNoise,
    NoiseModel,
    NoisyLabels,
    PairFlipNoise,
    SymmetricNoise,
    SystematicAnnotatorNoise,
    flips_per_class,
)
from robustlabels.output_set import OutputSet

NOISE_CHOICES = (
    "symmetric",
    "symmetric_incl",
    "pairflip",
    "cifar10_asym",
    "cifar10_asym_elr",
    "cifar100_block",
    "cifar100_superclass",
    "instance",
    "matrix",
    "difficulty",
    "longer",
    "shorter",
)
PAIR_NOISE = ("difficulty", "longer", "shorter")  # --pairs only; symmetric works on pairs too
#: ``--noise`` choices that take ``--rate``: the model class and its fixed options (instance: special-cased).
_RATE_PRESETS: dict[str, tuple[Callable[..., NoiseModel], dict[str, Any]]] = {
    "symmetric": (SymmetricNoise, {"include_true_class": False}),
    "symmetric_incl": (SymmetricNoise, {"include_true_class": True}),
    "pairflip": (PairFlipNoise, {}),
    "cifar10_asym": (Cifar10AsymmetricNoise, {}),  # the clean definition: r of each source class moves
    "cifar10_asym_elr": (Cifar10AsymmetricNoise, {"variant": "elr_realised"}),  # what ELR's code realises
    "cifar100_block": (Cifar100AsymmetricNoise, {"variant": "block"}),
    "cifar100_superclass": (Cifar100AsymmetricNoise, {"variant": "superclass"}),
}
OUTPUT_NAMES = ("labels.npy", "labels.csv", "manifest.json")
PAIR_OUTPUT_NAMES = ("pairs.jsonl", "pairs.npy")  # --pairs writes one of them
CONVENTION = "T[i, j] = P(noisy=j | true=i)"


@dataclass(frozen=True)
class Source:
    """Clean labels to corrupt: ``labels`` ``(N,)`` int64, optional ``features`` ``(N, ...)``."""

    labels: np.ndarray
    features: np.ndarray | None
    num_classes: int
    description: dict[str, Any]


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser."""
    parser = OneLineParser(
        prog="python -m robustlabels.inject",
        description="Corrupt labels with seeded synthetic noise and save labels.npy, labels.csv and "
        "manifest.json. Convention: " + CONVENTION + ".",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--dataset", metavar="NAME", help="a dataset of robustlabels.data.catalog")
    source.add_argument("--labels", metavar="FILE", help="clean labels, .npy or .csv (column label)")
    source.add_argument("--pairs", metavar="FILE", help="preference pairs: .jsonl/.csv (chosen, rejected) or (N, 2, D) "
                        ".npy; the noise swaps chosen and rejected (difficulty: P(swap) = sigmoid(-beta gap) from "
                        "score_chosen - score_rejected; longer/shorter: an annotator labels a --rate share by length)")
    parser.add_argument("--root", metavar="DIR", help="dataset root (with --dataset)")
    parser.add_argument("--num-classes", type=integer(2), help="default: the dataset's, or max label + 1")
    parser.add_argument("--noise", required=True, choices=NOISE_CHOICES)
    parser.add_argument("--rate", type=float, help="noise rate in [0, 1] (all but --noise matrix)")
    parser.add_argument("--matrix", metavar="FILE", help="row-stochastic (C, C) .npy/.csv for matrix")
    parser.add_argument("--features", metavar="FILE", help="(N, ...) .npy inputs for instance noise")
    parser.add_argument(
        "--exact",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="flip exactly round(rate * n_k) per class (cifar10_asym_elr: ceil(rate * m) per step); default: "
        "the noise model's own",
    )
    parser.add_argument("--seed", type=seed, default=0, help="seed of the noise draw, in [0, 2^32 - 1] (0)")
    parser.add_argument("--out", required=True, metavar="DIR")
    parser.add_argument("--force", action="store_true", help="overwrite existing output files")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    return parser


def build_noise_model(
    noise: str, *, rate: float | None, matrix: str | None, exact: bool | None
) -> NoiseModel:
    """The :class:`NoiseModel` for a ``--noise`` choice; raise :class:`InputError` on missing options."""
    exact_kw = {} if exact is None else {"exact": exact}
    if noise == "matrix":
        if matrix is None or rate is not None:
            raise InputError("--noise matrix needs --matrix FILE and takes no --rate")
        return MatrixNoise(matrix, **exact_kw)
    if rate is None:
        raise InputError(f"--noise {noise} needs --rate")
    if matrix is not None:
        raise InputError("--matrix applies only to --noise matrix")
    if noise in PAIR_NOISE:
        if exact is not None:
            raise InputError(f"--exact does not apply to --noise {noise}")
        if noise == "difficulty":
            return DifficultySwapNoise(rate)
        return SystematicAnnotatorNoise(noise, fraction=rate)  # type: ignore[arg-type]
    if noise == "instance":
        if exact is not None:
            raise InputError("--exact does not apply to --noise instance")
        return InstanceDependentNoise(rate)
    if noise not in _RATE_PRESETS:
        raise InputError(f"unknown noise {noise!r}; known: {', '.join(NOISE_CHOICES)}")
    factory, options = _RATE_PRESETS[noise]
    return factory(rate, **options, **exact_kw)


def load_source(args: argparse.Namespace, *, needs_features: bool) -> Source:
    """Read the clean labels (and features for instance noise) from ``--labels`` or ``--dataset``."""
    if args.features is not None and not needs_features:
        raise InputError("--features applies only to --noise instance")
    features = load_npy(args.features, what="features file", mmap=True) if args.features else None
    if args.pairs is not None:
        return load_pairs_source(args)
    if args.noise in PAIR_NOISE:
        raise InputError(f"--noise {args.noise} applies to preference pairs: give --pairs FILE")
    if args.labels is not None:
        if args.root is not None:
            raise InputError("--root applies only to --dataset")
        if needs_features and features is None:
            raise InputError("--noise instance with --labels needs --features FILE.npy")
        labels = read_labels(args.labels)
        if labels.size == 0:
            raise InputError(f"labels file {args.labels!r} holds no labels")
        num_classes = args.num_classes if args.num_classes is not None else int(labels.max()) + 1
        description = {
            "labels_file": str(Path(args.labels).resolve()),
            "labels_file_sha256": sha256_of_file(args.labels),
        }
        return Source(labels, features, num_classes, description)
    arrays = _load_dataset(args.dataset, args.root)
    if needs_features and features is None:
        features = np.asarray(arrays.inputs)
    num_classes = args.num_classes if args.num_classes is not None else int(arrays.num_classes)
    description = {"dataset": args.dataset, "split": "train"}
    return Source(np.asarray(arrays.labels), features, num_classes, description)


def check_source(source: Source, args: argparse.Namespace) -> None:
    """Refuse, before drawing any noise, what the noise cannot be drawn from: more classes than memory holds the
    ``(C, C)`` matrices of, labels outside ``[0, C)``, and features that do not fit the labels (shape, NaN)."""
    labels_from = _labels_name(args)
    if source.num_classes < 2:
        raise InputError(f"{labels_from} holds only class 0; noise needs at least 2 classes: give --num-classes")
    classes = f"--num-classes {source.num_classes}" if args.num_classes else f"{source.num_classes} classes"
    check_allocation(f"{classes} ({labels_from})", source.num_classes**2 * BYTES_PER_MATRIX_CELL)
    outside = np.flatnonzero((source.labels < 0) | (source.labels >= source.num_classes))
    if outside.size:
        where = "--num-classes" if args.num_classes else "the largest label + 1"
        raise InputError(f"{labels_from}: value {int(source.labels[outside[0]])} at position {int(outside[0])} is "
                         f"outside [0, {source.num_classes}) ({where})")  # fmt: skip
    if source.features is not None and args.pairs is None:
        check_features(source.features, len(source.labels), _features_name(args))


def check_features(features: np.ndarray, num_labels: int, name: str) -> None:
    """Numeric ``(N, ...)`` features, one row per label and no NaN or inf, or one line naming ``name``."""
    if not (np.issubdtype(features.dtype, np.number) or features.dtype == np.bool_):
        raise InputError(f"{name} must hold numbers; got dtype {features.dtype}")
    if features.ndim < 2 or features.shape[0] != num_labels:
        raise InputError(f"{name} must have shape (N, ...) with N = {num_labels}, a row per label; got "
                         f"{features.shape}")  # fmt: skip
    check_finite_rows(features, name=name)


def _labels_name(args: argparse.Namespace) -> str:
    if args.labels is not None:
        return f"labels file {args.labels!r}"
    return f"pairs file {args.pairs!r}" if args.pairs is not None else f"the labels of --dataset {args.dataset}"


def _features_name(args: argparse.Namespace) -> str:
    return f"features file {args.features!r}" if args.features else f"the inputs of --dataset {args.dataset}"


def load_pairs_source(args: argparse.Namespace) -> Source:
    """Pairs as labels: every pair starts as label 0 (chosen first); a swap makes it 1. The pair noise models get
    their covariate (reward or length gap, chosen minus rejected) as ``features``."""
    if args.root is not None or args.num_classes not in (None, 2):
        raise InputError("--pairs takes neither --root nor a --num-classes other than 2")
    with reading(args.pairs, what="pairs file"):
        return _read_pairs_source(args)


def _read_pairs_source(args: argparse.Namespace) -> Source:
    """:func:`load_pairs_source`'s reading."""
    from robustlabels.data.pairs import read_pair_array, read_pairs

    description = {"pairs_file": str(Path(args.pairs).resolve())}
    covariate = None
    if str(args.pairs).endswith(".npy"):
        n = len(read_pair_array(args.pairs))
        if args.noise in PAIR_NOISE:
            raise InputError(f"--noise {args.noise} needs text pairs (.jsonl, .csv); {args.pairs!r} holds features")
    else:
        pairs = read_pairs(args.pairs)
        n = len(pairs)
        if args.noise == "difficulty":
            if pairs.reward_gap is None:
                raise InputError(f"--noise difficulty needs score_chosen and score_rejected in every row of "
                                 f"{args.pairs!r}")  # fmt: skip
            covariate = pairs.reward_gap
        elif args.noise in PAIR_NOISE:
            covariate = pairs.length_gap()
    description["pairs_file_sha256"] = sha256_of_file(args.pairs)
    return Source(np.zeros(n, np.int64), covariate, 2, description)


def write_swapped_pairs(source: str, out: Path, swapped: np.ndarray) -> Path:
    """The pairs of ``source`` with chosen and rejected (and their scores) exchanged where ``swapped``, atomically:
    ``pairs.npy`` for features, else ``pairs.jsonl`` (every field kept)."""
    from robustlabels.data.pairs import SCORE_FIELDS, read_pair_array
    from robustlabels.data.tables import table_format, table_records

    if source.endswith(".npy"):
        array = read_pair_array(source)
        array[swapped] = array[swapped][:, ::-1]
        return atomic_save_npy(out / "pairs.npy", array)
    lines = []
    for i, (_, row) in enumerate(table_records(Path(source), table_format(Path(source)))):
        if swapped[i]:
            row["chosen"], row["rejected"] = row["rejected"], row["chosen"]
            if all(k in row for k in SCORE_FIELDS):
                row[SCORE_FIELDS[0]], row[SCORE_FIELDS[1]] = row[SCORE_FIELDS[1]], row[SCORE_FIELDS[0]]
        lines.append(json.dumps(row, ensure_ascii=False))
    return atomic_write_text(out / "pairs.jsonl", "\n".join(lines) + "\n")


def _load_dataset(name: str, root: str | None) -> Any:
    """``robustlabels.data.catalog.load_arrays(name, split="train", root=root)``, imported lazily."""
    try:
        from robustlabels.data.catalog import load_arrays
    except ImportError as error:
        raise InputError(
            f"--dataset needs robustlabels.data.catalog, which failed to import: {error}"
        ) from None
    try:
        return load_arrays(name, split="train", root=root)
    except KeyError:
        raise InputError(f"unknown dataset {name!r}") from None


def output_set(args: argparse.Namespace) -> OutputSet:
    """The files a run writes into ``--out``, as one :class:`OutputSet` sealed by ``manifest.json``.

    A ``--pairs`` run adds ``pairs.jsonl`` or ``pairs.npy``; the other pair file, left by an earlier run, goes
    with the old set it belongs to.
    """
    pairs_file = () if args.pairs is None else ("pairs.npy" if str(args.pairs).endswith(".npy") else "pairs.jsonl",)
    inputs = [p for p in (args.labels, args.matrix, args.features, args.pairs) if p is not None]
    return OutputSet(args.out, OUTPUT_NAMES + pairs_file, seal="manifest.json", force=args.force, inputs=inputs,
                     optional=tuple(name for name in PAIR_OUTPUT_NAMES if name not in pairs_file))  # fmt: skip


def build_manifest(
    model: NoiseModel, result: NoisyLabels, source: Source, *, seed: int, num_classes: int
) -> dict[str, Any]:
    """JSON-able record of how the labels were made; deterministic (no timestamps, no host names)."""
    transition = model.transition(num_classes)
    return {
        "convention": CONVENTION,
        "empirical_matrix": np.round(result.empirical_matrix, 6).tolist(),
        "exact": getattr(model, "exact", None),
        "flips_per_class": flips_per_class(source.labels, result.is_flipped, num_classes).tolist(),
        "labels_sha256": sha256_of_array(result.noisy.astype(np.int64)),
        "noise": {"name": model.name, "params": model.params()},
        "num_classes": num_classes,
        "num_flipped": int(result.is_flipped.sum()),
        "num_samples": int(result.noisy.size),
        "realized_rate": result.realized_rate,
        "robustlabels_version": _version(),
        "seed": seed,
        "source": source.description,
        "source_labels_sha256": sha256_of_array(source.labels.astype(np.int64)),
        "transition_matrix": None if transition is None else transition.tolist(),
    }


def _version() -> str:
    import robustlabels

    return str(getattr(robustlabels, "__version__", "0.1.0"))


def write_outputs(files: OutputSet, noisy: np.ndarray, manifest: dict[str, Any]) -> None:
    """Write labels.npy, labels.csv and manifest.json into the open output set (published together on exit)."""
    atomic_save_npy(files.path("labels.npy"), noisy.astype(np.int64))
    rows = "".join(f"{index},{label}\n" for index, label in enumerate(noisy.tolist()))
    atomic_write_text(files.path("labels.csv"), "index,label\n" + rows)
    atomic_write_text(files.path("manifest.json"), manifest_json(manifest))


_SCALAR_LIST = re.compile(r"\[\n(?:[ ]+[^\s\[\]{}\"]+\n)+[ ]*\]")  # a list spread over lines, no strings


def manifest_json(manifest: dict[str, Any]) -> str:
    """``json.dumps(sort_keys=True, indent=2)`` with each list of scalars on one line (matrix rows).

    Only lists that ``indent`` spread over lines and that hold no strings (JSON strings are quoted and
    never contain a raw newline) are joined, so the result parses to the same object.
    """
    text = json.dumps(manifest, sort_keys=True, indent=2)
    return _SCALAR_LIST.sub(_join_lines, text) + "\n"


def _join_lines(match: re.Match[str]) -> str:
    items = [line.strip() for line in match.group(0)[1:-1].splitlines() if line.strip()]
    return "[" + " ".join(items) + "]"


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Do the injection for parsed arguments; return a short summary."""
    model = build_noise_model(args.noise, rate=args.rate, matrix=args.matrix, exact=args.exact)
    out = Path(args.out)
    with output_set(args) as files:
        source = load_source(args, needs_features=args.noise == "instance")
        check_source(source, args)
        result = model.apply(
            source.labels, num_classes=source.num_classes, seed=args.seed, features=source.features
        )
        manifest = build_manifest(model, result, source, seed=args.seed, num_classes=source.num_classes)
        if args.pairs is not None:
            manifest["pairs"] = {"label_1_means": "swapped", "written": write_swapped_pairs(args.pairs, files.staging,
                                 result.is_flipped).name, "beta": getattr(model, "beta", None)}  # fmt: skip
        write_outputs(files, result.noisy, manifest)
    return {
        "out": str(out),
        "manifest": str(out / "manifest.json"),
        "labels": str(out / "labels.npy"),
        "noise": model.name,
        "realized_rate": result.realized_rate,
        "num_flipped": manifest["num_flipped"],
        "num_samples": manifest["num_samples"],
        **({"pairs": str(out / manifest["pairs"]["written"])} if "pairs" in manifest else {}),
    }


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m robustlabels.inject``; returns the exit code (2 for user errors)."""
    try:
        args = build_parser().parse_args(argv)
        summary = run(args)
    except (InputError, OSError) as error:
        return report_error(error_line(error))
    except KeyboardInterrupt:
        return report_interrupt(args.out)
    if args.format == "json":
        print(json.dumps(summary, sort_keys=True))
    else:
        print(f"wrote {summary['labels']}, labels.csv and manifest.json in {summary['out']}")
        if "pairs" in summary:
            print(f"wrote the pairs with swaps applied (label 1 = swapped): {summary['pairs']}")
        print(
            f"{summary['noise']} noise: realized rate {summary['realized_rate']:.4f} "
            f"({summary['num_flipped']} of {summary['num_samples']} labels changed), seed {args.seed}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
