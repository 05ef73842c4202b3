"""Bad input to ``python -m robustlabels.inject`` and ``python -m robustlabels.audit``, swept class by class.

Every case runs a command line's ``main(argv)`` in-process on tiny files made in ``tmp_path``: the base command
(:data:`INJECT`, :data:`AUDIT`) succeeds, and each case adds one fault. A case passes when the exit code is 2,
stderr is exactly one non-empty line starting ``error:`` that holds the case's needles (the file, flag or value
at fault), stdout is empty, no warning was raised (it would be one more stderr line), nothing under ``--out``
changed, and every input file is byte-identical afterwards.
"""

from __future__ import annotations

import builtins
import hashlib
import io
import json
import os
import shlex
import subprocess
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from robustlabels.audit.cli import main as audit_main
from robustlabels.inject import main as inject_main

N = 30  # examples in every generated input: 3 classes of 10
INJECT = "--labels {d}/y.npy --noise symmetric --rate 0.2"
AUDIT = "--data {d}/x.npy --labels {d}/y.npy --pred-probs {d}/p.npy --method confident_learning"
CLIS = {"inject": inject_main, "audit": audit_main}
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


@dataclass(frozen=True)
class Case:
    """One bad command: ``args`` (``{d}``: the input folder, ``{out}``: --out) and the needles its line must hold.

    ``--out {out}`` is appended unless ``args`` names ``--out``; ``make`` writes the case's own inputs into ``{d}``;
    ``patch`` simulates what the machine cannot show (a permission a root user does not feel).
    """

    cli: str
    args: str
    needles: tuple[str, ...]
    make: Callable[[Path], object] | None = None
    patch: Callable[[Path, pytest.MonkeyPatch], None] | None = field(default=None, compare=False)


# ---- inputs ---------------------------------------------------------------------------------------------------
def make_base_inputs(d: Path) -> None:
    """Valid inputs: labels (npy, csv), features, out-of-sample probabilities."""
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    labels = np.arange(N) % 3
    np.save(d / "y.npy", labels)
    (d / "y.csv").write_text("index,label\n" + "".join(f"{i},{y}\n" for i, y in enumerate(labels)))
    features = rng.normal(size=(N, 4)) + labels[:, None] * 3.0
    np.save(d / "x.npy", features)
    probs = np.full((N, 3), 0.1)
    probs[np.arange(N), labels] = 0.8
    np.save(d / "p.npy", probs)


def save(name: str, array: object) -> Callable[[Path], None]:
    return lambda d: np.save(d / name, np.asarray(array))


def write(name: str, content: str | bytes) -> Callable[[Path], object]:
    data = content.encode() if isinstance(content, str) else content
    return lambda d: (d / name).write_bytes(data)


def features_with(value: float, row: int = 4) -> np.ndarray:
    x = np.random.default_rng(1).normal(size=(N, 4))
    x[row, 2] = value
    return x


def probs_with(edit: Callable[[np.ndarray], object]) -> np.ndarray:
    p = np.full((N, 3), 1 / 3)
    edit(p)
    return p


def old_output(d: Path, name: str, content: bytes, *, link: str | None = None) -> None:
    """A file ``name`` already in ``--out`` (beside the input folder ``d``), and optionally a link to it in ``d``."""
    (d.parent / "out").mkdir()
    (d.parent / "out" / name).write_bytes(content)
    if link is not None:
        (d / link).symlink_to(d.parent / "out" / name)


def mkdir(name: str) -> Callable[[Path], None]:
    return lambda d: (d / name).mkdir()


# ---- what a root user cannot be refused, simulated ---------------------------------------------------------------
def deny_reading(name: str) -> Callable[[Path, pytest.MonkeyPatch], None]:
    """``chmod 000`` the file; as root (who reads it anyway) make every ``open`` of it fail with EACCES instead."""

    def patch(d: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        path = d / name
        if not IS_ROOT:
            path.chmod(0)
            return
        real_open = builtins.open

        def guarded_open(file: object, *args: object, **kwargs: object) -> object:
            if isinstance(file, (str, os.PathLike)) and Path(file).resolve() == path.resolve():
                raise PermissionError(13, "Permission denied", str(file))
            return real_open(file, *args, **kwargs)  # type: ignore[call-overload]

        monkeypatch.setattr(builtins, "open", guarded_open)
        monkeypatch.setattr(io, "open", guarded_open)

    return patch


def deny_writing(name: str) -> Callable[[Path, pytest.MonkeyPatch], None]:
    """``chmod 555`` the folder; as root (who writes there anyway) make ``os.access`` say no, as for a read-only
    mount."""

    def patch(d: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        folder = d / name
        folder.mkdir()
        if not IS_ROOT:
            folder.chmod(0o555)
            return
        real_access = os.access

        def access(path: object, mode: int, **kwargs: object) -> bool:
            if Path(str(path)).resolve() == folder.resolve() and mode & os.W_OK:
                return False
            return real_access(path, mode, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(os, "access", access)

    return patch


# ---- the cases, by class of fault -----------------------------------------------------------------------------
NUMERIC_FLAGS = {
    "inject-seed-negative": Case("inject", f"{INJECT} --seed -1", ("--seed", "'-1'")),
    "inject-seed-too-big": Case("inject", f"{INJECT} --seed 4294967296", ("--seed", "4294967296")),
    "inject-seed-text": Case("inject", f"{INJECT} --seed abc", ("--seed", "'abc'")),
    "inject-num-classes-0": Case("inject", f"{INJECT} --num-classes 0", ("--num-classes", "'0'")),
    "inject-num-classes-1": Case("inject", f"{INJECT} --num-classes 1", ("--num-classes", "'1'")),
    "inject-rate-text": Case("inject", "--labels {d}/y.npy --noise symmetric --rate abc", ("--rate", "'abc'")),
    "inject-rate-nan": Case("inject", "--labels {d}/y.npy --noise symmetric --rate nan", ("rate", "nan")),
    "inject-rate-negative": Case("inject", "--labels {d}/y.npy --noise symmetric --rate -0.1", ("rate", "-0.1")),
    "inject-noise-unknown": Case("inject", "--labels {d}/y.npy --noise bogus --rate 0.2", ("--noise", "'bogus'")),
    "inject-flag-unknown": Case("inject", f"{INJECT} --bogus 1", ("--bogus",)),
    "inject-two-sources": Case("inject", f"{INJECT} --dataset digits", ("--dataset", "--labels")),
    "inject-noise-missing": Case("inject", "--labels {d}/y.npy --rate 0.2", ("--noise",)),
    "audit-folds-0": Case("audit", f"{AUDIT} --folds 0", ("--folds", "'0'")),
    "audit-folds-1": Case("audit", f"{AUDIT} --folds 1", ("--folds", "'1'")),
    "audit-threads-negative": Case("audit", f"{AUDIT} --threads -1", ("--threads", "'-1'")),
    "audit-threads-0": Case("audit", f"{AUDIT} --threads 0", ("--threads", "'0'")),
    "audit-threads-huge": Case("audit", f"{AUDIT} --threads 100000", ("--threads", "'100000'", "per CPU")),
    "audit-epochs-0": Case("audit", f"{AUDIT} --epochs 0", ("--epochs", "'0'")),
    "audit-epochs-negative": Case("audit", f"{AUDIT} --epochs -1", ("--epochs", "'-1'")),
    "audit-epochs-float": Case("audit", f"{AUDIT} --epochs 2.5", ("--epochs", "'2.5'")),
    "audit-seed-negative": Case("audit", f"{AUDIT} --seed -1", ("--seed", "'-1'")),
    "audit-k-0": Case("audit", f"{AUDIT} --k 0", ("--k", "'0'")),
    "audit-k-2": Case("audit", f"{AUDIT} --k 2", ("--k", "'2'")),
    "audit-rounds-0": Case("audit", f"{AUDIT} --rounds 0", ("--rounds", "'0'")),
    "audit-graph-folds-1": Case("audit", f"{AUDIT} --graph-folds 1", ("--graph-folds", "'1'")),
    "audit-l2-0": Case("audit", f"{AUDIT} --l2 0", ("--l2", "'0'")),
    "audit-l2-nan": Case("audit", f"{AUDIT} --l2 nan", ("--l2", "'nan'")),
    "audit-encoder-resolution-0": Case("audit", f"{AUDIT} --encoder-resolution 0", ("--encoder-resolution", "'0'")),
    "audit-split-unknown": Case("audit", f"{AUDIT} --split val", ("--split", "'val'")),
    "audit-method-unknown": Case("audit", f"{AUDIT} --method magic", ("--method", "'magic'")),
    "audit-flag-unknown": Case("audit", f"{AUDIT} --bogus", ("--bogus",)),
    "audit-source-missing": Case("audit", "--labels {d}/y.npy", ("--dataset", "--data")),
}

UNREADABLE_FILES = {
    "inject-labels-empty-npy": Case("inject", "--labels {d}/e.npy --noise symmetric --rate 0.2",
                                    ("e.npy'", "empty or truncated"), write("e.npy", b"")),
    "inject-labels-folder-npy": Case("inject", "--labels {d}/dir.npy --noise symmetric --rate 0.2",
                                     ("dir.npy'", "Is a directory"), mkdir("dir.npy")),
    "inject-labels-folder-csv": Case("inject", "--labels {d}/dir.csv --noise symmetric --rate 0.2",
                                     ("dir.csv'", "Is a directory"), mkdir("dir.csv")),
    "inject-labels-unreadable": Case("inject", INJECT, ("y.npy'", "Permission denied"),
                                     patch=deny_reading("y.npy")),
    "inject-labels-garbage-npy": Case("inject", "--labels {d}/g.npy --noise symmetric --rate 0.2",
                                      ("g.npy'", "not a readable .npy array"), write("g.npy", b"\x93NUMPY garbage")),
    "inject-labels-not-utf8-csv": Case("inject", "--labels {d}/b.csv --noise symmetric --rate 0.2",
                                       ("b.csv'", "not UTF-8", "0xff"), write("b.csv", b"label\n0\n\xff\n")),
    "inject-labels-missing": Case("inject", "--labels {d}/nope.npy --noise symmetric --rate 0.2", ("nope.npy'",)),
    "inject-labels-suffix": Case("inject", "--labels {d}/y.txt --noise symmetric --rate 0.2",
                                 ("y.txt'", ".txt"), write("y.txt", "0\n1\n")),
    "inject-matrix-not-numbers": Case("inject", "--labels {d}/y.npy --noise matrix --matrix {d}/m.csv",
                                      ("m.csv'", "CSV of numbers"), write("m.csv", "a,b\nc,d\n")),
    "inject-pairs-npy-2d": Case("inject", "--pairs {d}/p2.npy --noise symmetric --rate 0.2", ("p2.npy'",),
                                save("p2.npy", np.zeros((4, 3)))),
    "inject-pairs-not-utf8": Case("inject", "--pairs {d}/p.jsonl --noise symmetric --rate 0.2",
                                  ("p.jsonl'",), write("p.jsonl", b'{"chosen": "\xff"}\n')),
    "inject-features-empty": Case("inject", "--labels {d}/y.npy --noise instance --rate 0.2 --features {d}/f.npy",
                                  ("f.npy'", "empty or truncated"), write("f.npy", b"")),
    "audit-labels-empty-npy": Case("audit", "--data {d}/x.npy --labels {d}/e.npy", ("e.npy'", "empty or truncated"),
                                   write("e.npy", b"")),
    "audit-labels-folder": Case("audit", "--data {d}/x.npy --labels {d}/dir", ("dir'",), mkdir("dir")),
    "audit-labels-folder-csv": Case("audit", "--data {d}/x.npy --labels {d}/dir.csv", ("dir.csv'", "Is a directory"),
                                    mkdir("dir.csv")),
    "audit-labels-unreadable": Case("audit", AUDIT, ("y.npy'", "Permission denied"), patch=deny_reading("y.npy")),
    "audit-labels-unreadable-csv": Case("audit", "--data {d}/x.npy --labels {d}/y.csv --pred-probs {d}/p.npy",
                                        ("y.csv'", "Permission denied"), patch=deny_reading("y.csv")),
    "audit-data-not-utf8-csv": Case("audit", "--data {d}/t.csv", ("t.csv'", "not UTF-8"),
                                    write("t.csv", b"text,label\n\xff\xfe hello,1\nbye,0\n")),
    "audit-data-garbage-npz": Case("audit", "--data {d}/g.npz", ("g.npz'",), write("g.npz", b"PK\x03\x04junk")),
    "audit-data-bad-jsonl": Case("audit", "--data {d}/t.jsonl", ("t.jsonl'", "line 2"),
                                 write("t.jsonl", '{"text": "a", "label": 0}\n{"text": \n')),
    "audit-data-suffix": Case("audit", "--data {d}/t.txt", ("t.txt'", ".txt"), write("t.txt", "hello\n")),
    "audit-pred-probs-empty": Case("audit", "--data {d}/x.npy --labels {d}/y.npy --pred-probs {d}/e.npy",
                                   ("e.npy'", "empty or truncated"), write("e.npy", b"")),
    "audit-fit-config-missing": Case("audit", "--data {d}/x.npy --labels {d}/y.npy --method dynamics "
                                     "--fit-config {d}/nope.yaml", ("nope.yaml'",)),
}

MALFORMED_CONTENTS = {
    "inject-labels-float": Case("inject", "--labels {d}/f.npy --noise symmetric --rate 0.2", ("f.npy'", "1.5"),
                                save("f.npy", [0.0, 1.5, 2.0])),
    "inject-labels-strings": Case("inject", "--labels {d}/s.npy --noise symmetric --rate 0.2", ("s.npy'", "<U1"),
                                  save("s.npy", ["a", "b"])),
    "inject-labels-2d": Case("inject", "--labels {d}/m.npy --noise symmetric --rate 0.2", ("m.npy'", "(2, 2)"),
                             save("m.npy", [[0, 1], [1, 0]])),
    "inject-labels-csv-float": Case("inject", "--labels {d}/f.csv --noise symmetric --rate 0.2",
                                    ("f.csv'", "'1.5'"), write("f.csv", "label\n0\n1.5\n")),
    "inject-labels-csv-empty": Case("inject", "--labels {d}/e.csv --noise symmetric --rate 0.2", ("e.csv'", "empty"),
                                    write("e.csv", "")),
    "inject-labels-csv-header-only": Case("inject", "--labels {d}/h.csv --noise symmetric --rate 0.2",
                                          ("h.csv'", "no labels"), write("h.csv", "index,label\n")),
    "inject-labels-csv-no-label-column": Case("inject", "--labels {d}/c.csv --noise symmetric --rate 0.2",
                                              ("c.csv'", "label"), write("c.csv", "a,b\n0,1\n")),
    "inject-labels-csv-ragged": Case("inject", "--labels {d}/r.csv --noise symmetric --rate 0.2",
                                     ("r.csv'", "line 3"), write("r.csv", "index,label\n0,1\n1\n")),
    "inject-labels-empty-array": Case("inject", "--labels {d}/z.npy --noise symmetric --rate 0.2",
                                      ("z.npy'", "no labels"), save("z.npy", np.zeros(0, np.int64))),
    "audit-data-npz-without-images": Case("audit", "--data {d}/i.npz", ("i.npz'", "'images'"),
                                          lambda d: np.savez(d / "i.npz", labels=np.zeros(3, np.int64))),
    "audit-labels-npz-without-key": Case("audit", "--data {d}/x.npy --labels {d}/l.npz:worse_label",
                                         ("l.npz'", "'worse_label'"),
                                         lambda d: np.savez(d / "l.npz", clean_label=np.arange(N) % 3)),
    "audit-labels-npz-no-key-given": Case("audit", "--data {d}/x.npy --labels {d}/l.npz", ("l.npz'", ":KEY"),
                                          lambda d: np.savez(d / "l.npz", clean_label=np.arange(N) % 3)),
    "audit-data-csv-empty": Case("audit", "--data {d}/e.csv", ("e.csv'", "empty file"), write("e.csv", "")),
    "audit-data-csv-header-only": Case("audit", "--data {d}/h.csv", ("h.csv", "no examples"),
                                       write("h.csv", "text,label\n")),
    "audit-data-csv-missing-column": Case("audit", "--data {d}/t.csv --label-column stars", ("t.csv'", "'stars'"),
                                          write("t.csv", "text,label\nhi,0\nyo,1\n")),
    "audit-data-csv-float-label": Case("audit", "--data {d}/t.csv", ("t.csv'", "'1.5'"),
                                       write("t.csv", "text,label\nhi,0\nyo,1.5\n")),
    "audit-data-features-1d": Case("audit", "--data {d}/v.npy --labels {d}/y.npy", ("v.npy'", "(30,)"),
                                   save("v.npy", np.zeros(N))),
    "audit-data-features-strings": Case("audit", "--data {d}/s.npy --labels {d}/y.npy", ("s.npy'", "<U1"),
                                        save("s.npy", np.full((N, 2), "a"))),
    "audit-labels-float": Case("audit", "--data {d}/x.npy --labels {d}/f.npy", ("f.npy'", "1.5"),
                               save("f.npy", np.r_[np.arange(N - 1) % 3, 1.5])),
}

LABEL_VALUES = {
    "inject-labels-negative": Case("inject", "--labels {d}/n.npy --noise symmetric --rate 0.2",
                                   ("n.npy'", "value -1 at position 1"), save("n.npy", [0, -1, 2])),
    "inject-labels-above-num-classes": Case("inject", f"{INJECT} --num-classes 2",
                                            ("y.npy'", "value 2 at position 2", "--num-classes")),
    "inject-labels-single-class": Case("inject", "--labels {d}/one.npy --noise symmetric --rate 0.2",
                                       ("one.npy'", "--num-classes"), save("one.npy", np.zeros(N, np.int64))),
    "audit-labels-negative": Case("audit", "--data {d}/x.npy --labels {d}/n.npy",
                                  ("n.npy'", "value -1 at index 1"), save("n.npy", np.r_[0, -1, np.arange(N - 2) % 3])),
    "audit-labels-above-pred-probs-columns": Case("audit", "--data {d}/x.npy --labels {d}/y.npy --pred-probs {d}/q.npy",
                                                  ("y.npy'", "value 2 at index 2", "[0, 2)"),
                                                  save("q.npy", np.full((N, 2), 0.5))),
    "audit-labels-wrong-length": Case("audit", "--data {d}/x.npy --labels {d}/s.npy", ("s.npy'", "29 labels"),
                                      save("s.npy", np.arange(N - 1) % 3)),
    "audit-clean-labels-wrong-length": Case("audit", f"{AUDIT} --clean-labels {{d}}/s.npy", ("s.npy'", "29 rows"),
                                            save("s.npy", np.arange(N - 1) % 3)),
    "audit-clean-labels-negative": Case("audit", f"{AUDIT} --clean-labels {{d}}/n.npy", ("--clean-labels", "n.npy'",
                                        "value -1 at index 0"), save("n.npy", np.r_[-1, np.arange(N - 1) % 3])),
    "audit-single-class-knn": Case("audit", "--data {d}/x.npy --labels {d}/one.npy --method knn",
                                   ("one.npy'", "only class 0"), save("one.npy", np.zeros(N, np.int64))),
    "audit-single-class-confident-learning": Case("audit", "--data {d}/x.npy --labels {d}/one.npy --pred-probs "
                                                  "{d}/p.npy", ("one.npy'", "only class 0"),
                                                  save("one.npy", np.zeros(N, np.int64))),
    "audit-swapped-without-pairs": Case("audit", f"{AUDIT} --swapped {{d}}/y.npy", ("--swapped", "y.npy'")),
}

TOO_BIG = {
    "inject-num-classes-million": Case("inject", f"{INJECT} --num-classes 1000000",
                                       ("--num-classes 1000000", "TiB of memory")),
    "inject-label-billion": Case("inject", "--labels {d}/big.npy --noise symmetric --rate 0.2",
                                 ("big.npy'", "1000000001 classes", "of memory"), save("big.npy", [0, 1, 10**9])),
    "audit-label-billion": Case("audit", "--data {d}/x.npy --labels {d}/big.npy --method knn",
                                ("big.npy'", "1000000001 classes", "of memory"),
                                save("big.npy", np.r_[10**9, np.arange(N - 1) % 3])),
}

PROBABILITIES = {
    "audit-pred-probs-1d": Case("audit", "--data {d}/x.npy --labels {d}/y.npy --pred-probs {d}/q.npy",
                                ("q.npy'", "(30,)", "C >= 2"), save("q.npy", np.full(N, 1.0))),
    "audit-pred-probs-one-column": Case("audit", "--data {d}/x.npy --labels {d}/z.npy --pred-probs {d}/q.npy",
                                        ("q.npy'", "(30, 1)", "C >= 2"),
                                        lambda d: (np.save(d / "q.npy", np.ones((N, 1))),
                                                   np.save(d / "z.npy", np.zeros(N, np.int64)))),
    "audit-pred-probs-nan": Case("audit", "--data {d}/x.npy --labels {d}/y.npy --pred-probs {d}/q.npy",
                                 ("q.npy'", "nan at row 3"),
                                 save("q.npy", probs_with(lambda p: p.__setitem__(3, np.nan)))),
    "audit-pred-probs-row-sum": Case("audit", "--data {d}/x.npy --labels {d}/y.npy --pred-probs {d}/q.npy",
                                     ("q.npy'", "row 5 sums to 1.5"),
                                     save("q.npy", probs_with(lambda p: p.__setitem__((5, 0), 1 / 3 + 0.5)))),
    "audit-pred-probs-negative": Case("audit", "--data {d}/x.npy --labels {d}/y.npy --pred-probs {d}/q.npy",
                                      ("q.npy'", "negative entry -0.5 at row 2"),
                                      save("q.npy", probs_with(lambda p: p.__setitem__(2, [1.5, -0.5, 0.0])))),
    "audit-pred-probs-wrong-rows": Case("audit", "--data {d}/x.npy --labels {d}/y.npy --pred-probs {d}/q.npy",
                                        ("q.npy'", "(30, 3)", "(29, 3)"), save("q.npy", np.full((N - 1, 3), 1 / 3))),
    "audit-pred-probs-strings": Case("audit", "--data {d}/x.npy --labels {d}/y.npy --pred-probs {d}/q.npy",
                                     ("q.npy'", "<U1"), save("q.npy", np.full((N, 3), "a"))),
    "inject-matrix-wrong-size": Case("inject", "--labels {d}/y.npy --noise matrix --matrix {d}/m.npy",
                                     ("m.npy'", "2x2", "3 classes"), save("m.npy", np.eye(2))),
    "inject-matrix-nan": Case("inject", "--labels {d}/y.npy --noise matrix --matrix {d}/m.npy",
                              ("m.npy'", "nan at row 0"), save("m.npy", [[np.nan, 1, 0], [0, 1, 0], [0, 0, 1]])),
    "inject-matrix-row-sum": Case("inject", "--labels {d}/y.npy --noise matrix --matrix {d}/m.npy",
                                  ("m.npy'", "row 1 sums to 0.9"), save("m.npy", [[1, 0, 0], [0, 0.9, 0], [0, 0, 1]])),
}

FEATURES = {
    "inject-instance-nan-features": Case("inject", "--labels {d}/y.npy --noise instance --rate 0.2 --features "
                                         "{d}/f.npy", ("f.npy'", "row 4 holds NaN"),
                                         save("f.npy", features_with(np.nan))),
    "inject-instance-all-nan-features": Case("inject", "--labels {d}/y.npy --noise instance --rate 0.2 --features "
                                             "{d}/f.npy", ("f.npy'", "row 0 holds NaN"),
                                             save("f.npy", np.full((N, 4), np.nan))),
    "inject-instance-inf-features": Case("inject", "--labels {d}/y.npy --noise instance --rate 0.2 --features "
                                         "{d}/f.npy", ("f.npy'", "row 7 holds NaN or inf"),
                                         save("f.npy", features_with(np.inf, row=7))),
    "inject-instance-features-wrong-length": Case("inject", "--labels {d}/y.npy --noise instance --rate 0.2 "
                                                  "--features {d}/f.npy", ("f.npy'", "N = 30", "(29, 4)"),
                                                  save("f.npy", np.zeros((N - 1, 4)))),
    "inject-instance-features-1d": Case("inject", "--labels {d}/y.npy --noise instance --rate 0.2 --features "
                                        "{d}/f.npy", ("f.npy'", "(30,)"), save("f.npy", np.zeros(N))),
    "inject-instance-features-strings": Case("inject", "--labels {d}/y.npy --noise instance --rate 0.2 --features "
                                             "{d}/f.npy", ("f.npy'", "<U1"), save("f.npy", np.full((N, 2), "a"))),
    "audit-features-nan": Case("audit", f"{AUDIT} --features {{d}}/f.npy", ("f.npy'", "row 4 holds NaN"),
                               save("f.npy", features_with(np.nan))),
    "audit-features-wrong-rows": Case("audit", f"{AUDIT} --features {{d}}/f.npy", ("f.npy'", "29 rows"),
                                      save("f.npy", np.zeros((N - 1, 4)))),
}

SETTINGS_THE_DATA_CANNOT_MEET = {
    "audit-folds-above-largest-class": Case("audit", "--data {d}/x.npy --labels {d}/y.npy --folds 11",
                                            ("--folds 11", "10 examples")),
    "audit-k-above-subsample": Case("audit", "--data {d}/x.npy --labels {d}/y.npy --method knn --k 28",
                                    ("--k 28", "27 examples")),
    "audit-text-views-on-features": Case("audit", f"{AUDIT} --text-views tfidf", ("--text-views",)),
    "audit-encoder-without-images": Case("audit", f"{AUDIT} --encoder bogus", ("--encoder bogus", "none")),
}

OUTPUTS = {
    "inject-out-is-a-file": Case("inject", f"{INJECT} --out {{d}}/o.txt", ("--out", "o.txt'", "is a file"),
                                 write("o.txt", "keep me\n")),
    "inject-out-under-a-file": Case("inject", f"{INJECT} --out {{d}}/o.txt/sub", ("o.txt'", "is a file"),
                                    write("o.txt", "keep me\n")),
    "inject-out-read-only": Case("inject", f"{INJECT} --out {{d}}/ro/out", ("ro'", "cannot write"),
                                 patch=deny_writing("ro")),
    "inject-overwrites-its-input": Case("inject", "--labels {out}/labels.npy --noise symmetric --rate 0.2 --out "
                                        "{out} --force", ("labels.npy'", "overwrite an input"),
                                        lambda d: old_output(d, "labels.npy", (d / "y.npy").read_bytes())),
    "audit-out-is-a-file": Case("audit", f"{AUDIT} --out {{d}}/o.txt", ("--out", "o.txt'", "is a file"),
                                write("o.txt", "keep me\n")),
    "audit-out-read-only": Case("audit", f"{AUDIT} --out {{d}}/ro/out", ("ro'", "cannot write"),
                                patch=deny_writing("ro")),
    "audit-overwrites-its-labels": Case("audit", "--data {d}/x.npy --labels {out}/issues.csv --pred-probs {d}/p.npy "
                                        "--out {out} --force", ("issues.csv'", "overwrite an input"),
                                        lambda d: old_output(d, "issues.csv", (d / "y.csv").read_bytes())),
    "audit-overwrites-its-data": Case("audit", "--data {out}/summary.json --out {out} --force",
                                      ("summary.json'", "overwrite an input"),
                                      lambda d: old_output(d, "summary.json", b'{"text": "a", "label": 0}\n')),
    "audit-overwrites-its-labels-by-link": Case("audit", "--data {d}/x.npy --labels {d}/link.csv --pred-probs "
                                                "{d}/p.npy --out {out} --force", ("issues.csv'", "overwrite an input"),
                                                lambda d: old_output(d, "issues.csv", (d / "y.csv").read_bytes(),
                                                                     link="link.csv")),
    "audit-outputs-exist": Case("audit", AUDIT, ("already holds issues.csv", "--force"),
                                lambda d: old_output(d, "issues.csv", b"x\n")),
}

CLASSES = {"numeric flags": NUMERIC_FLAGS, "unreadable files": UNREADABLE_FILES,
           "malformed contents": MALFORMED_CONTENTS, "label values": LABEL_VALUES, "sizes": TOO_BIG,
           "probabilities": PROBABILITIES, "features": FEATURES,
           "settings the data cannot meet": SETTINGS_THE_DATA_CANNOT_MEET, "outputs": OUTPUTS}  # fmt: skip
ALL_CASES = {name: case for cases in CLASSES.values() for name, case in cases.items()}


# ---- the checks -----------------------------------------------------------------------------------------------
def snapshot(folder: Path) -> dict[str, str]:
    """``{relative path: sha256}`` of every file under ``folder`` (a file: itself)."""
    if folder.is_file():
        return {folder.name: hashlib.sha256(folder.read_bytes()).hexdigest()}
    files = sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def argv_of(case: Case, d: Path, out: Path) -> list[str]:
    args = shlex.split(case.args.format(d=d, out=out))
    return args if "--out" in args else [*args, "--out", str(out)]


def run_bad(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> str:
    """Run ``case``; assert the contract; return the error line."""
    d, out = tmp_path / "in", tmp_path / "out"
    make_base_inputs(d)
    if case.make is not None:
        case.make(d)
    argv = argv_of(case, d, out)
    out_arg = Path(argv[argv.index("--out") + 1])
    inputs_before, out_before = snapshot(d), snapshot(out_arg)
    if case.patch is not None:
        case.patch(d, monkeypatch)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for hidden in (ResourceWarning, DeprecationWarning, PendingDeprecationWarning):  # Python's defaults hide them
            warnings.simplefilter("ignore", hidden)
        code = CLIS[case.cli](argv)
    monkeypatch.undo()
    for path in (d / "ro", d / "y.npy", d / "y.csv"):  # undo a chmod, so that the snapshot and cleanup can read
        if path.exists():
            path.chmod(0o755 if path.is_dir() else 0o644)
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert code == 2, (code, captured.err)
    assert len(lines) == 1 and lines[0].startswith("error: ") and lines[0][len("error: "):].strip(), captured.err
    assert captured.out == "", captured.out
    assert not [str(w.message) for w in caught], "warnings are extra stderr lines"
    assert snapshot(out_arg) == out_before, "something was written to --out"
    assert snapshot(d) == inputs_before, "an input changed"
    for needle in case.needles:
        assert needle.format(d=d, out=out) in lines[0], (needle, lines[0])
    return lines[0]


@pytest.mark.parametrize("name", list(ALL_CASES))
def test_bad_input_gets_one_error_line_and_exit_2(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    run_bad(ALL_CASES[name], tmp_path, monkeypatch, capsys)


@pytest.mark.parametrize("cli", list(CLIS))
def test_the_base_commands_succeed(cli: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Each case differs from a command that works by its one fault."""
    d, out = tmp_path / "in", tmp_path / "out"
    make_base_inputs(d)
    base = INJECT if cli == "inject" else AUDIT
    assert CLIS[cli]([*shlex.split(base.format(d=d)), "--out", str(out)]) == 0, capsys.readouterr().err
    assert (out / ("manifest.json" if cli == "inject" else "summary.json")).is_file()


def test_an_audit_may_rerun_from_the_probabilities_it_saved(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``pred_probs.npy`` is written only without ``--pred-probs``: reading it back from ``--out`` is no overlap."""
    d, out = tmp_path / "in", tmp_path / "out"
    make_base_inputs(d)
    out.mkdir()
    (out / "pred_probs.npy").write_bytes((d / "p.npy").read_bytes())
    before = snapshot(out / "pred_probs.npy")
    argv = ["--data", str(d / "x.npy"), "--labels", str(d / "y.npy"), "--pred-probs", str(out / "pred_probs.npy"),
            "--out", str(out), "--force"]  # fmt: skip
    assert audit_main(argv) == 0, capsys.readouterr().err
    assert snapshot(out / "pred_probs.npy") == before
    assert json.loads((out / "summary.json").read_text())["num_examples"] == N


def test_a_real_process_prints_one_line_and_no_traceback(tmp_path: Path) -> None:
    """A case that printed a traceback before (``--seed -1``), in a real process: one line on the real stderr.

    (The audit's real process is not run here: importing it takes about 10 s; its cases run in-process above.)
    """
    d, out = tmp_path / "in", tmp_path / "out"
    make_base_inputs(d)
    argv = [sys.executable, "-m", "robustlabels.inject", *shlex.split(INJECT.format(d=d)), "--seed", "-1", "--out",
            str(out)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == "error: argument --seed: must be an integer in [0, 4294967295]; got '-1'\n"
    assert not out.exists()


# ---- fuzz: any label file is read correctly or refused in one line -----------------------------------------------
hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

FUZZ_N = 6  # examples of the audit's data: label files of this length can pass
LABEL_DTYPES = st.sampled_from(["<i8", "<i4", "|u1", "<f8", "<f4", "|b1", "<U2", ">i8"])
LABEL_ARRAYS = LABEL_DTYPES.flatmap(lambda dtype: hnp.arrays(
    dtype, st.one_of(st.just((FUZZ_N,)), hnp.array_shapes(min_dims=0, max_dims=2, min_side=0, max_side=7))))
CSV_CELLS = st.sampled_from(["0", "1", "2", "-1", "1.5", "3.0", "nan", "", "abc", "99999999999", " 1", "1e400"])
CSV_TEXT = st.builds(lambda header, rows: "\n".join([",".join(header), *(",".join(r) for r in rows)]),
                     st.lists(st.sampled_from(["label", "index", "noisy_label", "x"]), min_size=0, max_size=3),
                     st.lists(st.lists(CSV_CELLS, min_size=1, max_size=3), max_size=8))  # fmt: skip
GOOD_LABEL, BAD_LABEL = [0, 1, 2] * 4, [3, -1]  # most cells valid: a good share of whole files are
NEARLY_VALID_ARRAYS = hnp.arrays(np.int64, FUZZ_N, elements=st.sampled_from(GOOD_LABEL + BAD_LABEL))
NEARLY_VALID_CSV = st.lists(st.sampled_from([*map(str, GOOD_LABEL), "2.0", "3", "-1", "x"]), min_size=FUZZ_N,
                            max_size=FUZZ_N).map(lambda cells: "label\n" + "\n".join(cells) + "\n")  # fmt: skip
LABEL_FILES = st.one_of(
    st.tuples(st.just("labels.npy"), NEARLY_VALID_ARRAYS),
    st.tuples(st.just("labels.csv"), NEARLY_VALID_CSV),
    st.tuples(st.just("labels.npy"), LABEL_ARRAYS),
    st.tuples(st.just("labels.csv"), CSV_TEXT),
    st.tuples(st.sampled_from(["labels.npy", "labels.csv"]), st.binary(max_size=64)),
)


def write_label_file(folder: Path, name: str, content: object) -> Path:
    path = folder / name
    if isinstance(content, np.ndarray):
        np.save(path, content)
    else:
        path.write_bytes(content if isinstance(content, bytes) else str(content).encode())
    return path


def run_quietly(cli: str, argv: list[str]) -> tuple[int, str]:
    """``(exit code, stderr)`` of an in-process run, stdout discarded."""
    import contextlib

    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = CLIS[cli](argv)
    return code, err.getvalue()


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(label_file=LABEL_FILES)
def test_fuzzed_label_files_are_read_or_refused_in_one_line(label_file: tuple[str, object]) -> None:
    import tempfile

    from robustlabels.io import read_labels

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path = write_label_file(folder, *label_file)
        make_base_inputs(folder / "in")
        np.save(folder / "x.npy", np.arange(FUZZ_N * 2, dtype=np.float64).reshape(FUZZ_N, 2))
        np.save(folder / "p.npy", np.full((FUZZ_N, 3), 1 / 3))
        runs = {
            "inject": ["--labels", str(path), "--noise", "symmetric", "--rate", "0.3", "--num-classes", "3"],
            "audit": ["--data", str(folder / "x.npy"), "--labels", str(path), "--pred-probs", str(folder / "p.npy")],
        }
        for cli, argv in runs.items():
            out = folder / f"out-{cli}"
            code, err = run_quietly(cli, [*argv, "--out", str(out)])
            hypothesis.event(f"{cli} exit {code}")
            if code == 2:
                assert err.count("\n") == 1 and err.startswith("error: ") and path.name in err, err
                assert snapshot(out) == {}, f"{cli} wrote outputs for a refused file"
                continue
            assert code == 0, err
            labels = read_labels(path)  # accepted: the file holds valid labels, and the outputs say so
            assert labels.min() >= 0 and labels.max() < 3
            if cli == "inject":
                assert json.loads((out / "manifest.json").read_text())["num_samples"] == labels.size
            else:
                assert len(labels) == FUZZ_N and len(np.unique(labels)) >= 2


# ---- fuzz: any value of a numeric flag is taken or refused in one line naming the flag ---------------------------
FUZZ_FLAGS = {"inject": ("--seed", "--num-classes", "--rate"),
              "audit": ("--seed", "--folds", "--k", "--rounds", "--graph-folds", "--l2", "--encoder-resolution")}
FLAG_VALUES = st.one_of(
    st.integers(-5, 40).map(str),
    st.integers(10**6, 10**20).map(str),  # huge: a class count no memory holds, a seed past 2**32
    st.integers(-(10**20), -1).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["", "abc", "1e400", "0x10", " 3", "+2", "1_000", "-0", "2.0", "1e3", "٣"]),
)  # fmt: skip


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])  # fmt: skip
@given(cli=st.sampled_from(["inject", "inject", "audit"]), data=st.data())
def test_fuzzed_numeric_flags_are_taken_or_refused_in_one_line(cli: str, data: st.DataObject, tmp_path: Path) -> None:
    """Whatever text a numeric flag gets, the run either succeeds and writes a whole set, or exits 2 with one line
    naming the flag (``rate``: the noise model's field) and leaves ``--out`` as it was; never a traceback, a hang or
    another exit code."""
    import tempfile

    flag, value = data.draw(st.sampled_from(FUZZ_FLAGS[cli])), data.draw(FLAG_VALUES)
    with tempfile.TemporaryDirectory(dir=tmp_path) as tmp:
        d, out = Path(tmp) / "in", Path(tmp) / "out"
        make_base_inputs(d)
        base = (INJECT.replace(" --rate 0.2", "") if flag == "--rate" else INJECT) if cli == "inject" else AUDIT
        code, err = run_quietly(cli, [*shlex.split(base.format(d=d)), f"{flag}={value}", "--out", str(out)])
        hypothesis.event(f"{cli} {flag} exit {code}")
        if code == 2:
            assert err.count("\n") == 1 and err.startswith("error: ") and flag.lstrip("-") in err, err
            assert snapshot(out) == {}
            return
        assert code == 0, err
        seal = out / ("manifest.json" if cli == "inject" else "summary.json")
        summary = json.loads(seal.read_text())
        if cli == "inject":
            labels = np.load(out / "labels.npy")
            assert summary["labels_sha256"] == hashlib.sha256(labels.astype("<i8").tobytes()).hexdigest()
            assert 0 <= summary["realized_rate"] <= 1 and labels.max() < summary["num_classes"]
        else:
            assert summary["num_examples"] == N
