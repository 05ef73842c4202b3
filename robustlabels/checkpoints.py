"""Checkpoints the fit CLI can trust: written atomically, checked before a resume, named after Ctrl-C.

- :class:`AtomicCheckpointIO` writes every checkpoint to a temporary file beside its final name and renames it
  into place, so a full disk or a kill leaves the previous checkpoint, never a truncated one.
- :func:`check_resume` reads ``--ckpt_path`` before Lightning does and refuses, in one line, a file that is
  missing or not a checkpoint, one from another strategy or other networks, and one trained on other data
  (the data module's fingerprint, :meth:`~robustlabels.data.NoisyLabelDataModule.data_fingerprint`).
- :func:`resume_command` is the command line that resumes an interrupted run.
"""

from __future__ import annotations

import errno
import shlex
import zipfile
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from robustlabels.data.datamodule import describe_data_change
from robustlabels.errors import InputError
from robustlabels.io import atomic_open

# Write failures that stop a run without a bug behind them: the disk, the quota, the file size limit.
DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
# The model's hyper-parameters that shape its networks: a resume must keep them (``backbone_kwargs`` may change
# what does not shape a weight; the weights' shapes are compared after these).
NETWORK_HPARAMS = ("backbone", "num_classes", "input_shape")


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, made atomic (temporary file, fsync, :func:`os.replace`).

    Lightning writes the final path in place, so a full disk leaves a truncated ``epoch=0-step=41.ckpt`` that
    does not load. ``torch.save`` streams into the temporary file (no second copy in memory, unlike Lightning's
    own in-memory buffer); its zip writer reports a failed ``write`` as ``RuntimeError: unexpected pos ...``, so what
    the ``write`` raised (the ``OSError`` of a full disk, the ``KeyboardInterrupt`` of a Ctrl-C) is kept by
    :class:`WriteErrors` and raised instead. :attr:`last_written` is the last checkpoint written whole.
    """

    def __init__(self) -> None:
        super().__init__()
        self.last_written: Path | None = None

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        try:
            with atomic_open(path, "wb") as handle:
                writer = WriteErrors(handle)
                try:
                    torch.save(checkpoint, writer)
                except RuntimeError:
                    if writer.error is None:
                        raise
                    raise writer.error from None
        except OSError as err:  # name the checkpoint: a failed write() names no file
            raise OSError(err.errno, err.strerror or str(err), str(path)) from err
        self.last_written = Path(path)


class WriteErrors:
    """A binary file whose ``write`` keeps the first exception it raised (``error``); everything else is the file's
    own."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle
        self.error: BaseException | None = None

    def write(self, data: Any) -> int:
        try:
            written: int = self.handle.write(data)
        except BaseException as err:  # a full disk, or a Ctrl-C that arrived during the write
            self.error = self.error or err
            raise
        return written

    def __getattr__(self, name: str) -> Any:
        return getattr(self.handle, name)


def use_atomic_checkpoints(trainer: Any) -> AtomicCheckpointIO | None:
    """Let ``trainer`` write checkpoints through :class:`AtomicCheckpointIO`, unless the config chose a checkpoint
    plugin of its own (kept: it knows its storage). Returns the writer installed, or ``None``."""
    if type(trainer.strategy.checkpoint_io) is not TorchCheckpointIO:
        return None
    writer = AtomicCheckpointIO()
    trainer.strategy.checkpoint_io = writer
    return writer


def write_failure(err: OSError, writer: AtomicCheckpointIO | None) -> str:
    """One line for a write that failed for lack of space: the file, the reason, the checkpoint that survives."""
    last = writer.last_written if writer is not None else None
    complete = last is not None and last.is_file()
    kept = f"the last complete checkpoint is {last}" if complete else "no checkpoint was written"
    return f"cannot write {err.filename or 'a run file'}: {err.strerror or err}; {kept}"


# ---- resuming ---------------------------------------------------------------------------------------------------
def check_resume(path: str, model: Any, datamodule: Any) -> None:
    """Raise :class:`InputError` unless the checkpoint at ``path`` can resume this run: it loads, was saved by
    the same strategy, regularizers and networks, and was trained on the same data. ``datamodule`` is set up."""
    checkpoint = read_checkpoint(path)
    check_same_model(checkpoint, model, path)
    check_same_data(checkpoint, datamodule, path)


def read_checkpoint(path: str) -> dict[str, Any]:
    """The checkpoint at ``path``, loaded as Lightning will load it (``weights_only``), or an :class:`InputError`."""
    file = Path(path).expanduser()
    problem = ("does not exist" if not file.exists() else "is a directory, not a checkpoint" if file.is_dir()
               else "is empty (0 bytes)" if file.stat().st_size == 0 else None)  # fmt: skip
    if problem is None and not zipfile.is_zipfile(file):  # torch.save's format since torch 1.6
        problem = "is not a checkpoint (not a torch.save archive)"
    if problem is not None:
        raise InputError(f"`--ckpt_path` {path!r} {problem}")
    try:
        checkpoint = torch.load(file, map_location="cpu", weights_only=True, mmap=True)  # mmap: reads lazily
    except Exception as err:  # whatever torch cannot read is not a checkpoint to resume from
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise InputError(f"`--ckpt_path` {path!r} is not a checkpoint that loads: {reason}") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise InputError(f"`--ckpt_path` {path!r} is not a Lightning checkpoint (it holds no state_dict)")
    return checkpoint


def check_same_model(checkpoint: dict[str, Any], model: Any, path: str) -> None:
    """Refuse a checkpoint of another strategy, other regularizers or other networks, naming both sides."""
    record = checkpoint.get("robustlabels") or {}
    now = {"strategy": type(model.strategy).__name__, "regularizers": [type(r).__name__ for r in model.regularizers]}
    for what, current in now.items():
        saved = record.get(what)
        if saved is not None and saved != current:
            raise InputError(f"`--ckpt_path` {path!r} was saved by a run with {what} {saved}; this run has {current}: "
                             f"resume with the same {what}, or drop --ckpt_path to start a new run")  # fmt: skip
    saved_hparams = checkpoint.get("hyper_parameters") or {}
    for name in NETWORK_HPARAMS:
        saved, current = saved_hparams.get(name), model.hparams.get(name)
        if name in saved_hparams and _plain(saved) != _plain(current):
            raise InputError(f"`--ckpt_path` {path!r} was saved with model.{name} {_plain(saved)!r}; this run has "
                             f"{_plain(current)!r}")  # fmt: skip
    kwargs = [dict(hparams.get("backbone_kwargs") or {}) for hparams in (saved_hparams, model.hparams)]
    hint = f" (model.backbone_kwargs {kwargs[0]} there, {kwargs[1]} here)" if kwargs[0] != kwargs[1] else ""
    check_same_networks(checkpoint["state_dict"], model.nets.state_dict(prefix="nets."), path, hint)


def check_same_networks(saved: dict[str, Any], current: dict[str, Any], path: str, hint: str = "") -> None:
    """Compare the networks' weights by name and shape (this also checks checkpoints from before the strategy
    was recorded); ``hint`` ends a shape mismatch's message."""
    saved = {key: value for key, value in saved.items() if key.startswith("nets.")}
    missing, unexpected = sorted(set(current) - set(saved)), sorted(set(saved) - set(current))
    if missing or unexpected:
        example = (missing or unexpected)[0]
        raise InputError(f"`--ckpt_path` {path!r} holds other networks than this run builds: {len(missing)} weights "
                         f"missing, {len(unexpected)} unexpected (e.g. {example!r}); resume with the model it was "
                         "saved with (another strategy?)")  # fmt: skip
    for key, value in current.items():
        if tuple(saved[key].shape) != tuple(value.shape):
            raise InputError(f"`--ckpt_path` {path!r}: {key!r} has shape {tuple(saved[key].shape)} there and "
                             f"{tuple(value.shape)} in this run's networks{hint}")  # fmt: skip


def check_same_data(checkpoint: dict[str, Any], datamodule: Any, path: str) -> None:
    """Refuse a checkpoint trained on other data, saying what changed (``noise rate 0.4 -> 0.2``)."""
    current = getattr(datamodule, "fingerprint", None)
    saved = (checkpoint.get("robustlabels") or {}).get("data")
    if saved is None:  # saved before fingerprints: the data module's hash of the noisy labels
        old = checkpoint.get(type(datamodule).__qualname__) or {}
        saved = {"noisy labels sha256": old["noisy_labels_sha256"]} if "noisy_labels_sha256" in old else None
    change = describe_data_change(saved, current) if saved is not None and current is not None else None
    if change is not None:
        raise InputError(f"`--ckpt_path` {path!r} was trained on other data: {change}; resume with the data and "
                         "noise it was trained on, or drop --ckpt_path to start a new run")  # fmt: skip


def _plain(value: Any) -> Any:
    """Sequences as lists, so a tuple saved in a checkpoint equals the list a config gives."""
    return list(value) if isinstance(value, tuple | list) else value


def resume_command(args: list[str], checkpoint: Path) -> str:
    """The command line that resumes from ``checkpoint``: ``args`` without their ``--ckpt_path``, plus the new one."""
    kept: list[str] = []
    skip_value = False
    for arg in args:
        if skip_value:
            skip_value = False
        elif arg == "--ckpt_path":
            skip_value = True
        elif not arg.startswith("--ckpt_path="):
            kept.append(arg)
    return shlex.join(["python", "-m", "robustlabels.fit", *kept, f"--ckpt_path={checkpoint}"])


def resume_record(module: Any) -> dict[str, Any]:
    """What a resume must match, saved in every checkpoint (``checkpoint["robustlabels"]``) and compared by
    :func:`check_resume` before Lightning loads the weights: the strategy, the regularizers, the data fingerprint."""
    datamodule = getattr(module._trainer, "datamodule", None)  # no trainer: a checkpoint saved by hand
    return {"strategy": type(module.strategy).__name__,
            "regularizers": [type(reg).__name__ for reg in module.regularizers],
            "data": getattr(datamodule, "fingerprint", None)}  # fmt: skip
