"""``python -m robustlabels.fit --config X.yaml``: train a model under label noise with one strategy.

LightningCLI without subcommands (Lightning's ``run=False`` pattern): the YAML, or ``--trainer.*``,
``--model.*`` and ``--data.*`` flags, fill typed ``__init__`` signatures. The data module's ``num_classes``
and ``input_shape`` are linked into the model, so configs never repeat them.
"""

from __future__ import annotations

import itertools
import sys
import warnings
from pathlib import Path
from typing import Any

from pytorch_lightning.cli import LightningArgumentParser, LightningCLI

# Imported so configs can name classes without their module path (the torchgeo trick): jsonargparse
# resolves bare class names among imported subclasses.
import robustlabels.noise as _noise  # noqa: F401
import robustlabels.regularizers as _regularizers  # noqa: F401
import robustlabels.strategies as _strategies  # noqa: F401
from robustlabels.callbacks import RunSummary
from robustlabels.data import NoisyLabelDataModule
from robustlabels.errors import InputError
from robustlabels.memory import keep_freed_heap
from robustlabels.module import RobustModule


class RobustCLI(LightningCLI):
    """LightningCLI with the data → model links and a ``--ckpt_path`` to resume from."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        parser.link_arguments("data.input_shape", "model.input_shape", apply_on="instantiate")
        parser.add_argument("--ckpt_path", type=str | None, default=None, help="checkpoint to resume from")


def trainer_defaults(args: list[str]) -> dict[str, Any]:
    """CSV logs under ``runs/<config stem>/version_N`` (``main`` also keeps a ``last.ckpt``).

    ``default_root_dir`` also points under ``runs/``, so a run with ``--trainer.logger=false`` writes its
    ``config.yaml`` and checkpoints there rather than into the working directory.
    """
    name = "default"
    for flag, value in itertools.pairwise(args):
        if flag == "--config":
            name = Path(value).stem
    return {
        "default_root_dir": f"runs/{name}",
        "logger": {
            "class_path": "pytorch_lightning.loggers.CSVLogger",
            "init_args": {"save_dir": "runs", "name": name},
        },
    }


NOISE_LINES = ("Does not validate", "Subtypes:", "Errors:", "Given value", "Expected a <class 'NoneType'>")


def one_line(error: BaseException) -> str:
    """Condense a (nested, multi-line) jsonargparse error into one line naming the key and the value."""
    lines = [ln.strip(" -") for ln in str(error).splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith(NOISE_LINES)]
    key = next((ln.split('"')[1] for ln in lines if ln.startswith('Parser key "')), None)
    details = [ln for ln in lines if not ln.startswith("Parser key")]
    detail = next((ln for ln in details if "`" in ln), None)  # our own InputError messages
    for line in details if detail is None else ():
        if line.startswith("Expected a dot import path string:"):
            detail = f"unknown class {line.split(':', 1)[1].strip()!r}"
        elif "is not accepted" in line or line.startswith(("unrecognized", "No action", "Key ")):
            detail = line
        elif line.startswith("Problem with given class_path") and ":" in line:
            detail = detail or line.rstrip(":")
            continue
        else:
            continue
        break
    detail = detail or (details[0] if details else type(error).__name__)
    return f"{key}: {detail}" if key and key not in detail else detail


def main(args: list[str] | None = None) -> int:
    """Parse, build and fit. Returns 0, or 2 after one ``error:`` line for bad input."""
    from jsonargparse import ArgumentError

    argv = list(sys.argv[1:] if args is None else args)
    keep_freed_heap()
    # Lightning-internal deprecation chatter that users cannot act on.
    warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\).*")
    warnings.filterwarnings("ignore", message=".*LightningCLI's args parameter is intended.*")
    try:
        cli = RobustCLI(
            RobustModule,
            NoisyLabelDataModule,
            subclass_mode_data=True,
            run=False,
            args=args,  # None: LightningCLI reads sys.argv itself
            trainer_defaults=trainer_defaults(argv),
            save_config_kwargs={"overwrite": True},
            parser_kwargs={"exit_on_error": False},
        )
        checkpoint = cli.trainer.checkpoint_callback
        if checkpoint is not None and not checkpoint.save_last:
            checkpoint.save_last = True  # always leave a `last.ckpt` to resume from
        cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=cli.config.get("ckpt_path"))
        for callback in cli.trainer.callbacks:  # the table comes last, after the progress bar
            if isinstance(callback, RunSummary) and callback.summary is not None:
                print("\n" + callback.report(cli.trainer))
    except (InputError, ArgumentError) as err:
        print(f"error: {one_line(err)}", file=sys.stderr)
        return 2
    except ValueError as err:  # jsonargparse reports a failed instantiation as a plain ValueError
        if "Does not validate" not in str(err):
            raise
        print(f"error: {one_line(err)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
