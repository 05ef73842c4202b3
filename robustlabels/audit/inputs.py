"""Read what the user wants audited into an :class:`~robustlabels.audit.types.AuditData`.

Input kinds:

- a known dataset and split: :func:`from_dataset` (``mnist``, ``fashion_mnist``, ``cifar10``, ``digits``, ...,
  and the text dataset ``noisy_agnews``, whose true labels come along for scoring);
- a file or folder the user already has: :func:`from_path`, by suffix — an image ``.npz`` with ``images`` and
  ``labels``; a folder with one sub-folder of images per class; a text ``.csv`` / ``.jsonl`` (optionally
  ``.gz``) with a text and a label column; a features ``.npy`` (labels then come from ``--labels``).

Label files (``--labels``, ``--clean-labels``) are ``.npy`` / ``.csv`` (see :func:`robustlabels.io.read_labels`)
or a key of an ``.npz`` / CIFAR-N ``.pt`` file written ``FILE:KEY``, e.g.
``cifar10n_labels.npz:worse_label``. Nothing here ever writes to the inputs.
"""

from __future__ import annotations

import csv
import gzip
from collections.abc import Sized
from pathlib import Path
from typing import Any

import numpy as np

from robustlabels.audit.types import AuditData
from robustlabels.checks import check_allocation, check_finite_rows, check_probability_rows
from robustlabels.data.readers import read_image_folder, read_image_npz, read_label_spec
from robustlabels.errors import InputError, check_file
from robustlabels.io import load_npy, reading, sha256_of_file

TEXT_DATASETS = ("noisy_agnews",)


def from_dataset(name: str, *, split: str = "train", root: str | None = None) -> AuditData:
    """A split of a dataset the library knows (see :mod:`robustlabels.data.catalog`), labels as shipped."""
    if name in TEXT_DATASETS:
        from robustlabels.data.readers import read_noisy_agnews
        from robustlabels.data.text import AGNEWS_CLASSES, find_agnews_file

        path = find_agnews_file(split, root)
        texts, noisy, true = read_noisy_agnews(path)
        data = AuditData(noisy, len(AGNEWS_CLASSES), list(AGNEWS_CLASSES), texts=texts, source=str(path))
        data.clean_labels = true if np.any(true != noisy) else None  # the clean test file carries no noise
        data.hashes[str(path)] = sha256_of_file(path)
        return data
    from robustlabels.data.catalog import DATASETS, load_arrays

    if name not in DATASETS:
        raise InputError(f"--dataset: unknown dataset {name!r}; known: {', '.join(DATASETS + TEXT_DATASETS)}")
    arrays = load_arrays(name, split=split, root=root)
    return AuditData(arrays.labels, arrays.num_classes, list(arrays.class_names), images=arrays.inputs,
                     source=f"{name} ({split}) from {arrays.source}")  # fmt: skip


def from_path(
    path: str, *, text_column: str = "text", label_column: str = "label", labels_given: bool = False
) -> AuditData:
    """The user's own file or folder, by its suffix (module docstring). ``labels_given``: ``--labels`` is set."""
    p = check_file(path, what="--data")
    with reading(p, what="--data"):
        data = read_data(p, text_column=text_column, label_column=label_column, labels_given=labels_given)
        data.source = data.source or str(p)
        if p.is_file():
            data.hashes[str(p)] = sha256_of_file(p)
    return data


def read_data(p: Path, *, text_column: str, label_column: str, labels_given: bool) -> AuditData:
    """:func:`from_path`'s reading, by the kind of ``p``."""
    suffixes = "".join(s.lower() for s in p.suffixes[-2:])
    if p.is_dir():
        images, labels, names = read_image_folder(p, what="--data")
        data = AuditData(labels, len(names), names, images=images, source=str(p))
    elif suffixes.endswith((".csv", ".csv.gz", ".jsonl", ".jsonl.gz")) and is_pair_table(p):
        data = read_pair_table(p)
    elif suffixes.endswith((".csv", ".csv.gz", ".jsonl", ".jsonl.gz", ".json.gz", ".json")):
        data = read_text_table(p, text_column=text_column, label_column=label_column)
    elif p.suffix.lower() == ".npz":
        images, labels, names = read_image_npz(p, what="--data")
        data = AuditData(labels, len(names), names, images=images)
    elif p.suffix.lower() == ".npy" and not labels_given and load_npy(p, what="--data", mmap=True).ndim == 3:
        from robustlabels.data.pairs import read_pair_array

        data = pair_audit_data(read_pair_array(p), None, str(p))
    elif p.suffix.lower() == ".npy":
        if not labels_given:
            raise InputError(f"--data {str(p)!r} holds features only: give their labels with --labels FILE")
        features = as_features(load_npy(p, what="--data features file"), str(p))
        data = AuditData(np.zeros(len(features), np.int64), 0, [], features=features)
    else:
        raise InputError(f"--data {str(p)!r}: unknown kind {p.suffix!r}; expected a folder, .npz, .npy, .csv, .jsonl")
    return data


def as_features(array: np.ndarray, source: str) -> np.ndarray:
    """``(N, D)`` finite float32 features, or one line naming ``source`` and what is wrong."""
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.number):
        raise InputError(f"features file {source!r} must hold a numeric (N, D) array; got {array.dtype} {array.shape}")
    features = np.ascontiguousarray(array, dtype=np.float32)
    check_finite_rows(features, name=f"features file {source!r}")
    return features


PAIR_CLASSES = ["first side preferred", "second side preferred"]


def is_pair_table(path: Path) -> bool:
    """Whether a ``.csv``/``.jsonl`` holds preference pairs: its first row has ``chosen`` and ``rejected``."""
    from robustlabels.data.tables import table_format, table_records

    try:
        _, row = next(table_records(path, table_format(path)))
    except StopIteration:
        return False
    return "chosen" in row and "rejected" in row


def read_pair_table(path: Path) -> AuditData:
    """Preference pairs (docs/pairs.md), audited as the pair encoding: MiniLM features ``(N, 2, D)`` with the side
    order drawn once (seed 0) and the label = the side the file says is preferred. A flagged pair is one whose
    chosen and rejected look swapped."""
    from robustlabels.data.pairs import pair_text_features, read_pairs

    pairs = read_pairs(path)
    (chosen, rejected), = pair_text_features([pairs], features="minilm")
    texts = [f"chosen: {c[:300]} | rejected: {r[:300]}" for c, r in zip(pairs.chosen, pairs.rejected, strict=True)]
    responses = np.array([[f"{p}\0{c}", f"{p}\0{r}"] for p, c, r in zip(pairs.prompts, pairs.chosen, pairs.rejected,
                                                                          strict=True)], dtype=object)  # fmt: skip
    return pair_audit_data(np.stack([chosen, rejected], axis=1), texts, str(path), responses=responses)


def pair_audit_data(
    sides: np.ndarray, texts: list[str] | None, source: str, *, responses: np.ndarray | None = None
) -> AuditData:
    """``sides (N, 2, D)``, chosen first, as audit data: inputs in the drawn side order, labels the chosen side.

    ``responses``: ``(N, 2)`` keys (prompt and response text) that identify a recurring response; by default
    identical feature rows do.
    """
    from robustlabels.audit.rank_consistency import item_ids
    from robustlabels.data.pairs import orient

    inputs, labels = orient(sides[:, 0], sides[:, 1], seed=0)
    items = item_ids(sides if responses is None else responses)
    items = np.where(labels[:, None] == 0, items, items[:, ::-1])  # the same side order as the inputs
    return AuditData(labels, 2, list(PAIR_CLASSES), features=inputs, texts=texts, pair_items=items,
                     source=f"{source} (preference pairs)")  # fmt: skip


def read_text_table(path: Path, *, text_column: str, label_column: str) -> AuditData:
    """A ``.csv`` or ``.jsonl`` (optionally gzipped) with a text and an integer label column."""
    from robustlabels.data.readers import read_label_names, read_text_jsonl

    if ".jsonl" in path.name.lower() or ".json" in path.name.lower():
        texts, labels = read_text_jsonl(path, text_key=text_column, label_key=label_column)
        names = read_label_names(path, label_key=label_column) or []  # e.g. 20 Newsgroups' label_name
        return AuditData(labels, 0, names if len(names) > labels.max(initial=-1) else [], texts=texts)
    opener = gzip.open if path.suffix.lower() == ".gz" else open
    texts, raw = [], []
    with opener(path, "rt", newline="", encoding="utf-8-sig") as handle:  # type: ignore[operator]
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        for column, flag in ((text_column, "--text-column"), (label_column, "--label-column")):
            if column not in columns:
                raise InputError(f"--data {str(path)!r}: no column {column!r} ({flag}); columns: {', '.join(columns)}")
        for row in reader:
            texts.append(row[text_column] or "")
            raw.append((reader.line_num, row[label_column]))
    labels = np.empty(len(raw), np.int64)
    for i, (line, value) in enumerate(raw):
        try:
            labels[i] = int(value)
        except (TypeError, ValueError):
            message = f"--data {str(path)!r} line {line}: {label_column!r} must be an integer; got {value!r}"
            raise InputError(message) from None
    return AuditData(labels, 0, [], texts=texts)


def integer_labels(values: Any, source: str) -> np.ndarray:
    """``(N,)`` int64 from integral numbers, or one line naming ``source``."""
    arr = np.asarray(values)
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.number) or np.any(arr != np.round(arr)):
        raise InputError(f"{source} must be a 1-D array of integer labels; got {arr.dtype} {arr.shape}")
    return arr.astype(np.int64)


def finish(
    data: AuditData,
    *,
    labels: str | None = None,
    clean_labels: str | None = None,
    pred_probs: str | None = None,
    features: str | None = None,
    swapped: str | None = None,
    num_classes: int | None = None,
) -> AuditData:
    """Apply the optional files and check everything lines up: labels in ``[0, C)``, shapes, probabilities, and
    memory for ``C`` classes.

    ``swapped``: for preference pairs, ``inject --pairs``'s labels file (1 = the pair was swapped); the truly
    preferred side then scores the audit.
    """
    n = len(data.labels)
    given = f"labels of --data {data.source!r}" if data.source else "labels of the data"
    if labels is not None:
        data.labels, file, digest = read_label_spec(labels, what="--labels")
        data.hashes[file] = digest
        given = f"--labels {file!r}"
        if len(data.labels) != n:
            raise InputError(f"--labels {file!r} has {len(data.labels)} labels but the data has {n} examples")
        n = len(data.labels)
    clean = "clean labels"
    if clean_labels is not None:
        data.clean_labels, file, digest = read_label_spec(clean_labels, what="--clean-labels")
        data.hashes[file] = digest
        clean = f"--clean-labels {file!r}"
        check_length(data.clean_labels, n, clean)
    if swapped is not None:
        if data.pair_items is None:
            raise InputError(f"--swapped {swapped!r} applies to preference pairs only; --data holds none")
        flags, file, digest = read_label_spec(swapped, what="--swapped")
        data.hashes[file] = digest
        check_length(flags, n, f"--swapped {file!r}")
        if np.any((flags != 0) & (flags != 1)):
            raise InputError(f"--swapped {file!r} must hold 0 (kept) and 1 (swapped) only; found {int(flags.max())}")
        data.clean_labels = data.labels ^ flags
    if features is not None:
        data.features = as_features(load_npy(features, what="--features file"), features)
        data.hashes[features] = sha256_of_file(features)
    rows_from = f"--data {data.source!r}" if data.source else "the data"
    for what, rows in (("features", data.features), ("images", data.images), ("texts", data.texts)):
        if rows is not None:
            check_length(rows, n, f"--features {features!r}" if what == "features" and features else
                         f"the {what} of {rows_from}")  # fmt: skip
    if n == 0:
        raise InputError(f"no examples to audit in {data.source or 'the input'}")
    classes = num_classes or data.num_classes or len(data.class_names)
    if pred_probs is not None:
        data.pred_probs = load_npy(pred_probs, what="--pred-probs file")
        data.hashes[pred_probs] = sha256_of_file(pred_probs)
    if data.pred_probs is not None:
        classes = check_pred_probs(data.pred_probs, n, num_classes or data.num_classes or None,
                                   pred_probs or "pred_probs")  # fmt: skip
    check_label_range(data.labels, classes, given)
    if data.clean_labels is not None:
        check_label_range(data.clean_labels, classes, clean)
    counted_from = given
    if not classes:
        largest = max(int(data.labels.max()), -1 if data.clean_labels is None else int(data.clean_labels.max()))
        holder = given if largest == int(data.labels.max()) else clean
        classes, counted_from = largest + 1, f"the largest label + 1, in {holder}"
    check_allocation(f"auditing {n} examples in {classes} classes ({counted_from})", audit_bytes(n, classes))
    data.num_classes = classes
    if len(data.class_names) != classes:
        data.class_names = [str(c) for c in range(classes)]
    return data


def audit_bytes(num_examples: int, num_classes: int) -> int:
    """About the peak memory the audit's ``(N, C)`` probabilities and ``(C, C)`` joints take."""
    return 8 * num_classes * (4 * num_examples + 16 * num_classes)


def check_label_range(labels: np.ndarray, num_classes: int, source: str) -> None:
    """:class:`InputError` naming ``source`` and the first label below 0 or (when ``num_classes``) at least C."""
    outside = (labels < 0) | (labels >= num_classes) if num_classes else labels < 0
    bad = np.flatnonzero(outside)
    if bad.size:
        where = f"[0, {num_classes})" if num_classes else "[0, ...)"
        raise InputError(f"{source}: value {int(labels[bad[0]])} at index {int(bad[0])} is outside {where}")


def check_length(array: Sized, n: int, what: str) -> None:
    if len(array) != n:
        raise InputError(f"{what} has {len(array)} rows but the labels have {n}")


def check_pred_probs(pred_probs: np.ndarray, n: int, num_classes: int | None, source: str) -> int:
    """The number of classes ``C`` of ``(N, C)`` out-of-sample probabilities: finite rows in [0, 1] summing to 1
    (±1e-3), ``C >= 2`` (``num_classes`` when given), or one line naming ``source`` and the first fault."""
    name = f"--pred-probs {source!r}"
    columns = pred_probs.shape[1] if pred_probs.ndim == 2 else 0
    wanted = num_classes or columns
    if pred_probs.ndim != 2 or len(pred_probs) != n or columns != wanted or columns < 2:
        shape = f"({n}, {wanted})" if wanted >= 2 else f"({n}, C) with C >= 2 classes"
        raise InputError(f"{name} must have shape {shape}, a row per example and a column per class; got "
                         f"{pred_probs.shape}")  # fmt: skip
    if not np.issubdtype(pred_probs.dtype, np.number):
        raise InputError(f"{name} must hold numbers; got dtype {pred_probs.dtype}")
    check_probability_rows(pred_probs, name=name, atol=1e-3)
    return int(columns)
