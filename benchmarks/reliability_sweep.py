"""The reliability sweep: bad input and hostile conditions for the three command lines, run as a user runs them.

Every case starts ``python -m robustlabels.inject|audit|fit`` as a subprocess in a fresh folder of its own, on
small generated inputs (30 labels of 3 classes; the fit quickstart on scikit-learn's digits, one epoch of 160
samples), with one fault. For each it records the exit code, whether stderr holds a traceback, whether stderr is one
line starting ``error:`` (``fit`` may precede it with Lightning's start-up notices), whether that line names what is
wrong (the case's needles: the file, flag or field, the value), whether anything was written or left in the case's
folder (``--out``, ``runs/``, temporaries), and whether every input is byte-identical afterwards (sha256).

Faults a root user cannot feel are made real, not simulated: an unreadable file (``chmod 000``) and a read-only
folder are tried as the user ``nobody`` (``setpriv``); a read-only mount and a full disk (a small ``tmpfs``) are
mounted in a private mount namespace (``unshare -m``). Where that is impossible the case is reported as not testable.
The conditions (a full disk, Ctrl-C, ``kill -9`` at random moments, two runs on one ``--out``) check the output sets:
afterwards a folder holds the old set or the new one whole (or nothing), never a mix, and no temporaries.

Run it (about 15 minutes on 2 shared CPU cores; ``--jobs 2`` runs two cases at a time)::

    nice -n 10 .venv/bin/python benchmarks/reliability_sweep.py --jobs 2 --json runs/reliability_sweep.json

``--only TEXT`` runs the cases whose name contains TEXT, ``--list`` lists them. Prints a markdown table of the
classes (cases, passed, failed) and one of the failing cases.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import hashlib
import json
import os
import random
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
N = 30  # labels in the generated inputs: 3 classes of 10
INJECT = "--labels {in}/y.npy --noise symmetric --rate 0.2"
AUDIT = "--data {in}/x.npy --labels {in}/y.npy --pred-probs {in}/p.npy --method confident_learning"
AUDIT_TRAINS = "--data {in}/x.npy --labels {in}/y.npy"  # no --pred-probs: a method that trains
FIT = ("--config quickstart --trainer.max_epochs=1 --data.init_args.train_subset=160 --trainer.limit_val_batches=1 "
       "--trainer.enable_progress_bar=false --trainer.enable_model_summary=false")  # fmt: skip
LABELS_FILE = "--data.init_args.noise=LabelsFile --data.init_args.noise.init_args.path="
ELR = "'--model.regularizers=[{class_path: ELR}]'"
#: What Lightning prints on stderr before any run, refused or not: allowed before fit's error line.
LIGHTNING_NOTICES = re.compile(
    r"^(Seed set to |precision auto -> |(GPU|TPU|HPU|IPU) available|💡 Tip: |`Trainer\(limit_)"
)
NOBODY = 65534
IS_ROOT = os.geteuid() == 0


@dataclass(frozen=True)
class Case:
    """One bad command: ``args`` (``{in}``: the inputs folder, ``{out}``: the output folder) and its needles.

    ``--out {out}`` is appended for inject and audit unless ``args`` names ``--out``. ``make`` writes the case's own
    inputs into ``{in}``. ``deny`` (a path under ``{in}``) is made unreadable and ``read_only`` (a folder under
    ``{in}``) unwritable, and the command runs as ``nobody``; ``ro_mount`` (a folder under ``{in}``) is mounted
    read-only in a private mount namespace. ``expect``: the exit code.
    """

    group: str
    name: str
    cli: str
    args: str
    needles: tuple[str, ...]
    make: Callable[[Path], object] | None = field(default=None, compare=False)
    deny: str | None = None
    read_only: str | None = None
    ro_mount: str | None = None
    expect: int = 2


@dataclass
class Result:
    """What one case did, and whether that is what the contract promises."""

    group: str
    name: str
    cli: str
    command: str
    exit: int | None
    expected: int
    traceback: bool
    one_line: bool  # stderr is the error line (for fit: after Lightning's start-up notices) and nothing else
    named: bool  # the line holds every needle
    wrote: bool  # something appeared, changed or was left in the case's folder outside the inputs
    inputs_same: bool
    seconds: float
    line: str
    passed: bool = False
    why: str = ""
    testable: bool = True
    stderr: str = ""  # its last 4,000 characters

    def judge(self) -> Result:
        faults = [text for bad, text in (
            (self.exit != self.expected, f"exit {self.exit}, not {self.expected}"), (self.traceback, "traceback"),
            (not self.one_line, "stderr is not one error line"), (not self.named, "the line does not name it"),
            (self.wrote, "wrote or left files"), (not self.inputs_same, "an input changed")) if bad]  # fmt: skip
        if self.testable:
            self.passed, self.why = not faults, "; ".join(faults)
        return self


# ---- generated inputs -------------------------------------------------------------------------------------------
def make_base_inputs(folder: Path) -> None:
    """Valid inputs for the base commands: labels (.npy, .csv), features, out-of-sample probabilities, a transition
    matrix, preference pairs."""
    folder.mkdir(parents=True, exist_ok=True)
    labels = np.arange(N) % 3
    np.save(folder / "y.npy", labels)
    (folder / "y.csv").write_text("index,label\n" + "".join(f"{i},{y}\n" for i, y in enumerate(labels)))
    np.save(folder / "x.npy", np.random.default_rng(0).normal(size=(N, 4)) + labels[:, None] * 3.0)
    probs = np.full((N, 3), 0.1)
    probs[np.arange(N), labels] = 0.8
    np.save(folder / "p.npy", probs)
    np.save(folder / "m.npy", np.full((3, 3), 0.1) + np.eye(3) * 0.7)
    (folder / "pairs.jsonl").write_text("".join(json.dumps({"prompt": f"q{i}", "chosen": f"good {i}", "rejected":
                                                            f"bad {i}"}) + "\n" for i in range(N)))  # fmt: skip


def save(name: str, array: object) -> Callable[[Path], None]:
    return lambda d: np.save(d / name, np.asarray(array))


def write(name: str, content: str | bytes) -> Callable[[Path], object]:
    data = content.encode() if isinstance(content, str) else content
    return lambda d: (d / name).write_bytes(data)


def mkdir(name: str) -> Callable[[Path], None]:
    return lambda d: (d / name).mkdir(parents=True, exist_ok=True)


def old_output(name: str, content: bytes | Callable[[Path], bytes], link: str | None = None) -> Callable[[Path], None]:
    """A file ``name`` already in ``--out`` (``{in}/../out``), and optionally a link to it in ``{in}``."""

    def make(d: Path) -> None:
        out = d.parent / "out"
        out.mkdir(exist_ok=True)
        (out / name).write_bytes(content(d) if callable(content) else content)
        if link is not None:
            (d / link).symlink_to(out / name)

    return make


def features_with(value: float, row: int = 4) -> np.ndarray:
    x = np.random.default_rng(1).normal(size=(N, 4))
    x[row, 2] = value
    return x


def probs_with(edit: Callable[[np.ndarray], object]) -> np.ndarray:
    p = np.full((N, 3), 1 / 3)
    edit(p)
    return p


def both(*makers: Callable[[Path], object]) -> Callable[[Path], None]:
    return lambda d: [make(d) for make in makers] and None


# ---- the cases, by class of fault -------------------------------------------------------------------------------
def numeric_flags() -> list[Case]:
    """Every numeric flag negative, zero, huge, not a number."""
    g, cases = "numeric flags", []
    inject = [("--seed", "-1"), ("--seed", "4294967296"), ("--seed", "abc"), ("--num-classes", "0"),
              ("--num-classes", "1"), ("--num-classes", "1000000"), ("--rate", "abc"), ("--rate", "nan"),
              ("--rate", "-0.1"), ("--rate", "1.5")]  # fmt: skip
    for flag, value in inject:
        base = INJECT.replace(" --rate 0.2", "") if flag == "--rate" else INJECT
        needles = ("--num-classes 1000000", "TiB") if value == "1000000" else (flag.lstrip("-"), value)
        cases.append(Case(g, f"inject {flag} {value}", "inject", f"{base} {flag} {value}", needles))
    audit = [("--folds", "0"), ("--folds", "1"), ("--folds", "1000"), ("--threads", "-1"), ("--threads", "0"),
             ("--threads", "100000"), ("--seed", "-1"), ("--k", "0"), ("--k", "2"), ("--k", "1000"), ("--rounds", "0"),
             ("--graph-folds", "1"), ("--l2", "0"), ("--l2", "nan"), ("--encoder-resolution", "0")]  # fmt: skip
    for flag, value in audit:
        base = AUDIT_TRAINS if flag == "--folds" and value == "1000" else AUDIT
        base += " --method knn" if flag == "--k" and value == "1000" else ""
        cases.append(Case(g, f"audit {flag} {value}", "audit", f"{base} {flag} {value}", (flag, value)))
    for value in ("0", "-1", "abc"):  # the dynamics audit trains --epochs epochs: 0 scored nothing, -1 hung
        cases.append(Case(g, f"audit dynamics --epochs {value}", "audit",
                          f"{AUDIT_TRAINS} --method dynamics --epochs {value}", ("--epochs", value)))  # fmt: skip
    return cases


def unreadable_paths() -> list[Case]:
    """Every path flag missing, a folder, unreadable, empty, garbage."""
    g = "unreadable paths"
    cases = []

    def faults(cli: str, flag: str, base: str, suffix: str, *, replace: str | None = None,
               kinds: tuple[str, ...] = ("missing", "folder", "unreadable", "empty", "garbage")) -> None:  # fmt: skip
        """``base`` with ``flag FILE`` (replacing the argument ``replace`` of ``base``) for each kind of bad FILE."""
        for kind in kinds:
            name = f"{kind}{suffix}"
            command = base.replace(replace, f"{{in}}/{name}") if replace else f"{base} {flag} {{in}}/{name}"
            make = {"folder": mkdir(name), "empty": write(name, b""), "garbage": write(name, b"\x93NUMPY\x01\xff garb"),
                    "unreadable": write(name, (REPO / "README.md").read_bytes()[:200])}.get(kind)  # fmt: skip
            if kind == "unreadable" and suffix == ".npy":
                make = save(name, np.arange(N) % 3)
            cases.append(Case(g, f"{cli} {flag} {kind}", cli, command, (name,), make,
                              deny=name if kind == "unreadable" else None))  # fmt: skip

    faults("inject", "--labels", "--labels {in}/y.npy --noise symmetric --rate 0.2", ".npy", replace="{in}/y.npy")
    faults("inject", "--features", "--labels {in}/y.npy --noise instance --rate 0.2", ".npy",
           kinds=("missing", "empty", "garbage"))  # fmt: skip
    faults("inject", "--matrix", "--labels {in}/y.npy --noise matrix", ".npy", kinds=("missing", "empty"))
    faults("inject", "--pairs", "--pairs {in}/pairs.jsonl --noise symmetric --rate 0.2", ".jsonl",
           replace="{in}/pairs.jsonl", kinds=("missing", "unreadable"))  # fmt: skip
    faults("audit", "--labels", AUDIT, ".npy", replace="{in}/y.npy")
    faults("audit", "--data", AUDIT, ".npy", replace="{in}/x.npy", kinds=("missing", "unreadable", "garbage"))
    faults("audit", "--pred-probs", AUDIT, ".npy", replace="{in}/p.npy", kinds=("folder", "empty", "garbage"))
    faults("audit", "--clean-labels", AUDIT, ".npy", kinds=("missing",))
    faults("audit", "--features", AUDIT, ".npy", kinds=("missing", "garbage"))
    faults("audit", "--fit-config", f"{AUDIT_TRAINS} --method dynamics", ".yaml",
           kinds=("missing", "folder", "unreadable"))  # fmt: skip
    faults("fit", "LabelsFile", f"{FIT} {LABELS_FILE}{{in}}/noisy.npy", ".npy", replace="{in}/noisy.npy")
    faults("fit", "--config", FIT, ".yaml", replace="quickstart", kinds=("missing", "folder", "unreadable"))
    faults("fit", "--ckpt_path", f"{FIT} --ckpt_path={{in}}/ce.ckpt", ".ckpt", replace="{in}/ce.ckpt")
    cases += [
        Case(g, "inject --labels not UTF-8 csv", "inject", "--labels {in}/b.csv --noise symmetric --rate 0.2",
             ("b.csv'", "UTF-8"), write("b.csv", b"label\n0\n\xff\n")),
        Case(g, "audit --data not UTF-8 csv", "audit", "--data {in}/t.csv", ("t.csv'", "UTF-8"),
             write("t.csv", b"text,label\n\xff\xfe hello,1\nbye,0\n")),
        Case(g, "audit --data garbage npz", "audit", "--data {in}/g.npz", ("g.npz'",),
             write("g.npz", b"PK\x03\x04junk")),
        Case(g, "audit --fit-config not YAML", "audit", f"{AUDIT_TRAINS} --method dynamics --fit-config {{in}}/b.yaml",
             ("b.yaml", "line 2"), write("b.yaml", "trainer:\n  max_epochs: [1\n")),
        Case(g, "audit --encoder-weights missing", "audit", f"{AUDIT} --encoder timm:resnet18 --encoder-weights "
             "{in}/w.pth", ("--encoder",)),
        Case(g, "fit LabelsFile not UTF-8 csv", "fit", f"{FIT} {LABELS_FILE}{{in}}/b.csv", ("b.csv", "UTF-8"),
             write("b.csv", b"label\n\xe9\xff\n")),
        Case(g, "fit --config not YAML", "fit", FIT.replace("quickstart", "{in}/b.yaml"), ("b.yaml", "line 3"),
             write("b.yaml", "trainer:\n  max_epochs: 3\n model: [oops\n")),
    ]  # fmt: skip
    return cases


def contents() -> list[Case]:
    """Files that read, holding the wrong thing: shapes, values, lengths, classes, NaN."""
    g = "wrong contents"
    labels_inject = "--labels {in}/{f} --noise symmetric --rate 0.2"
    audit_labels = "--data {in}/x.npy --labels {in}/{f} --pred-probs {in}/p.npy"
    audit_probs = "--data {in}/x.npy --labels {in}/y.npy --pred-probs {in}/q.npy"
    one_class = save("one.npy", np.zeros(N, np.int64))
    cases = [
        Case(g, "inject labels 2-D", "inject", labels_inject.replace("{f}", "m.npy"), ("m.npy'", "(2, 2)"),
             save("m.npy", [[0, 1], [1, 0]])),
        Case(g, "inject labels float", "inject", labels_inject.replace("{f}", "f.npy"), ("f.npy'", "1.5"),
             save("f.npy", [0.0, 1.5, 2.0])),
        Case(g, "inject labels negative", "inject", labels_inject.replace("{f}", "n.npy"), ("n.npy'", "-1"),
             save("n.npy", [0, -1, 2])),
        Case(g, "inject labels above --num-classes", "inject", f"{INJECT} --num-classes 2", ("y.npy'", "value 2")),
        Case(g, "inject labels single class", "inject", labels_inject.replace("{f}", "one.npy"), ("one.npy'",),
             one_class),
        Case(g, "inject instance NaN features", "inject", "--labels {in}/y.npy --noise instance --rate 0.2 --features "
             "{in}/f.npy", ("f.npy'", "row 4", "NaN"), save("f.npy", features_with(np.nan))),
        Case(g, "inject instance all-NaN features", "inject", "--labels {in}/y.npy --noise instance --rate 0.2 "
             "--features {in}/f.npy", ("f.npy'", "NaN"), save("f.npy", np.full((N, 4), np.nan))),
        Case(g, "inject instance features wrong length", "inject", "--labels {in}/y.npy --noise instance --rate 0.2 "
             "--features {in}/f.npy", ("f.npy'", "29"), save("f.npy", np.zeros((N - 1, 4)))),
        Case(g, "inject matrix wrong size", "inject", "--labels {in}/y.npy --noise matrix --matrix {in}/w.npy",
             ("w.npy'", "2x2"), save("w.npy", np.eye(2))),
        Case(g, "inject matrix NaN", "inject", "--labels {in}/y.npy --noise matrix --matrix {in}/w.npy",
             ("w.npy'", "nan"), save("w.npy", [[np.nan, 1, 0], [0, 1, 0], [0, 0, 1]])),
        Case(g, "inject matrix row sum", "inject", "--labels {in}/y.npy --noise matrix --matrix {in}/w.npy",
             ("w.npy'", "row 1", "0.9"), save("w.npy", [[1, 0, 0], [0, 0.9, 0], [0, 0, 1]])),
        Case(g, "audit labels 2-D", "audit", audit_labels.replace("{f}", "m.npy"), ("m.npy'", "(30, 2)"),
             save("m.npy", np.zeros((N, 2), np.int64))),
        Case(g, "audit labels wrong length", "audit", audit_labels.replace("{f}", "s.npy"), ("s.npy'", "29"),
             save("s.npy", np.arange(N - 1) % 3)),
        Case(g, "audit labels negative", "audit", audit_labels.replace("{f}", "n.npy"), ("n.npy'", "-1"),
             save("n.npy", np.r_[0, -1, np.arange(N - 2) % 3])),
        Case(g, "audit knn single class", "audit", "--data {in}/x.npy --labels {in}/one.npy --method knn",
             ("one.npy'", "only class 0"), one_class),
        Case(g, "audit confident learning single class", "audit", audit_labels.replace("{f}", "one.npy"),
             ("one.npy'", "only class 0"), one_class),
        Case(g, "audit dynamics single class", "audit", "--data {in}/x.npy --labels {in}/one.npy --method dynamics",
             ("one.npy'", "only class 0"), one_class),
        Case(g, "audit pred-probs 1-D", "audit", audit_probs, ("q.npy'", "(30,)"), save("q.npy", np.full(N, 1.0))),
        Case(g, "audit pred-probs (N, 1)", "audit", audit_probs.replace("y.npy", "one.npy"), ("q.npy'", "(30, 1)"),
             both(save("q.npy", np.ones((N, 1))), one_class)),
        Case(g, "audit pred-probs wrong rows", "audit", audit_probs, ("q.npy'", "(29, 3)"),
             save("q.npy", np.full((N - 1, 3), 1 / 3))),
        Case(g, "audit pred-probs NaN", "audit", audit_probs, ("q.npy'", "nan"),
             save("q.npy", probs_with(lambda p: p.__setitem__(3, np.nan)))),
        Case(g, "audit pred-probs row sum", "audit", audit_probs, ("q.npy'", "row 5", "1.5"),
             save("q.npy", probs_with(lambda p: p.__setitem__((5, 0), 1 / 3 + 0.5)))),
        Case(g, "audit features NaN", "audit", f"{AUDIT} --features {{in}}/f.npy", ("f.npy'", "row 4"),
             save("f.npy", features_with(np.nan))),
        Case(g, "audit features wrong rows", "audit", f"{AUDIT} --features {{in}}/f.npy", ("f.npy'", "29"),
             save("f.npy", np.zeros((N - 1, 4)))),
        Case(g, "fit LabelsFile wrong length", "fit", f"{FIT} {LABELS_FILE}{{in}}/s.npy", ("s.npy", "29"),
             save("s.npy", np.arange(N - 1) % 3)),
        Case(g, "fit LabelsFile single class", "fit", f"{FIT} {LABELS_FILE}{{in}}/one.npy", ("one.npy", "only class"),
             lambda d: np.save(d / "one.npy", np.full(len(np.load(d / "noisy.npy")), 3))),
        Case(g, "fit LabelsFile above the classes", "fit", f"{FIT} {LABELS_FILE}{{in}}/big.npy", ("big.npy", "10"),
             lambda d: np.save(d / "big.npy", np.load(d / "noisy.npy") + 1)),
    ]  # fmt: skip
    return cases


def outputs() -> list[Case]:
    """Output folders that cannot or must not be written, and outputs that would overwrite an input."""
    g = "outputs"
    issues = old_output("issues.csv", lambda d: (d / "y.csv").read_bytes())
    def unwritable(cli: str, base: str) -> list[Case]:  # the same four folders for inject and audit
        return [
            Case(g, f"{cli} --out is a file", cli, f"{base} --out {{in}}/o.txt", ("--out", "o.txt'", "is a file"),
                 write("o.txt", "keep me\n")),
            Case(g, f"{cli} --out under a file", cli, f"{base} --out {{in}}/o.txt/sub", ("o.txt'", "is a file"),
                 write("o.txt", "keep me\n")),
            Case(g, f"{cli} --out read-only folder", cli, f"{base} --out {{in}}/ro/out", ("ro'", "cannot write"),
                 read_only="ro"),
            Case(g, f"{cli} --out read-only mount", cli, f"{base} --out {{in}}/ro/out", ("ro'", "cannot write"),
                 ro_mount="ro"),
        ]  # fmt: skip

    cases = [
        *unwritable("inject", INJECT),
        Case(g, "inject outputs exist", "inject", INJECT, ("already holds", "--force"),
             old_output("labels.npy", b"old\n")),
        Case(g, "inject overwrites its input", "inject", "--labels {out}/labels.npy --noise symmetric --rate 0.2 "
             "--out {out} --force", ("labels.npy'", "overwrite an input"),
             old_output("labels.npy", lambda d: (d / "y.npy").read_bytes())),
        *unwritable("audit", AUDIT),
        Case(g, "audit outputs exist", "audit", AUDIT, ("already holds issues.csv", "--force"),
             old_output("issues.csv", b"x\n")),
        Case(g, "audit overwrites its --labels", "audit", "--data {in}/x.npy --labels {out}/issues.csv --pred-probs "
             "{in}/p.npy --out {out} --force", ("issues.csv'", "overwrite an input"), issues),
        Case(g, "audit overwrites its --labels by a link", "audit", "--data {in}/x.npy --labels {in}/link.csv "
             "--pred-probs {in}/p.npy --out {out} --force", ("issues.csv'", "overwrite an input"),
             old_output("issues.csv", lambda d: (d / "y.csv").read_bytes(), link="link.csv")),
        Case(g, "audit overwrites its --data", "audit", "--data {out}/summary.json --out {out} --force",
             ("summary.json'", "overwrite an input"), old_output("summary.json", b'{"text": "a", "label": 0}\n')),
        Case(g, "audit overwrites its --pred-probs", "audit", "--data {in}/x.npy --labels {in}/y.npy --pred-probs "
             "{out}/report.html --out {out} --force", ("report.html'", "overwrite an input"),
             old_output("report.html", b"<html></html>\n")),
        Case(g, "fit run folder under a read-only mount", "fit", f"{FIT} --trainer.default_root_dir={{in}}/ro "
             "--trainer.logger.init_args.save_dir={in}/ro", ("run folder", "ro'", "cannot write"), ro_mount="ro"),
        Case(g, "fit run folder under a file", "fit", f"{FIT} --trainer.default_root_dir={{in}}/o.txt "
             "--trainer.logger.init_args.save_dir={in}/o.txt", ("run folder", "o.txt'", "is a file"),
             write("o.txt", "keep me\n")),
    ]  # fmt: skip
    return cases


def fit_config() -> list[Case]:
    """Fit config fields: typos, values of the wrong type or outside their range, settings that cannot run."""
    g = "fit config fields"
    ncr = "'--model.regularizers=[{class_path: NeighborConsistency, init_args: {k: 40}}]'"
    fields = [
        ("--trainer.max_epoch=3", ("--trainer.max_epoch=3",)),
        ("--model.strateg=CrossEntropy", ("--model.strateg",)),
        ("--data.init_args.batch_sise=32", ("batch_sise",)),
        ("--trainer.precision=bogus", ("trainer.precision", "'bogus'", "bf16")),
        ("--data.init_args.noise.init_args.exact=maybe", ("data.noise.exact", "'maybe'")),
        ("--data.init_args.noise.init_args.rate=abc", ("data.noise.rate", "'abc'")),
        ("--data.init_args.noise.init_args.rate=1.5", ("rate", "1.5")),
        ("--data.init_args.batch_size=abc", ("data.batch_size", "'abc'")),
        ("--data.init_args.batch_size=0", ("batch_size", "0")),
        ("--data.init_args.eval_batch_size=0", ("eval_batch_size", "0")),
        ("--data.init_args.train_subset=0", ("train_subset", "0")),
        ("--data.init_args.train_subset=-5", ("train_subset", "-5")),
        ("--data.init_args.val_fraction=1.5", ("val_fraction", "1.5")),
        ("--data.init_args.num_workers=-1", ("num_workers", "-1")),
        ("--data.init_args.noise_seed=-1", ("noise_seed", "-1")),
        ("--model.optimizer.init_args.lr=-0.1", ("model.optimizer", "-0.1")),
        ("--model.optimizer.init_args.lr=abc", ("model.optimizer.lr", "'abc'")),
        ("--model.strategy=Bogus", ("model.strategy", "Bogus")),
        ("--model.backbone=bogus_net", ("bogus_net",)),
        ("--model.backbone=small_cnn --model.backbone_kwargs={}", ("small_cnn", "8x8")),
        (ncr, ("`k` (40)", "batch size (32)")),
        ("--trainer.accelerator=gpu", ("--trainer.accelerator='gpu'",)),
        ("--trainer.max_epochs=-5", ("max_epochs", "-5")),
        ("--trainer.limit_train_batches=-1", ("limit_train_batches", "-1")),
        ("--trainer.devices=0", ("devices", "0")),
        ("--seed_everything=abc", ("seed_everything", "'abc'")),
    ]
    cases = [Case(g, f"fit {args.strip(chr(39))[:60]}", "fit", f"{FIT} {args}", needles) for args, needles in fields]
    cases += [
        Case(g, "fit misspelled key in the YAML", "fit", FIT.replace("quickstart", "{in}/typo.yaml"),
             ("max_epoch",), lambda d: (d / "typo.yaml").write_text(
                 (REPO / "robustlabels/configs/quickstart.yaml").read_text().replace("max_epochs:", "max_epoch:"))),
        Case(g, "fit --ckpt_path of another strategy", "fit", f"{FIT} --ckpt_path={{in}}/ce.ckpt "
             "--model.strategy=CoTeaching", ("ce.ckpt", "CrossEntropy", "CoTeaching")),
        Case(g, "fit --ckpt_path of other networks", "fit", f"{FIT} --ckpt_path={{in}}/ce.ckpt "
             "'--model.backbone_kwargs={hidden: 64, depth: 2}'", ("ce.ckpt", "(512, 64)")),
        Case(g, "fit resume with another noise rate", "fit", f"{FIT} {ELR} --trainer.max_epochs=2 "
             "--ckpt_path={in}/elr.ckpt --data.init_args.noise.init_args.rate=0.2",
             ("elr.ckpt", "noise rate 0.4 -> 0.2")),
        Case(g, "fit resume with another noise seed", "fit", f"{FIT} {ELR} --trainer.max_epochs=2 "
             "--ckpt_path={in}/elr.ckpt --data.init_args.noise_seed=7", ("elr.ckpt", "noise_seed 0 -> 7")),
    ]  # fmt: skip
    return cases


def all_cases() -> list[Case]:
    return [*numeric_flags(), *unreadable_paths(), *contents(), *outputs(), *fit_config()]


# ---- running a case ---------------------------------------------------------------------------------------------
def environment(home: Path | None = None) -> dict[str, str]:
    library = os.environ.get("RELIABILITY_SWEEP_REPO", str(REPO))  # --repo: the checkout whose commands run
    env = {**os.environ, "PYTHONPATH": library, "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    if home is not None:  # nobody cannot write root's caches
        env.update(HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"), MPLCONFIGDIR=str(home / ".mpl"))
    return env


def snapshot(folder: Path, *, skip: Path | None = None) -> dict[str, str]:
    """``{relative path: sha256 or 'dir' or 'link'}`` of everything under ``folder`` (hidden files included)."""
    found: dict[str, str] = {}
    if not folder.exists():
        return found
    for path in sorted(folder.rglob("*")):
        if skip is not None and path.is_relative_to(skip):
            continue
        key = str(path.relative_to(folder))
        if path.is_symlink():
            found[key] = "link"
        elif path.is_dir():
            found[key] = "dir"
        else:
            try:
                found[key] = hashlib.sha256(path.read_bytes()).hexdigest()
            except OSError as err:
                found[key] = f"unreadable: {err.strerror}"
    return found


def command_of(case: Case, work: Path) -> list[str]:
    places = {"in": str(work / "in"), "out": str(work / "out")}
    args = shlex.split(case.args.replace("{in}", places["in"]).replace("{out}", places["out"]))
    if case.cli != "fit" and "--out" not in args:
        args += ["--out", places["out"]]
    return [sys.executable, "-m", f"robustlabels.{case.cli}", *args]


def prepare(case: Case, work: Path, shared: Path) -> None:
    """The case's folder: the base inputs (and fit's labels and checkpoints), its own faulty inputs."""
    inputs = work / "in"
    make_base_inputs(inputs)
    if case.cli == "fit":
        for name in ("noisy.npy", "ce.ckpt", "elr.ckpt"):
            shutil.copy(shared / name, inputs / name)
    if case.make is not None:
        case.make(inputs)
    if case.deny or case.read_only:  # nobody may read the inputs and write the case's folder, and nothing else
        for path in [work, *work.rglob("*")]:
            path.chmod(0o777 if path.is_dir() else 0o666)
        if case.read_only:
            (inputs / case.read_only).mkdir(exist_ok=True)
            (inputs / case.read_only).chmod(0o755)
        if case.deny:
            (inputs / case.deny).chmod(0)
    if case.ro_mount:
        (inputs / case.ro_mount).mkdir(exist_ok=True)


@functools.cache
def can_run(tool: str) -> bool:
    """Whether ``tool`` makes a fault real here: ``setpriv`` (root runs a command as nobody, who feels permissions),
    ``unshare`` (root mounts a read-only folder or a small disk in a private mount namespace)."""
    if not IS_ROOT or shutil.which(tool) is None:
        return False
    probe = ["setpriv", f"--reuid={NOBODY}", "--", "true"] if tool == "setpriv" else ["unshare", "-m", "true"]
    return subprocess.run(probe, capture_output=True).returncode == 0


def untestable(case: Case) -> str | None:
    """Why the case's fault cannot be made real on this machine, or ``None``."""
    if (case.deny or case.read_only) and IS_ROOT and not can_run("setpriv"):
        return "not testable as root without setpriv (root reads and writes through any permission)"
    if case.ro_mount and not can_run("unshare"):
        return "not testable here: a read-only mount needs root and unshare"
    return None


def not_testable(group: str, name: str, cli: str, why: str) -> Result:
    return Result(group, name, cli, "", None, 0, False, False, False, False, True, 0.0, "", why=why, testable=False)


def wrapper(case: Case, work: Path) -> list[str]:
    """How the command is started: as nobody (setpriv) when root, or inside a private mount namespace (unshare)."""
    if (case.deny or case.read_only) and IS_ROOT:
        return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--"]
    if case.ro_mount:
        target = work / "in" / case.ro_mount
        mount = f"mount --bind {shlex.quote(str(target))} {shlex.quote(str(target))} && mount -o remount,bind,ro " \
                f"{shlex.quote(str(target))}"  # fmt: skip
        return ["unshare", "-m", "--propagation", "private", "sh", "-c", f'{mount} && exec "$@"', "sh"]
    return []


def run_case(case: Case, root: Path, shared: Path, timeout: float) -> Result:
    why = untestable(case)
    if why is not None:
        return not_testable(case.group, case.name, case.cli, why)
    work = root / re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{case.group}-{case.name}")
    prepare(case, work, shared)
    command = command_of(case, work)
    before, inputs_before = snapshot(work), snapshot(work / "in")
    home = root / "nobody-home" if case.deny or case.read_only else None
    if home is not None:
        home.mkdir(mode=0o777, exist_ok=True)
        home.chmod(0o777)
    start = time.perf_counter()
    try:
        done = subprocess.run([*wrapper(case, work), *command], cwd=work, env=environment(home), capture_output=True,
                              text=True, timeout=timeout, start_new_session=True)  # fmt: skip
        code, err = done.returncode, done.stderr
    except subprocess.TimeoutExpired as timed_out:
        code, err = None, (timed_out.stderr or b"").decode(errors="replace") + f"\n(timed out after {timeout:.0f} s)"
    seconds = time.perf_counter() - start
    for path in [work, *work.rglob("*")]:  # undo the chmods, so that the snapshot and the clean-up can read
        if path.exists() and not path.is_symlink():
            path.chmod(0o755 if path.is_dir() else 0o644)
    after, inputs_after = snapshot(work), snapshot(work / "in")
    return judge_refusal(case, command, code, err, seconds, before != after, inputs_before == inputs_after)


def judge_refusal(case: Case, command: list[str], code: int | None, err: str, seconds: float, wrote: bool,
                  inputs_same: bool) -> Result:  # fmt: skip
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    chatter = [line for line in lines if not line.startswith("error:")]
    if case.cli == "fit":
        chatter = [line for line in chatter if not LIGHTNING_NOTICES.match(line)]
    line = errors[0] if errors else (lines[-1] if lines else "")
    one_line = len(errors) == 1 and not chatter and lines[-1] == errors[0]
    named = bool(errors) and all(needle in errors[0] for needle in case.needles)
    return Result(case.group, case.name, case.cli, shlex.join(command).replace(sys.executable, "python"), code,
                  case.expect, "Traceback (most recent call last)" in err, one_line, named, wrote, inputs_same,
                  round(seconds, 1), line[:300], stderr=err[-4000:]).judge()  # fmt: skip


# ---- shared inputs: a checkpoint of each strategy the resume cases need -----------------------------------------
def make_shared(shared: Path, timeout: float) -> None:
    """Fit the quickstart for one epoch (cross-entropy, and with ELR) under ``shared``; keep their ``last.ckpt`` and
    the noisy labels as inputs of the fit cases."""
    for name, extra in (("ce", ""), ("elr", ELR)):
        folder = shared / f"base-{name}"
        folder.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "robustlabels.fit", *shlex.split(f"{FIT} {extra}")]
        done = subprocess.run(command, cwd=folder, env=environment(), capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise SystemExit(f"the base fit ({name}) failed:\n{done.stderr[-3000:]}")
        run = folder / "runs" / "quickstart" / "version_0"
        shutil.copy(run / "checkpoints" / "last.ckpt", shared / f"{name}.ckpt")
        if name == "ce":
            shutil.copy(run / "noisy_labels.npy", shared / "noisy.npy")


# ---- the conditions: a full disk, Ctrl-C, kill -9, two runs on one --out ----------------------------------------
CONDITIONS = "conditions (disk full, Ctrl-C, kill -9, two runs)"
INJECT_NAMES = ("labels.npy", "labels.csv", "manifest.json")
AUDIT_NAMES = ("issues.csv", "summary.json", "report.html")
BIG = 1_000_000  # labels of the inject runs that are killed: about a second of work
AUDIT_ROWS = 200_000  # rows of the audits that are killed: about 2 s of work after 8 s of imports


def leftovers(out: Path) -> list[str]:
    """What a run must never leave: staging or committed folders, temporaries, a lock file."""
    if not out.is_dir():
        return []
    return sorted(p.name for p in out.iterdir() if p.name.startswith(".robustlabels") or p.name.endswith(".tmp"))


def inject_state(out: Path) -> str:
    """``absent``, ``unsealed`` (files without their manifest), ``mixed`` (a manifest beside other labels) or
    ``seed N``, the seed of the whole set (manifest hash = labels.npy, labels.csv = labels.npy)."""
    if not (out / "manifest.json").exists():
        return "unsealed" if any((out / name).exists() for name in INJECT_NAMES) else "absent"
    try:
        manifest = json.loads((out / "manifest.json").read_text())
        labels = np.load(out / "labels.npy")
        csv = np.loadtxt(out / "labels.csv", delimiter=",", skiprows=1, dtype=np.int64, ndmin=2)[:, 1]
    except (OSError, ValueError) as err:
        return f"mixed ({err})"
    digest = hashlib.sha256(np.ascontiguousarray(labels, dtype="<i8").tobytes()).hexdigest()
    if manifest["labels_sha256"] != digest or not np.array_equal(csv, labels):
        return "mixed"
    return f"seed {manifest['seed']}"


def audit_state(out: Path, references: dict[str, dict[str, str]]) -> str:
    """``absent``, ``unsealed``, ``mixed`` or the name of the reference whose issues.csv and report.html the folder
    holds beside its summary.json (the summary's own timings differ from run to run)."""
    if not (out / "summary.json").exists():
        return "unsealed" if any((out / name).exists() for name in AUDIT_NAMES) else "absent"
    files = snapshot(out)
    for name, reference in references.items():
        if all(files.get(member) == reference[member] for member in ("issues.csv", "report.html")):
            labels = json.loads((out / "summary.json").read_text())["command"]
            return name if f"{name}.npy" in labels else "mixed"
    return "mixed"


def condition(
    name: str,
    cli: str,
    command: list[str],
    code: int | None,
    expected: int | tuple[int, ...],
    err: str,
    needles: tuple[str, ...],
    faults: list[str],
    seconds: float,
    *,
    prefix: str = "error:",
) -> Result:
    """A condition's :class:`Result`: ``faults`` are what the folder shows (a mix, temporaries, changed inputs).

    The run was working when the condition struck, so its progress output may precede the one ``prefix`` line
    (``error:``, ``interrupted:``), which must be the last.
    """
    lines = [line for line in err.splitlines() if line.strip()]
    allowed = expected if isinstance(expected, tuple) else (expected,)
    quiet = code in (0, -signal.SIGKILL)  # finished, or killed: nothing to say
    line = lines[-1] if lines else ""
    ours = [text for text in lines if text.startswith(("error:", "interrupted:"))]
    result = Result(CONDITIONS, name, cli, shlex.join(command).replace(sys.executable, "python"), code,
                    code if code in allowed else allowed[0], "Traceback (most recent call last)" in err,
                    quiet or (ours == [line] and line.startswith(prefix)),
                    quiet or all(needle in line for needle in needles),
                    any("wrote" in f or "left" in f for f in faults),
                    not any("input" in f for f in faults), round(seconds, 1), line[:300],
                    stderr=err[-4000:])  # fmt: skip
    result.judge()
    if faults:
        result.passed, result.why = False, "; ".join([result.why, *faults]).strip("; ")
    return result


def in_namespace(spec_file: str) -> int:
    """Inside ``unshare -m``: mount a tmpfs at ``mount``, copy ``seed`` in, fill it up to ``keep`` free bytes, run
    ``command``, copy what the disk holds back to ``copy_back``; exit with the command's code."""
    spec = json.loads(Path(spec_file).read_text())
    mount = Path(spec["mount"])
    mount.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512m", "tmpfs", str(mount)], check=True)
    if spec.get("seed"):
        shutil.copytree(spec["seed"], mount, dirs_exist_ok=True, symlinks=True)
    filler = mount / "filler.bin"
    with open(filler, "wb") as handle:
        try:
            while True:
                handle.write(b"\0" * (1 << 20))
                handle.flush()
        except OSError:
            pass
    size = filler.stat().st_size
    os.truncate(filler, max(0, size - int(spec["keep"])))
    code = subprocess.run(spec["command"], cwd=spec["cwd"], env=environment()).returncode
    filler.unlink()
    shutil.copytree(mount, spec["copy_back"], symlinks=True)
    return code


def on_a_full_disk(root: Path, name: str, cli: str, args: list[str], *, seed: Path | None, keep: int,
                   timeout: float) -> tuple[int | None, str, Path, float]:  # fmt: skip
    """Run ``cli args`` (``{disk}``: a tmpfs with ``keep`` bytes free, holding a copy of ``seed``) in a private mount
    namespace; return the exit code, stderr, the copy of what the disk held afterwards, and the seconds."""
    work = root / name
    work.mkdir(parents=True)
    disk, copy = work / "disk", work / "disk-afterwards"
    command = [sys.executable, "-m", f"robustlabels.{cli}", *[a.replace("{disk}", str(disk)) for a in args]]
    spec = {"mount": str(disk), "seed": str(seed) if seed else None, "keep": keep, "command": command,
            "cwd": str(disk), "copy_back": str(copy)}  # fmt: skip
    (work / "spec.json").write_text(json.dumps(spec))
    start = time.perf_counter()
    done = subprocess.run(["unshare", "-m", "--propagation", "private", sys.executable, __file__, "--in-namespace",
                           str(work / "spec.json")], cwd=work, env=environment(), capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip
    return done.returncode, done.stderr, copy, time.perf_counter() - start


def disk_full_cases(root: Path, shared: Path, timeout: float) -> list[Result]:
    """inject, audit and fit on a real full disk (a tmpfs filled up to ``keep`` free bytes), over an old set or not."""
    if not can_run("unshare"):
        return [
            not_testable(CONDITIONS, "a full disk", "all", "not testable here: a small disk needs root and unshare")
        ]
    results = []
    source = shared / "big" / "clean.npy"
    for keep, label in ((0, "no space at all"), (9 * 4096, "space for labels.npy only")):
        args = ["--labels", str(source), "--noise", "symmetric", "--rate", "0.3", "--seed", "2", "--force", "--out",
                "{disk}/out"]  # fmt: skip
        for over in (False, True):
            name = f"inject on a full disk ({label}){' over an old set' if over else ''}"
            seed_folder = shared / "big" / "seeded" if over else None  # an inject set of seed 1: the old set
            code, err, copy, seconds = on_a_full_disk(root, re.sub(r"\W+", "_", name), "inject", args,
                                                      seed=seed_folder, keep=keep, timeout=timeout)  # fmt: skip
            state = inject_state(copy / "out")
            want = "seed 1" if over else "absent"
            faults = [f"wrote a {state} set, not {want}"] if state != want else []
            faults += [f"left {leftovers(copy / 'out')}"] if leftovers(copy / "out") else []
            results.append(condition(name, "inject", args, code, 2, err, ("No space left on device",), faults, seconds))
    args = ["--data", str(shared / "big" / "bx.npy"), "--labels", str(shared / "big" / "y2.npy"), "--pred-probs",
            str(shared / "big" / "bp.npy"), "--force", "--out", "{disk}/out"]  # fmt: skip
    for keep, label in ((0, "no space at all"), (64 * 4096, "space for 256 KiB")):
        name = f"audit over an old set on a full disk ({label})"
        code, err, copy, seconds = on_a_full_disk(
            root,
            re.sub(r"\W+", "_", name),
            "audit",
            args,
            seed=shared / "big" / "audit-seeded",
            keep=keep,
            timeout=timeout,
        )
        state = audit_state(copy / "out", json.loads((shared / "big" / "audit-references.json").read_text()))
        faults = [f"wrote a {state} set, not y1"] if state != "y1" else []
        faults += [f"left {leftovers(copy / 'out')}"] if leftovers(copy / "out") else []
        results.append(condition(name, "audit", args, code, 2, err, ("No space left on device",), faults, seconds))
    ckpt = (shared / "ce.ckpt").stat().st_size
    args = [*shlex.split(FIT.replace("--trainer.max_epochs=1", "--trainer.max_epochs=3"))]
    name = "fit on a full disk (space for the first epoch's checkpoints)"
    code, err, copy, seconds = on_a_full_disk(root, re.sub(r"\W+", "_", name), "fit", args, seed=None,
                                              keep=2 * ckpt + ckpt // 2 + (256 << 10), timeout=timeout)  # fmt: skip
    results.append(condition(name, "fit", args, code, 1, err, ("No space left on device", "last complete checkpoint"),
                             checkpoints_faults(copy), seconds))  # fmt: skip
    return results


def checkpoints_faults(folder: Path) -> list[str]:
    """Every checkpoint under ``folder`` loads, none is a temporary, and at least one is there."""
    import torch

    checkpoints = sorted(folder.rglob("*.ckpt"))
    faults = [f"left {p.name}" for p in folder.rglob("*.tmp")]
    for path in checkpoints:
        try:
            torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # a truncated checkpoint: whatever torch raises
            faults.append(f"wrote a checkpoint that does not load: {path.name} ({type(err).__name__})")
    return faults + ([] if checkpoints else ["wrote no checkpoint to resume from"])


def start(cli: str, args: list[str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", f"robustlabels.{cli}", *args], cwd=cwd, env=environment(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


def wait_for(predicate: Callable[[], bool], run: subprocess.Popen[str], limit: float) -> None:
    deadline = time.monotonic() + limit
    while not predicate() and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)


def staged(out: Path) -> bool:
    """Whether a run has staged a file in ``out`` (or already committed its set)."""
    return any(out.glob(".robustlabels-partial-*/*")) or any(out.glob(".robustlabels-commit-*"))


def interrupt_cases(root: Path, shared: Path, timeout: float) -> list[Result]:
    results = []
    big = shared / "big"
    sources = {p: snapshot(p) for p in (big / "clean.npy", big / "bx.npy", big / "y2.npy", big / "bp.npy")}
    # inject: Ctrl-C while it stages its files over an old set
    work = root / "ctrl_c_inject"
    shutil.copytree(big / "seeded", work)
    args = ["--labels", str(big / "clean.npy"), "--noise", "symmetric", "--rate", "0.3", "--seed", "2", "--force",
            "--out", str(work / "out")]  # fmt: skip
    begin, run = time.perf_counter(), start("inject", args, work)
    wait_for(lambda: staged(work / "out"), run, timeout)
    run.send_signal(signal.SIGINT)
    _, err = run.communicate(timeout=timeout)
    state = inject_state(work / "out")
    want = "seed 2" if run.returncode == 0 else "seed 1"
    faults = [f"wrote a {state} set, not {want}"] if state != want else []
    faults += [f"left {leftovers(work / 'out')}"] if leftovers(work / "out") else []
    results.append(
        condition(
            "Ctrl-C to inject while it writes",
            "inject",
            args,
            run.returncode,
            (130, 0),
            err,
            ("nothing written to",),
            faults,
            time.perf_counter() - begin,
            prefix="interrupted:",
        )
    )
    # audit: Ctrl-C during training (the dynamics method), over an old set
    work = root / "ctrl_c_audit"
    shutil.copytree(big / "audit-seeded", work)
    args = ["--data", str(big / "bx.npy"), "--labels", str(big / "y2.npy"), "--method", "dynamics", "--epochs", "50",
            "--force", "--out", str(work / "out")]  # fmt: skip
    log = work / "stderr.txt"  # the training writes no file early: its progress line on stderr says it started
    with open(log, "w") as stderr:
        begin = time.perf_counter()
        run = subprocess.Popen([sys.executable, "-m", "robustlabels.audit", *args], cwd=work, env=environment(),
                               stdout=subprocess.DEVNULL, stderr=stderr, text=True)  # fmt: skip
        wait_for(lambda: "[audit] dynamics: one training run" in log.read_text(), run, 4 * timeout)
        time.sleep(2.0)
        run.send_signal(signal.SIGINT)
        run.wait(timeout)
    err = log.read_text()
    state = audit_state(work / "out", json.loads((big / "audit-references.json").read_text()))
    faults = [f"wrote a {state} set, not y1"] if state != "y1" else []
    faults += [f"left {leftovers(work / 'out')}"] if leftovers(work / "out") else []
    results.append(
        condition(
            "Ctrl-C to audit during training",
            "audit",
            args,
            run.returncode,
            130,
            err,
            ("nothing written to",),
            faults,
            time.perf_counter() - begin,
            prefix="interrupted:",
        )
    )
    # fit: Ctrl-C after the first epoch's checkpoint; the line names the command that resumes
    work = root / "ctrl_c_fit"
    work.mkdir()
    args = shlex.split(FIT.replace("--trainer.max_epochs=1", "--trainer.max_epochs=1000"))
    last = work / "runs" / "quickstart" / "version_0" / "checkpoints" / "last.ckpt"
    begin, run = time.perf_counter(), start("fit", args, work)
    wait_for(last.exists, run, 4 * timeout)  # the imports and the first epoch: minutes on a loaded machine
    late = [] if last.exists() else [f"(the sweep's fault) the first epoch did not end in {4 * timeout:.0f} s"]
    time.sleep(0.5)
    run.send_signal(signal.SIGINT)
    _, err = run.communicate(timeout=timeout)
    metrics = last.parents[1] / "metrics.json"
    faults = late + checkpoints_faults(work / "runs")
    if not (metrics.is_file() and json.loads(metrics.read_text())["summary"].get("interrupted") is True):
        faults.append("wrote no metrics.json marked interrupted")
    results.append(condition("Ctrl-C to fit after an epoch", "fit", args, run.returncode, 130, err,
                             ("resume with: python -m robustlabels.fit", f"--ckpt_path={last.relative_to(work)}"),
                             faults, time.perf_counter() - begin, prefix="interrupted:"))  # fmt: skip
    changed = [str(p) for p, before in sources.items() if snapshot(p) != before]
    if changed:
        results[-1].passed, results[-1].why = False, f"{results[-1].why}; an input changed: {changed}".strip("; ")
    return results


def kill_cases(root: Path, shared: Path, trials: int, timeout: float) -> list[Result]:
    """``kill -9`` of inject and audit over an old set at seeded random moments, while writing, and at the commit;
    afterwards the folder holds the old set or the new one whole (or the committed new set without its seal, which
    the next run on the folder publishes), and the sources are byte-identical."""
    big, rng, results = shared / "big", random.Random(16), []
    references = json.loads((big / "audit-references.json").read_text())
    plans = {"inject": (["--labels", str(big / "clean.npy"), "--noise", "symmetric", "--rate", "0.3", "--seed", "2"],
                        "seed 1", "seed 2", big / "seeded", big / "inject-seconds"),
             "audit": (["--data", str(big / "bx.npy"), "--labels", str(big / "y2.npy"), "--pred-probs",
                        str(big / "bp.npy")], "y1", "y2", big / "audit-seeded", big / "audit-seconds")}  # fmt: skip
    for cli, (args, old, new, seeded, timing) in plans.items():
        seconds = float(timing.read_text())
        sources = {p: snapshot(Path(p)) for p in args if p.startswith(str(big))}
        for trial in range(trials):
            mode = ("at random", "while writing", "at the commit")[trial % 3]
            work = root / f"kill_{cli}_{trial}"
            shutil.copytree(seeded, work)
            out = work / "out"
            command = [*args, "--force", "--out", str(out)]
            begin, run = time.perf_counter(), start(cli, command, work)
            if mode == "at random":
                time.sleep(rng.uniform(0.2, 1.2) * seconds)
            else:
                pattern = ".robustlabels-partial-*/*" if mode == "while writing" else ".robustlabels-commit-*"
                wait_for(lambda out=out, pattern=pattern: any(out.glob(pattern)), run, timeout)
                time.sleep(rng.uniform(0.0, 0.3) if mode == "while writing" else 0.0)
            killed_at = time.perf_counter() - begin
            run.send_signal(signal.SIGKILL)
            _, err = run.communicate(timeout=timeout)
            state = inject_state(out) if cli == "inject" else audit_state(out, references)
            committed = any(out.glob(".robustlabels-commit-*"))
            faults = [] if state in (old, new) or (state == "unsealed" and committed) else [f"wrote a {state} set"]
            # the next run on the folder (here one refused for want of --force) finishes or removes what the kill left
            subprocess.run([sys.executable, "-m", f"robustlabels.{cli}", *args, "--out", str(out)], cwd=work,
                           env=environment(), capture_output=True, timeout=timeout)  # fmt: skip
            after = inject_state(out) if cli == "inject" else audit_state(out, references)
            if after != (new if committed else state):
                faults.append(f"the next run left a {after} set")
            faults += [f"left {leftovers(out)} after the next run"] if leftovers(out) else []
            faults += ["an input changed"] if any(snapshot(Path(p)) != s for p, s in sources.items()) else []
            outcome = {old: "old set", new: "new set"}.get(state, "committed, published by the next run")
            name = f"kill -9 {cli} {mode} (trial {trial + 1}, at {killed_at:.2f} s: {outcome})"
            results.append(condition(name, cli, command, run.returncode, (-signal.SIGKILL, 0), err, (), faults,
                                     time.perf_counter() - begin))  # fmt: skip
    return results


def concurrency_cases(root: Path, shared: Path, trials: int, timeout: float) -> list[Result]:
    """Two runs started together on one ``--out``: one whole set, each run finished or refused in one line."""
    big, results = shared / "big", []
    references = json.loads((big / "audit-references.json").read_text())
    for cli in ("inject", "audit"):
        for trial in range(trials if cli == "inject" else 1):
            work = root / f"two_{cli}_{trial}"
            work.mkdir()
            out = work / "out"
            variants = {"seed 1": ["--labels", str(big / "clean.npy"), "--noise", "symmetric", "--rate", "0.3",
                                   "--seed", "1"], "seed 2": ["--labels", str(big / "clean.npy"), "--noise",
                                   "symmetric", "--rate", "0.3", "--seed", "2"]} if cli == "inject" else {
                        name: ["--data", str(big / "bx.npy"), "--labels", str(big / f"{name}.npy"), "--pred-probs",
                               str(big / "bp.npy")] for name in ("y1", "y2")}  # fmt: skip
            begin = time.perf_counter()
            runs = {name: start(cli, [*args, "--force", "--out", str(out)], work) for name, args in variants.items()}
            done = {name: run.communicate(timeout=timeout) for name, run in runs.items()}
            faults, lines = [], []
            for name, run in runs.items():
                other = next(r.pid for n, r in runs.items() if n != name)
                refusal = f"error: --out {str(out)!r} is being written by another run (pid {other})"
                err = "\n".join(ln for ln in done[name][1].splitlines() if not ln.startswith("[audit]"))
                if not ((run.returncode == 0 and err == "") or (run.returncode == 2 and err == refusal)):
                    faults.append(f"{name}: exit {run.returncode}, {err[-200:]!r}")
                lines.append(f"{name} exit {run.returncode}")
            winners = [name for name, run in runs.items() if run.returncode == 0]
            state = inject_state(out) if cli == "inject" else audit_state(out, references)
            if state not in winners:
                faults.append(f"wrote a {state} set (finished: {winners})")
            faults += [f"left {leftovers(out)}"] if leftovers(out) else []
            result = Result(
                CONDITIONS,
                f"two {cli} runs on one --out (trial {trial + 1}: {', '.join(lines)})",
                cli,
                "two at once: " + " | ".join(shlex.join(a) for a in variants.values()),
                0,
                0,
                False,
                True,
                True,
                False,
                True,
                round(time.perf_counter() - begin, 1),
                "; ".join(lines),
            ).judge()
            if faults:
                result.passed, result.why = False, "; ".join(faults)
            results.append(result)
    return results


def make_big_inputs(big: Path, timeout: float) -> None:
    """Inputs of the conditions: 1M clean labels and an inject set of seed 1 made from them; 200k rows of features,
    labels (two versions) and probabilities and an audit set of the first labels; each run's time."""
    big.mkdir(parents=True)
    rng = np.random.default_rng(0)
    np.save(big / "clean.npy", rng.integers(0, 10, BIG))
    np.save(big / "bx.npy", rng.normal(size=(AUDIT_ROWS, 4)).astype(np.float32))
    y1 = rng.integers(0, 3, AUDIT_ROWS)
    np.save(big / "y1.npy", y1)
    np.save(big / "y2.npy", (y1 + (rng.random(AUDIT_ROWS) < 0.1)) % 3)
    np.save(big / "bp.npy", rng.dirichlet(np.ones(3), AUDIT_ROWS))
    references = {}
    for cli, args, name in (
        ("inject", ["--labels", str(big / "clean.npy"), "--noise", "symmetric", "--rate", "0.3", "--seed", "1"], None),
        *(("audit", ["--data", str(big / "bx.npy"), "--labels", str(big / f"{n}.npy"), "--pred-probs",
                     str(big / "bp.npy")], n) for n in ("y2", "y1")),
    ):  # fmt: skip
        out = big / ("seeded" if cli == "inject" else "audit-seeded" if name == "y1" else "audit-y2") / "out"
        begin = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", f"robustlabels.{cli}", *args, "--out", str(out)], cwd=big,
                              env=environment(), capture_output=True, text=True, timeout=timeout)  # fmt: skip
        if done.returncode != 0:
            raise SystemExit(f"the base {cli} run failed:\n{done.stderr[-3000:]}")
        (big / f"{cli}-seconds").write_text(f"{time.perf_counter() - begin:.3f}")
        if name is not None:
            references[name] = snapshot(out)
    (big / "audit-references.json").write_text(json.dumps(references))


# ---- the report ---------------------------------------------------------------------------------------------------
def table(results: list[Result]) -> str:
    groups: dict[str, Counter[str]] = {}
    for r in results:
        groups.setdefault(r.group, Counter())["cases"] += 1
        groups[r.group]["passed" if r.passed else "failed"] += 1
        groups[r.group]["tracebacks"] += r.traceback
        groups[r.group]["not testable"] += not r.testable
    groups["**all**"] = sum(groups.values(), Counter())
    rows = ["| class | cases | passed | failed | tracebacks | not testable here |", "|---|---:|---:|---:|---:|---:|"]
    for name, c in groups.items():
        counts = [c["cases"], c["passed"], c["failed"] - c["not testable"], c["tracebacks"], c["not testable"]]
        rows.append(f"| {name} | " + " | ".join(map(str, counts)) + " |")
    return "\n".join(rows)


def failures(results: list[Result]) -> str:
    failed = [r for r in results if not r.passed]
    if not failed:
        return "No case failed."
    rows = ["| case | exit | what is wrong | the last line of stderr |", "|---|---:|---|---|"]
    for r in failed:
        line = r.line.replace("|", "\\|")
        rows.append(f"| {r.cli}: {r.name} | {r.exit} | {r.why} | `{line[:160]}` |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2, help="cases run at a time (the conditions run alone)")
    parser.add_argument("--only", help="run only the cases whose name matches this regular expression")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    parser.add_argument("--no-conditions", action="store_true", help="skip disk-full, Ctrl-C, kill -9, two runs")
    parser.add_argument("--conditions-only", action="store_true", help="only disk-full, Ctrl-C, kill -9, two runs")
    parser.add_argument("--kills", type=int, default=4, help="kill -9 trials per command line (4)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds before a case counts as hung (600)")
    parser.add_argument("--json", type=Path, help="write every case's result here")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (its path is printed)")
    parser.add_argument("--repo", type=Path, help="run the commands of this checkout (default: the sweep's own)")
    parser.add_argument("--in-namespace", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.repo is not None:  # read by environment(), also in the namespace helper this script starts
        os.environ["RELIABILITY_SWEEP_REPO"] = str(args.repo.resolve())
    if args.in_namespace:
        return in_namespace(args.in_namespace)
    cases = [c for c in all_cases() if (not args.only or re.search(args.only, c.name)) and not args.conditions_only]
    if args.list:
        print("\n".join(f"{c.group:22} {c.cli:6} {c.name}" for c in cases))
        return 0
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:  # started in the background: the runs would inherit it
        signal.signal(signal.SIGINT, signal.default_int_handler)
    root = Path(tempfile.mkdtemp(prefix="reliability-sweep-"))
    root.chmod(0o755)  # nobody reaches the cases' folders
    started = time.perf_counter()
    try:
        shared = root / "shared"
        make_shared(shared, 4 * args.timeout)
        with ThreadPoolExecutor(max(1, args.jobs)) as pool:
            results = list(pool.map(lambda case: run_case(case, root / "cases", shared, args.timeout), cases))
        if not args.no_conditions and not args.only:
            make_big_inputs(shared / "big", 4 * args.timeout)
            conditions = root / "conditions"
            conditions.mkdir()
            results += disk_full_cases(conditions, shared, args.timeout)
            results += interrupt_cases(conditions, shared, args.timeout)
            results += kill_cases(conditions, shared, args.kills, args.timeout)
            results += concurrency_cases(conditions, shared, 2, args.timeout)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    minutes = (time.perf_counter() - started) / 60
    print(f"## Reliability sweep, {datetime.date.today().isoformat()}: {len(results)} cases in {minutes:.0f} min\n")
    print(table(results), "\n", failures(results), sep="\n")
    if args.keep:
        print(f"\n(the cases' folders: {root})")
    if args.json:
        from robustlabels.io import atomic_write_text

        atomic_write_text(args.json, json.dumps([asdict(r) for r in results], indent=1) + "\n")
    return 0 if all(r.passed for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
