"""What the command lines share: the fit CLI class, its run-folder defaults, the bundled configs, one-line errors.

``python -m robustlabels.fit`` is a thin entry point over :class:`RobustCLI`; the audit trains through the
same class (:mod:`robustlabels.audit.training`). Every command line reports bad input as one ``error:`` line
on stderr and exit code 2 (:func:`report_error`). The bundled fit configs ship inside the package
(``robustlabels/configs``; a checkout links ``configs`` to it) and are found with :mod:`importlib.resources`
(:func:`packaged_config`).

Importing this module does not import Lightning: :class:`RobustCLI` is built on first use, so the light
command lines (``inject``) can share the error formatting without paying for it.
"""

from __future__ import annotations

import functools
import itertools
import sys
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from robustlabels.errors import InputError

if TYPE_CHECKING:  # what the module's __getattr__ builds, for type checkers
    from pytorch_lightning.cli import LightningCLI as RobustCLI

__all__ = ["RobustCLI", "config_file", "error_line", "one_line", "package_path", "packaged_config",
           "packaged_config_names", "report_error", "report_interrupt", "resolve_config_args",
           "trainer_defaults"]  # fmt: skip

CONFIG_FLAGS = ("-c", "--config")
CONFIG_HELP = ("A fit config: a YAML file, or the name of a bundled one (quickstart, fashion_mnist/ce, "
               "cifar10/ce, ...; the files under robustlabels/configs, linked as configs/ in a checkout).")  # fmt: skip
NOISE_LINES = ("Does not validate", "Subtypes:", "Errors:", "Given value", "Expected a <class 'NoneType'>")


# ---- bundled data -----------------------------------------------------------------------------------------
def package_path(*parts: str) -> Path:
    """A file or folder shipped inside the package, ``robustlabels/<parts...>``, located by importlib.resources."""
    return Path(str(resources.files("robustlabels").joinpath(*parts)))


def packaged_config(name: str | Path) -> Path | None:
    """The bundled fit config called ``name``, or ``None``.

    ``name`` may be ``quickstart``, ``fashion_mnist/ce``, ``audit/cnn_ce.yaml`` or a checkout-relative
    ``configs/fashion_mnist/ce.yaml``: a leading ``configs/`` and a trailing ``.yaml`` are optional.
    """
    text = str(name).removeprefix("configs/").removesuffix(".yaml")
    if not text or Path(text).is_absolute() or ".." in Path(text).parts:
        return None
    path = package_path("configs", f"{text}.yaml")
    return path if path.is_file() else None


def packaged_config_names() -> list[str]:
    """Names of the bundled fit configs (``quickstart``, ``fashion_mnist/ce``, ...), sorted."""
    root = package_path("configs")
    return sorted(str(p.relative_to(root).with_suffix("")) for p in root.rglob("*.yaml"))


def config_file(value: str, *, what: str = "--config") -> str:
    """``value`` when it is a file, else the bundled config of that name (:class:`InputError` naming the flag
    ``what`` when neither)."""
    if Path(value).is_file():
        return value
    found = packaged_config(value)
    if found is None:
        raise InputError(f"`{what}` {value!r} is neither a file nor a bundled config; bundled: "
                         f"{', '.join(packaged_config_names())}")  # fmt: skip
    return str(found)


def resolve_config_args(args: list[str]) -> list[str]:
    """``args`` with the value of each ``--config`` / ``-c`` passed through :func:`config_file`."""
    resolved = []
    for previous, arg in zip([None, *args], args, strict=False):
        flag, equals, value = arg.partition("=")
        if previous in CONFIG_FLAGS:
            arg = config_file(arg)
        elif equals and flag in CONFIG_FLAGS:
            arg = f"{flag}={config_file(value)}"
        resolved.append(arg)
    return resolved


# ---- the fit command line -----------------------------------------------------------------------------------
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


@functools.cache
def _robust_cli_class() -> type:
    from pytorch_lightning.cli import LightningArgumentParser, LightningCLI

    # Imported so configs can name classes without their module path (the torchgeo trick): jsonargparse
    # resolves bare class names among imported subclasses.
    import robustlabels.noise
    import robustlabels.regularizers
    import robustlabels.strategies  # noqa: F401

    class RobustCLI(LightningCLI):
        """LightningCLI with the data → model links, a ``--ckpt_path`` to resume from, and bundled configs."""

        def init_parser(self, **kwargs: Any) -> LightningArgumentParser:
            parser = super().init_parser(**kwargs)
            for action in parser._actions:
                if "--config" in action.option_strings:
                    action.help = CONFIG_HELP
            return parser

        def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
            parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
            parser.link_arguments("data.input_shape", "model.input_shape", apply_on="instantiate")
            parser.add_argument("--ckpt_path", type=str | None, default=None, help="checkpoint to resume from")

    RobustCLI.__module__, RobustCLI.__qualname__ = __name__, "RobustCLI"
    return RobustCLI


def __getattr__(name: str) -> Any:
    """``RobustCLI``, built (and Lightning imported) on first access."""
    if name == "RobustCLI":
        return _robust_cli_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ---- one-line errors ----------------------------------------------------------------------------------------
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


def error_line(error: BaseException) -> str:
    """The message of one of our own errors (``InputError``, ``OSError``) on one line, or the error's type."""
    return " ".join(str(error).split("\n")) or type(error).__name__


def report_error(message: str) -> int:
    """Print ``error: <message>`` on stderr and return the exit code for bad input, 2."""
    print(f"error: {message}", file=sys.stderr)
    return 2


def report_interrupt(out: str | Path) -> int:
    """Print ``interrupted: ...`` on stderr for a Ctrl-C that left ``out``'s output set alone; return 130."""
    print(f"interrupted: nothing written to {out}", file=sys.stderr)
    return 130
