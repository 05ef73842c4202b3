"""``python -m robustlabels.fit`` under hostile input and hostile conditions (issue 16).

Bad input: exit 2, one ``error:`` line naming the file, field or value, no traceback, and no new ``version_N``
folder. Ctrl-C: exit 130, one line with the command that resumes, metrics so far, and a resume that matches an
uninterrupted run. Resuming with other data or another strategy: refused in one line saying what changed. A
full disk: exit 1, one line, no truncated checkpoint, the last complete one kept.
"""

from __future__ import annotations

import errno
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from robustlabels.cli import package_path
from robustlabels.fit import main

ROOT = Path(__file__).resolve().parents[1]
QUICK = str(package_path("configs", "quickstart.yaml"))
QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]
TINY = ["--data.init_args.train_subset=160", "--trainer.limit_val_batches=1"]  # 5 batches of 32 per epoch


def fit(tmp_path: Path, *extra: str) -> int:
    """The quickstart, logging to ``tmp_path/quickstart/version_N``."""
    return main(["--config", QUICK, f"--trainer.default_root_dir={tmp_path}",
                 f"--trainer.logger.init_args.save_dir={tmp_path}", *QUIET, *TINY, *extra])  # fmt: skip


def versions(tmp_path: Path) -> list[str]:
    folder = tmp_path / "quickstart"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def error_lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return [line for line in err.splitlines() if line.startswith("error:")]


@pytest.fixture(scope="module")
def ce_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``last.ckpt`` of one epoch of the quickstart (cross-entropy, 40 % symmetric noise)."""
    folder = tmp_path_factory.mktemp("ce")
    assert fit(folder, "--trainer.max_epochs=1") == 0
    return folder / "quickstart" / "version_0" / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="module")
def label_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("labels")
    (folder / "empty.npy").write_bytes(b"")
    (folder / "garbage.npy").write_bytes(b"not a numpy file at all")
    (folder / "folder.npy").mkdir()
    (folder / "latin1.csv").write_bytes(b"label\n\xe9\xff\n")
    np.save(folder / "one_class.npy", np.full(1438, 3))
    (folder / "garbage.ckpt").write_bytes(b"not a checkpoint")
    (folder / "broken.yaml").write_text("trainer:\n  max_epochs: 3\n model: [oops\n")
    (folder / "list.yaml").write_text("- trainer\n- model\n")
    return folder


LABELS = ["--data.init_args.noise=LabelsFile"]
ABSENT = "tpu" if torch.cuda.is_available() or torch.backends.mps.is_available() else "gpu"  # an accelerator not here
NCR = "--model.regularizers=[{class_path: NeighborConsistency, init_args: {k: 40}}]"
# case: (arguments, {LABELS}/{CKPT} filled in, what the one error line must contain)
BAD_INPUT: dict[str, tuple[list[str], list[str]]] = {
    "labels file missing": ([*LABELS, "--data.init_args.noise.init_args.path={LABELS}/nope.npy"],
                            ["nope.npy", "not found"]),
    "labels file empty": ([*LABELS, "--data.init_args.noise.init_args.path={LABELS}/empty.npy"],
                          ["empty.npy", "empty (0 bytes)"]),
    "labels file a folder": ([*LABELS, "--data.init_args.noise.init_args.path={LABELS}/folder.npy"],
                             ["folder.npy", "is a directory"]),
    "labels file garbage": ([*LABELS, "--data.init_args.noise.init_args.path={LABELS}/garbage.npy"],
                            ["garbage.npy", "not a readable .npy array"]),
    "labels file not UTF-8": ([*LABELS, "--data.init_args.noise.init_args.path={LABELS}/latin1.csv"],
                              ["latin1.csv", "UTF-8"]),
    "single-class labels": ([*LABELS, "--data.init_args.noise.init_args.path={LABELS}/one_class.npy"],
                            ["one_class.npy", "only class 3"]),
    "ckpt_path missing": (["--ckpt_path={LABELS}/nope.ckpt"], ["nope.ckpt", "does not exist"]),
    "ckpt_path garbage": (["--ckpt_path={LABELS}/garbage.ckpt"], ["garbage.ckpt", "not a checkpoint"]),
    "ckpt_path a folder": (["--ckpt_path={LABELS}"], ["is a directory"]),
    "ckpt_path of another strategy": (["--ckpt_path={CKPT}", "--model.strategy=CoTeaching"],
                                      ["last.ckpt", "strategy CrossEntropy", "this run has CoTeaching"]),
    "ckpt_path of other networks": (["--ckpt_path={CKPT}", "--model.backbone_kwargs={hidden: 64, depth: 2}"],
                                    ["last.ckpt", "(512, 64) there", "'hidden': 64"]),
    "ckpt_path of another backbone": (["--ckpt_path={CKPT}", "--model.backbone=preact_resnet18",
                                       "--model.backbone_kwargs={}"],
                                      ["model.backbone 'mlp'", "'preact_resnet18'"]),
    "negative learning rate": (["--model.optimizer.init_args.lr=-0.1"], ["model.optimizer", "SGD", "-0.1"]),
    "accelerator this machine lacks": ([f"--trainer.accelerator={ABSENT}"], [f"--trainer.accelerator='{ABSENT}'"]),
    "backbone too big for 8x8 images": (["--model.backbone=small_cnn", "--model.backbone_kwargs={}"],
                                        ["small_cnn", "1x8x8"]),
    "NCR k larger than the batch": ([NCR], ["`k` (40)", "batch size (32)"]),
    "train_subset 0": (["--data.init_args.train_subset=0"], ["train_subset", "got 0"]),
    "train_subset -5": (["--data.init_args.train_subset=-5"], ["train_subset", "got -5"]),
    "eval_batch_size 0": (["--data.init_args.eval_batch_size=0"], ["`eval_batch_size` must be >= 1", "got 0"]),
    "num_workers -1": (["--data.init_args.num_workers=-1"], ["`num_workers` must be >= 0", "got -1"]),
    "noise_seed -1": (["--data.init_args.noise_seed=-1"], ["`noise_seed` must be in [0, 4294967295]", "got -1"]),
    "split_seed 2**32": (["--data.init_args.split_seed=4294967296"], ["`split_seed`", "got 4294967296"]),
    "run folder under a file": (["--trainer.logger.init_args.save_dir={LABELS}/garbage.ckpt/runs"],
                                ["the run folder", "garbage.ckpt' is a file"]),
    "misspelled max_epochs": (["--trainer.max_epoch=3"], ["--trainer.max_epoch=3"]),
    "precision bogus": (["--trainer.precision=bogus"], ["trainer.precision", "'bogus'", "16-mixed", "bf16"]),
    "exact=maybe": (["--data.init_args.noise.init_args.exact=maybe"],
                    ["data.noise.exact", "SymmetricNoise", "bool", "'maybe'"]),
    "rate=abc": (["--data.init_args.noise.init_args.rate=abc"], ["data.noise.rate", "float", "'abc'"]),
    "batch_size=abc": (["--data.init_args.batch_size=abc"], ["data.batch_size", "DigitsDataModule", "'abc'"]),
    "optimizer class unknown": (["--model.optimizer=torch.optim.Nope"], ["model.optimizer", "'torch.optim.Nope'"]),
    "augment bogus": (["--data.init_args.augment=bogus"], ["data.augment", "one of default, none", "'bogus'"]),
    "learning rate abc": (["--model.optimizer.init_args.lr=abc"], ["model.optimizer.lr", "'abc'"]),
    "config missing": (["--config={LABELS}/nope.yaml"], ["nope.yaml", "neither a file nor a bundled config"]),
    "config not YAML": (["--config={LABELS}/broken.yaml"], ["broken.yaml", "line 3", "'model: [oops'"]),
    "config not a mapping": (["--config={LABELS}/list.yaml"], ["list.yaml", "mapping", "list"]),
}  # fmt: skip


@pytest.mark.parametrize("case", BAD_INPUT, ids=list(BAD_INPUT))
def test_bad_input_is_one_named_error_and_leaves_no_run_folder(
    case: str, tmp_path: Path, label_files: Path, ce_checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args, needles = BAD_INPUT[case]
    args = [a.replace("{LABELS}", str(label_files)).replace("{CKPT}", str(ce_checkpoint)) for a in args]
    assert fit(tmp_path, "--trainer.max_epochs=1", *args) == 2
    lines = error_lines(capsys)
    assert len(lines) == 1, lines
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert versions(tmp_path) == []


def test_a_refused_start_after_the_run_folder_exists_removes_it(tmp_path: Path, label_files: Path) -> None:
    """The single-class check runs in the data module's setup, after Lightning made ``version_0``: the folder goes,
    while earlier runs' folders stay; so do the parents it made (``runs/<name>``, ``runs``, ...)."""
    (tmp_path / "quickstart" / "version_0").mkdir(parents=True)
    args = [*LABELS, f"--data.init_args.noise.init_args.path={label_files}/one_class.npy"]
    assert fit(tmp_path, "--trainer.max_epochs=1", *args) == 2
    assert versions(tmp_path) == ["version_0"]
    nested = tmp_path / "new" / "runs"
    assert fit(tmp_path, "--trainer.max_epochs=1", *args, f"--trainer.logger.init_args.save_dir={nested}") == 2
    assert not (tmp_path / "new").exists()


def test_a_run_folder_that_cannot_be_written_is_one_line_before_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A read-only folder (or mount) for the runs: one line naming it, not Lightning's traceback from ``makedirs``.
    (As root, who may write anyway, ``os.access`` says no, as it does on a read-only mount.)"""
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access

    def access(path: Any, mode: int, **kwargs: Any) -> bool:
        return False if Path(path) == locked else real_access(path, mode, **kwargs)

    monkeypatch.setattr(os, "access", access)
    assert fit(tmp_path, "--trainer.max_epochs=1", f"--trainer.logger.init_args.save_dir={locked}") == 2
    [line] = error_lines(capsys)
    assert line.startswith(f"error: the run folder '{locked / 'quickstart' / 'version_0'}': cannot write in '{locked}'")
    assert list(locked.iterdir()) == []


# ---- resuming ---------------------------------------------------------------------------------------------------
ELR = ["--model.regularizers=[{class_path: ELR}]"]


def test_resuming_elr_with_another_noise_rate_says_what_changed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert fit(tmp_path, "--trainer.max_epochs=1", *ELR) == 0
    ckpt = tmp_path / "quickstart" / "version_0" / "checkpoints" / "last.ckpt"
    assert fit(tmp_path, "--trainer.max_epochs=2", *ELR, f"--ckpt_path={ckpt}",
               "--data.init_args.noise.init_args.rate=0.2") == 2  # fmt: skip
    lines = error_lines(capsys)
    assert len(lines) == 1 and "other data: noise rate 0.4 -> 0.2" in lines[0] and str(ckpt) in lines[0]
    assert fit(tmp_path, "--trainer.max_epochs=2", *ELR, f"--ckpt_path={ckpt}", "--data.init_args.noise_seed=7") == 2
    assert "noise_seed 0 -> 7" in error_lines(capsys)[0]
    assert versions(tmp_path) == ["version_0"]
    assert fit(tmp_path, "--trainer.max_epochs=2", *ELR, f"--ckpt_path={ckpt}") == 0  # the same data resumes
    assert versions(tmp_path) == ["version_0", "version_1"]


def test_a_checkpoint_from_before_fingerprints_is_still_checked(
    tmp_path: Path, ce_checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without the robustlabels record: the networks by name (another strategy) and the noisy labels' hash."""
    old = torch.load(ce_checkpoint, weights_only=True)
    del old["robustlabels"], old["DigitsDataModule"]["fingerprint"]
    legacy = tmp_path / "legacy.ckpt"
    torch.save(old, legacy)
    assert fit(tmp_path, f"--ckpt_path={legacy}", "--model.strategy=CoTeaching") == 2
    assert "holds other networks than this run builds" in error_lines(capsys)[0]
    assert fit(tmp_path, f"--ckpt_path={legacy}", "--data.init_args.noise.init_args.rate=0.2") == 2
    assert "other data: noisy labels differ" in error_lines(capsys)[0]


# ---- Ctrl-C -----------------------------------------------------------------------------------------------------
class InterruptOnce(pl.Callback):
    """Ctrl-C: send this process SIGINT at the start of epoch ``epoch`` (after ``batches`` batches), once per
    ``tag`` (the resumed run builds the callback again)."""

    fired: ClassVar[set[str]] = set()

    def __init__(self, tag: str, epoch: int, batches: int = 0) -> None:
        self.tag, self.epoch, self.batches = tag, epoch, batches

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        if trainer.current_epoch == self.epoch and args[-1] == self.batches and self.tag not in self.fired:
            self.fired.add(self.tag)
            os.kill(os.getpid(), signal.SIGINT)  # Python raises KeyboardInterrupt here, in the main thread


def interrupt_at(tag: str, epoch: int, batches: int = 0) -> str:
    init = f"{{tag: {tag}, epoch: {epoch}, batches: {batches}}}"
    return f"--trainer.callbacks=[{{class_path: {__name__}.InterruptOnce, init_args: {init}}}]"


def test_ctrl_c_is_one_line_exit_130_and_the_printed_command_resumes_exactly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    handler = signal.getsignal(signal.SIGINT)
    assert fit(tmp_path / "a", "--trainer.max_epochs=3", *ELR, interrupt_at("resumes", epoch=2, batches=3)) == 130
    assert signal.getsignal(signal.SIGINT) == handler  # Lightning's SIG_IGN undone
    err = capsys.readouterr().err
    assert "Traceback" not in err and "graceful shutdown" not in err
    [line] = [ln for ln in err.splitlines() if ln.startswith("interrupted:")]
    assert line.startswith("interrupted: after 2 finished epochs;")
    run = tmp_path / "a" / "quickstart" / "version_0"
    assert f"--ckpt_path={run / 'checkpoints' / 'last.ckpt'}" in line and str(run / "metrics.json") in line
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["summary"]["interrupted"] is True and len(metrics["history"]) == 2

    command = shlex.split(line.split("resume with: ", 1)[1])
    assert command[:3] == ["python", "-m", "robustlabels.fit"]
    assert main(command[3:]) == 0  # the command as printed, in this process
    assert fit(tmp_path / "b", "--trainer.max_epochs=3", *ELR) == 0
    resumed = json.loads((run.parent / "version_1" / "metrics.json").read_text())["history"]
    straight = json.loads((tmp_path / "b" / "quickstart" / "version_0" / "metrics.json").read_text())["history"]
    assert resumed[:2] == metrics["history"] and len(resumed) == 3
    assert resumed[-1]["train/loss"] == pytest.approx(straight[-1]["train/loss"], rel=1e-6)
    assert resumed[-1]["test/acc"] == pytest.approx(straight[-1]["test/acc"], abs=1e-9)


def test_ctrl_c_in_the_first_epoch_says_there_is_nothing_to_resume(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert fit(tmp_path, "--trainer.max_epochs=3", interrupt_at("first", epoch=0, batches=2)) == 130
    [line] = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("interrupted:")]
    assert line == (
        "interrupted: after 0 finished epochs; no checkpoint to resume from (the first epoch had not finished)"
    )
    assert versions(tmp_path) == []  # nothing in the run folder was worth keeping


@pytest.mark.slow  # about 35 s on 2 busy cores, most of it the imports of a fresh process
def test_sigint_to_the_process_exits_130_with_one_line(tmp_path: Path) -> None:
    args = ["--config", QUICK, f"--trainer.default_root_dir={tmp_path}",
            f"--trainer.logger.init_args.save_dir={tmp_path}", *QUIET, *TINY, "--trainer.max_epochs=1000"]  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "robustlabels.fit", *args], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    last = tmp_path / "quickstart" / "version_0" / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 120
    while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err and err.count("interrupted:") == 1
    assert f"--ckpt_path={last}" in err and torch.load(last, weights_only=True)["epoch"] >= 0


# ---- a full disk ----------------------------------------------------------------------------------------------
class FailingWrites:
    """A file whose ``write`` raises ``error()`` once ``room`` bytes are written: ENOSPC as on a full disk, or the
    KeyboardInterrupt of a Ctrl-C that arrives during the write (``torch.save``'s zip writer then raises its own
    ``RuntimeError: unexpected pos ...``)."""

    def __init__(self, real: Any, room: int, error: Any) -> None:
        self.real, self.room, self.error = real, room, error

    def write(self, data: Any) -> int:
        if len(data) > self.room:
            raise self.error()
        self.room -= len(data)
        return int(self.real.write(data))

    def __enter__(self) -> FailingWrites:
        return self

    def __exit__(self, *exc: object) -> None:
        self.real.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def test_a_full_disk_is_one_line_exit_1_and_keeps_the_last_complete_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The disk fills while epoch 1's checkpoint is written: 100 kB of it reach the file, then ENOSPC."""
    fail_writing_epoch_1(monkeypatch, lambda: OSError(errno.ENOSPC, "No space left on device"))
    assert fit(tmp_path, "--trainer.max_epochs=3") == 1
    [line] = error_lines(capsys)
    folder = tmp_path / "quickstart" / "version_0" / "checkpoints"
    assert "No space left on device" in line and "epoch=1" in line
    assert f"the last complete checkpoint is {folder / 'last.ckpt'}" in line
    monkeypatch.undo()
    assert sorted(p.name for p in folder.iterdir()) == ["epoch=0-step=5.ckpt", "last.ckpt"]  # no temporary left
    for path in folder.iterdir():
        assert torch.load(path, weights_only=True)["epoch"] == 0  # whole, and the last good one


def fail_writing_epoch_1(monkeypatch: pytest.MonkeyPatch, error: Any) -> None:
    """The writes of epoch 1's checkpoint raise ``error()`` after 100 kB."""
    real_fdopen = os.fdopen

    def fdopen(fd: int, *args: Any, **kwargs: Any) -> Any:
        handle = real_fdopen(fd, *args, **kwargs)
        writing = ".epoch=1-" in os.readlink(f"/proc/self/fd/{fd}")  # the temporary of epoch 1's checkpoint
        return FailingWrites(handle, 100_000, error) if writing else handle

    monkeypatch.setattr(os, "fdopen", fdopen)


def test_ctrl_c_while_a_checkpoint_is_written_is_one_line_exit_130_and_keeps_the_last_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fail_writing_epoch_1(monkeypatch, KeyboardInterrupt)
    assert fit(tmp_path, "--trainer.max_epochs=3") == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err
    [line] = [ln for ln in err.splitlines() if ln.startswith("interrupted:")]
    folder = tmp_path / "quickstart" / "version_0"
    assert f"--ckpt_path={folder / 'checkpoints' / 'last.ckpt'}" in line
    assert json.loads((folder / "metrics.json").read_text())["summary"]["interrupted"] is True
    monkeypatch.undo()
    assert sorted(p.name for p in (folder / "checkpoints").iterdir()) == ["epoch=0-step=5.ckpt", "last.ckpt"]
    assert torch.load(folder / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 0
