"""``python -m robustlabels.fit --config X.yaml``: train a model under label noise with one strategy.

LightningCLI without subcommands (Lightning's ``run=False`` pattern): the YAML, or ``--trainer.*``,
``--model.*`` and ``--data.*`` flags, fill typed ``__init__`` signatures. The data module's ``num_classes``
and ``input_shape`` are linked into the model, so configs never repeat them. ``--config`` also takes the
name of a bundled config (``--config quickstart``, ``--config fashion_mnist/ce``). The CLI class and its
defaults live in :mod:`robustlabels.cli`; this module is only the entry point, and nothing imports it.

How a run ends: exit 0 after the summary table; exit 2 after one ``error:`` line for bad input (the run's
new folder is removed again); exit 1 after one ``error:`` line when the disk fills (the last complete
checkpoint survives: checkpoints are written atomically); exit 130 after Ctrl-C, with one ``interrupted:``
line that names the metrics so far and the command that resumes from ``last.ckpt``.
"""

from __future__ import annotations

import logging
import shutil
import signal
import sys
import warnings
from pathlib import Path
from typing import Any

from pytorch_lightning.callbacks import ModelCheckpoint

from robustlabels.callbacks import RunSummary, run_dir
from robustlabels.checkpoints import (
    DISK_FULL,
    AtomicCheckpointIO,
    check_resume,
    resume_command,
    use_atomic_checkpoints,
    write_failure,
)
from robustlabels.cli import RobustCLI, one_line, report_error, resolve_config_args, trainer_defaults
from robustlabels.data import NoisyLabelDataModule
from robustlabels.errors import InputError
from robustlabels.io import check_output_folder, missing_folders, remove_empty_folders
from robustlabels.memory import keep_freed_heap
from robustlabels.module import RobustModule

INTERRUPTED = 130  # the shell's code for a process ended by SIGINT (128 + 2)


class RunFolder:
    """The run's folder (``runs/<name>/version_N``, or ``default_root_dir`` without a logger), checked before the
    run and removed again when the run ends early before it saved a checkpoint: a bad input found at setup would
    otherwise leave an empty or config-only ``version_N`` (and the ``runs/<name>`` and ``runs`` made for it)."""

    def __init__(self, trainer: Any) -> None:
        self.path = run_dir(trainer) or Path(trainer.default_root_dir)
        self.made = missing_folders(self.path)  # deepest first: the folders this run creates

    def check(self) -> None:
        """:class:`InputError` unless the run folder can be made and written (not under a file, a read-only mount, a
        folder without permission): one line, before any training."""
        check_output_folder(self.path, flag="the run folder")

    def remove_if_empty_handed(self, finished_epochs: int) -> None:
        """Remove the folder (and the parents this run made, if empty) if this run created it, finished no epoch
        and holds no checkpoint: nothing in it is worth keeping."""
        if not self.made or not self.path.is_dir() or finished_epochs > 0:
            return
        if any(self.path.rglob("*.ckpt")):
            return
        shutil.rmtree(self.path, ignore_errors=True)
        remove_empty_folders(self.made[1:])


def main(args: list[str] | None = None) -> int:
    """Parse, build and fit. Returns 0, 2 for bad input, 1 for a full disk, 130 after Ctrl-C."""
    from jsonargparse import ArgumentError

    given = list(sys.argv[1:] if args is None else args)
    sigint_handler = signal.getsignal(signal.SIGINT)
    keep_freed_heap()
    quiet_lightning_notices()
    cli: Any = None
    writer: AtomicCheckpointIO | None = None
    folder: RunFolder | None = None
    try:
        cli = build_cli(given, args)
        writer = use_atomic_checkpoints(cli.trainer)
        folder = RunFolder(cli.trainer)
        folder.check()
        fit(cli)
    except (InputError, ArgumentError) as err:
        return end_early(folder, cli, report_error(one_line(err)))
    except ValueError as err:  # jsonargparse reports a failed instantiation as a plain ValueError
        if "Does not validate" not in str(err):
            raise
        return end_early(folder, cli, report_error(one_line(err)))
    except OSError as err:
        if err.errno not in DISK_FULL:
            raise
        print(f"error: {write_failure(err, writer)}", file=sys.stderr)
        return end_early(folder, cli, 1)  # not bad input (2): the run was valid and its last checkpoint resumes
    except SystemExit:  # Lightning ends fit with sys.exit(1) after Ctrl-C; --help exits here too
        if cli is None or not cli.trainer.interrupted:
            raise
        signal.signal(signal.SIGINT, sigint_handler)  # Lightning ignores further Ctrl-C while it shuts down
        return end_early(folder, cli, report_interrupt(cli.trainer, writer, given))
    except KeyboardInterrupt:  # outside Lightning's fit: parsing, reading the data, the summary table
        started = finished_epochs(cli) > 0
        print("interrupted: " + ("after training; the run folder is complete" if started
                                 else "before training started; nothing was kept"), file=sys.stderr)  # fmt: skip
        return end_early(folder, cli, INTERRUPTED)
    return 0


def build_cli(given: list[str], args: list[str] | None) -> Any:
    """The parsed and instantiated :class:`RobustCLI` (``args`` ``None``: LightningCLI reads ``sys.argv``)."""
    argv = resolve_config_args(given)  # `--config quickstart`: a bundled config by name
    return RobustCLI(
        RobustModule,
        NoisyLabelDataModule,
        subclass_mode_data=True,
        run=False,
        args=args if argv == given else argv,
        trainer_defaults=trainer_defaults(argv),
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"exit_on_error": False},
    )


def fit(cli: Any) -> None:
    """Check a checkpoint to resume from, fit, and print the summary table."""
    ckpt_path = cli.config.get("ckpt_path")
    named = ckpt_path in ("last", "best", "hpc") and not Path(ckpt_path).exists()  # Lightning finds these itself
    if ckpt_path is not None and not named:  # before Lightning loads it: it fails with a state-dict diff
        cli.datamodule.setup("fit")
        check_resume(ckpt_path, cli.model, cli.datamodule)
    checkpoint = cli.trainer.checkpoint_callback
    if isinstance(checkpoint, ModelCheckpoint) and not checkpoint.save_last:
        checkpoint.save_last = True  # always leave a `last.ckpt` to resume from
    cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=ckpt_path)
    callbacks = cli.trainer.callbacks  # set by Lightning's callback connector
    for callback in callbacks:  # the table comes last, after the progress bar
        if isinstance(callback, RunSummary) and callback.summary is not None:
            print("\n" + callback.report(cli.trainer))


def end_early(folder: RunFolder | None, cli: Any, code: int) -> int:
    """Remove the run folder of a run that ends before it finished an epoch; return ``code``."""
    if folder is not None:
        folder.remove_if_empty_handed(finished_epochs(cli))
    return code


def finished_epochs(cli: Any) -> int:
    """Epochs the model finished training (its history), 0 before the CLI is built."""
    return len(getattr(getattr(cli, "model", None), "history", []))


def report_interrupt(trainer: Any, writer: AtomicCheckpointIO | None, given: list[str]) -> int:
    """One ``interrupted:`` line: the epoch, the metrics written so far, and how to resume; return 130."""
    checkpoint = last_checkpoint(trainer, writer)
    folder = run_dir(trainer)
    metrics = folder / "metrics.json" if folder is not None else None
    epochs = len(getattr(trainer.lightning_module, "history", []))
    parts = [f"interrupted: after {epochs} finished epoch{'s' if epochs != 1 else ''}"]
    if epochs and metrics is not None and metrics.is_file():
        parts.append(f"metrics so far in {metrics}")
    if checkpoint is None:
        parts.append("no checkpoint to resume from" + ("" if epochs else " (the first epoch had not finished)"))
    else:
        parts.append(f"resume with: {resume_command(given, checkpoint)}")
    print("; ".join(parts), file=sys.stderr)
    return INTERRUPTED


def last_checkpoint(trainer: Any, writer: AtomicCheckpointIO | None) -> Path | None:
    """``last.ckpt`` of the run (the end of the last finished epoch: a resume from it is exact), else the last
    checkpoint written, else ``None``."""
    callback = trainer.checkpoint_callback
    last = Path(callback.dirpath) / "last.ckpt" if isinstance(callback, ModelCheckpoint) and callback.dirpath else None
    for candidate in (last, writer.last_written if writer is not None else None):
        if candidate is not None and candidate.is_file():
            return candidate
    return None


def quiet_lightning_notices() -> None:
    """Silence Lightning messages users cannot act on, and its Ctrl-C notice (:func:`report_interrupt` says it)."""
    # Lightning-internal deprecation chatter.
    warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\).*")
    warnings.filterwarnings("ignore", message=".*LightningCLI's args parameter is intended.*")
    logger = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    if _drop_interrupt_notice not in logger.filters:
        logger.addFilter(_drop_interrupt_notice)


def _drop_interrupt_notice(record: logging.LogRecord) -> bool:
    return "Detected KeyboardInterrupt" not in record.getMessage()


if __name__ == "__main__":
    raise SystemExit(main())
