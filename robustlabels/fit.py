"""``python -m robustlabels.fit --config X.yaml``: train a model under label noise with one strategy.

LightningCLI without subcommands (Lightning's ``run=False`` pattern): the YAML, or ``--trainer.*``,
``--model.*`` and ``--data.*`` flags, fill typed ``__init__`` signatures. The data module's ``num_classes``
and ``input_shape`` are linked into the model, so configs never repeat them. ``--config`` also takes the
name of a bundled config (``--config quickstart``, ``--config fashion_mnist/ce``). The CLI class and its
defaults live in :mod:`robustlabels.cli`; this module is only the entry point, and nothing imports it.
"""

from __future__ import annotations

import sys
import warnings

from pytorch_lightning.callbacks import ModelCheckpoint

from robustlabels.callbacks import RunSummary
from robustlabels.cli import RobustCLI, one_line, report_error, resolve_config_args, trainer_defaults
from robustlabels.data import NoisyLabelDataModule
from robustlabels.errors import InputError
from robustlabels.memory import keep_freed_heap
from robustlabels.module import RobustModule


def main(args: list[str] | None = None) -> int:
    """Parse, build and fit. Returns 0, or 2 after one ``error:`` line for bad input."""
    from jsonargparse import ArgumentError

    given = list(sys.argv[1:] if args is None else args)
    keep_freed_heap()
    # Lightning-internal deprecation chatter that users cannot act on.
    warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\).*")
    warnings.filterwarnings("ignore", message=".*LightningCLI's args parameter is intended.*")
    try:
        argv = resolve_config_args(given)  # `--config quickstart`: a bundled config by name
        cli = RobustCLI(
            RobustModule,
            NoisyLabelDataModule,
            subclass_mode_data=True,
            run=False,
            args=args if argv == given else argv,  # None: LightningCLI reads sys.argv itself
            trainer_defaults=trainer_defaults(argv),
            save_config_kwargs={"overwrite": True},
            parser_kwargs={"exit_on_error": False},
        )
        checkpoint = cli.trainer.checkpoint_callback
        if isinstance(checkpoint, ModelCheckpoint) and not checkpoint.save_last:
            checkpoint.save_last = True  # always leave a `last.ckpt` to resume from
        cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=cli.config.get("ckpt_path"))
        callbacks = cli.trainer.callbacks  # type: ignore[attr-defined]  # set by Lightning's callback connector
        for callback in callbacks:  # the table comes last, after the progress bar
            if isinstance(callback, RunSummary) and callback.summary is not None:
                print("\n" + callback.report(cli.trainer))
    except (InputError, ArgumentError) as err:
        return report_error(one_line(err))
    except ValueError as err:  # jsonargparse reports a failed instantiation as a plain ValueError
        if "Does not validate" not in str(err):
            raise
        return report_error(one_line(err))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
