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
import inspect
import itertools
import re
import sys
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from robustlabels.errors import InputError

if TYPE_CHECKING:  # what the module's __getattr__ builds, for type checkers
    from pytorch_lightning.cli import LightningCLI as RobustCLI

__all__ = ["RobustCLI", "config_file", "error_line", "one_line", "package_path", "packaged_config",
           "packaged_config_names", "report_error", "report_interrupt", "resolve_config_args",
           "trainer_defaults"]  # fmt: skip

CONFIG_FLAGS = ("-c", "--config")
CONFIG_HELP = ("A fit config: a YAML file, or the name of a bundled one (quickstart, fashion_mnist/ce, "
               "cifar10/ce, ...; the files under robustlabels/configs, linked as configs/ in a checkout).")  # fmt: skip


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
    ``what`` when neither, or when the file is not a YAML mapping: :func:`check_config_yaml`)."""
    if Path(value).is_file():
        check_config_yaml(value, what=what)
        return value
    found = packaged_config(value)
    if found is None:
        raise InputError(f"`{what}` {value!r} is neither a file nor a bundled config; bundled: "
                         f"{', '.join(packaged_config_names())}")  # fmt: skip
    return str(found)


def check_config_yaml(path: str, *, what: str = "--config") -> None:
    """Raise :class:`InputError` naming the file, and the line and column, unless ``path`` is a readable YAML
    mapping. (jsonargparse reports a YAML error without the file's name, as in ``"<unicode string>"``.)"""
    import yaml

    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"`{what}` {path!r} cannot be read: {error_line(err)}") from None
    try:
        content = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        if mark is None:
            raise InputError(f"`{what}` {path!r} is not valid YAML: {problem}") from None
        raise InputError(f"`{what}` {path!r} is not valid YAML: {problem} at {yaml_place(text, mark)}"
                         + (f" ({err.context} at {yaml_place(text, err.context_mark)})"  # type: ignore[attr-defined]
                            if getattr(err, "context_mark", None) else "")) from None  # fmt: skip
    if content is not None and not isinstance(content, dict):
        raise InputError(f"`{what}` {path!r} must hold a mapping (trainer:, model:, data:, ...); got a "
                         f"{type(content).__name__}")  # fmt: skip


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


def yaml_place(text: str, mark: Any) -> str:
    """``line L, column C: 'the line'`` for a PyYAML mark (1-based, as editors count)."""
    lines = text.splitlines()
    shown = f": {lines[mark.line].strip()!r}" if mark.line < len(lines) else " (end of file)"
    return f"line {mark.line + 1}, column {mark.column + 1}{shown}"


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


def trainer_settings(config: Any) -> str:
    """The device settings of a Trainer config that differ from Lightning's defaults, as flags:
    ``--trainer.accelerator='gpu', --trainer.devices=2``."""
    names = ("accelerator", "devices", "strategy", "precision", "num_nodes")
    get = config.get if hasattr(config, "get") else lambda name: None
    given = [f"--trainer.{name}={get(name)!r}" for name in names if get(name) not in (None, "auto", 1)]
    return ", ".join(given) or "the trainer's settings"


@functools.cache
def _robust_cli_class() -> type:
    from pytorch_lightning import Trainer
    from pytorch_lightning.cli import LightningArgumentParser, LightningCLI
    from pytorch_lightning.utilities.exceptions import MisconfigurationException

    # Imported so configs can name classes without their module path (the torchgeo trick): jsonargparse
    # resolves bare class names among imported subclasses.
    import robustlabels.noise
    import robustlabels.regularizers
    import robustlabels.strategies  # noqa: F401
    from robustlabels import precision as precision_module
    from robustlabels.precision import AUTO

    class RobustTrainer(Trainer):
        """Lightning's Trainer, whose ``precision`` also takes ``auto`` (the default here; robustlabels.precision)."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            if kwargs.get("precision", AUTO) == AUTO:
                kwargs["precision"], reason = precision_module.auto_precision(kwargs.get("accelerator", AUTO))
                precision_module.announce(kwargs["precision"], reason)
            super().__init__(*args, **kwargs)

    # The parser reads the signature: Trainer's own, with `auto` added to precision's choices and as its default.
    signature = inspect.signature(Trainer.__init__)
    precision = signature.parameters["precision"]
    RobustTrainer.__init__.__signature__ = signature.replace(parameters=[  # type: ignore[attr-defined]
        precision.replace(annotation=precision.annotation | Literal["auto"], default=AUTO) if p is precision else p
        for p in signature.parameters.values()])  # fmt: skip

    class RobustCLI(LightningCLI):
        """LightningCLI with the data → model links, a ``--ckpt_path`` to resume from, bundled configs and
        ``precision: auto``."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **{"trainer_class": RobustTrainer, **kwargs})

        def init_parser(self, **kwargs: Any) -> LightningArgumentParser:
            # argparse would take a typo such as `--trainer.max_epoch=3` for a prefix of `max_epochs`: a typo
            # must be an error, so abbreviations are off.
            parser = super().init_parser(**{"allow_abbrev": False, **kwargs})
            for action in parser._actions:
                if "--config" in action.option_strings:
                    action.help = CONFIG_HELP
            return parser

        def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
            parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
            parser.link_arguments("data.input_shape", "model.input_shape", apply_on="instantiate")
            parser.add_argument("--ckpt_path", type=str | None, default=None, help="checkpoint to resume from")

        def instantiate_trainer(self, **kwargs: Any) -> Trainer:
            """The Trainer, with Lightning's complaints about its settings (an accelerator this machine lacks, ...)
            as an :class:`InputError` naming the settings."""
            try:
                return super().instantiate_trainer(**kwargs)
            except (MisconfigurationException, ModuleNotFoundError) as err:  # tpu: "Requirement 'torch_xla' not met"
                raise InputError(f"{error_line(err)} ({trainer_settings(self.config_init.get('trainer'))})") from None

    RobustCLI.__module__, RobustCLI.__qualname__ = __name__, "RobustCLI"
    return RobustCLI


def __getattr__(name: str) -> Any:
    """``RobustCLI``, built (and Lightning imported) on first access."""
    if name == "RobustCLI":
        return _robust_cli_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ---- one-line errors ----------------------------------------------------------------------------------------
PARSER_KEY = re.compile(r'Parser key "([^"]+)"')
GIVEN_CLASS = re.compile(r"Problem with given class_path '([^']+)'")
TYPE_ERROR = re.compile(r"^Expected a (.+?)\. Got value: (.*)$")
CALLABLE_ERROR = re.compile(r"^Type .+? expects a function or a callable class: (.+)\. Got value: (.*)$")
UNKNOWN_CLASS = "Expected a dot import path string:"
STRUCTURE = ("Does not validate", "Subtypes:", "Errors:", "Given value", "Problem with given class_path",
             "Expected a", "Type ")  # fmt: skip


def one_line(error: BaseException) -> str:
    """Condense a (nested, multi-line) jsonargparse error into one line naming the field and the value.

    jsonargparse nests a field's error inside the errors of every class and union around it ("Problem with
    given class_path ..."). The innermost error is the one that names the problem; the ``Parser key`` lines
    above it spell the field (``data.noise.rate``) and the nearest ``class_path`` its class.
    """
    lines = _indented_lines(str(error))
    found = _innermost_error(lines)
    if found is None:
        return next((text for _, text in lines), type(error).__name__)
    position, detail = found
    keys, class_name = _field_of(lines, position)
    field = ".".join(keys)
    if not field or keys[-1] in detail:  # our own InputError messages name their field already
        return detail
    return f"`{field}`" + (f" ({class_name})" if class_name else "") + f": {detail}"


def _indented_lines(text: str) -> list[tuple[int, str]]:
    """``(indent, text)`` of each non-blank line; a list item's indent is where its text starts, after ``- ``."""
    lines = []
    for raw in text.splitlines():
        text = raw.lstrip(" -")
        if text.strip():
            lines.append((len(raw) - len(text), text.strip()))
    return lines


def _innermost_error(lines: list[tuple[int, str]]) -> tuple[int, str] | None:
    """``(line position, detail)`` of the error that says what is wrong, most specific kind first: a message of
    our own (or jsonargparse's "not accepted" / "unrecognized"), a wrong type, then a value outside a union."""
    messages = [(i, t) for i, (_, t) in enumerate(lines) if not t.startswith(STRUCTURE) and not PARSER_KEY.search(t)]
    if messages:
        return messages[0]
    for i, (_, text) in enumerate(lines):
        match = TYPE_ERROR.match(text)
        if match:
            return i, f"expected {_type_name(match[1])}; got {match[2]!r}"
        match = CALLABLE_ERROR.match(text)
        if match and not PARSER_KEY.search(text):  # e.g. an optimizer class that does not exist
            return i, f"{match[1]} (got {match[2]!r})"
    given = [i for i, (_, text) in enumerate(lines) if text.startswith("Given value:")]
    if not given:
        return None
    deepest = max(given, key=lambda i: lines[i][0])
    return deepest, _union_detail(lines, deepest)


def _union_detail(lines: list[tuple[int, str]], position: int) -> str:
    """What is wrong with the value of a union (``Given value: X``): an unknown class, or a value not among the
    union's choices (its ``Literal`` values and scalar types)."""
    value = lines[position][1].removeprefix("Given value:").split(". Got value:")[0].strip()
    subtypes = next((t for d, t in reversed(lines[:position]) if d == lines[position][0] and t.startswith("Subtypes:")),
                    "")  # fmt: skip
    literals = [item.strip().strip("'\"") for group in re.findall(r"Literal\[([^\]]*)\]", subtypes)
                for item in group.split(",")]  # fmt: skip
    types = [_type_name(name) for name in re.findall(r"<class '([^']+)'>", subtypes)]
    scalars = {"int", "float", "str", "bool"}
    if not literals and not scalars & set(types) and any(t.startswith(UNKNOWN_CLASS) for _, t in lines):
        return f"unknown class {value!r}"
    choices = list(dict.fromkeys([*literals, *types]))
    return f"got {value!r}; expected one of {', '.join(choices)}" if choices else f"got {value!r}"


def _type_name(text: str) -> str:
    """``<class 'int'>`` → ``int``, ``<class 'a.b.C'>`` → ``C``, ``NoneType`` → ``null``, ``Literal['a', 'b']`` →
    ``one of a, b``."""
    literal = re.fullmatch(r"(?:typing\.)?Literal\[(.*)\]", text)
    if literal:
        return "one of " + ", ".join(item.strip().strip("'\"") for item in literal[1].split(","))
    name = text.removeprefix("<class '").removesuffix("'>").rsplit(".", 1)[-1]
    return "null" if name == "NoneType" else name


def _field_of(lines: list[tuple[int, str]], position: int) -> tuple[list[str], str | None]:
    """The ``Parser key`` names enclosing line ``position`` (outermost first) and the nearest enclosing class."""
    ancestors: list[str] = []
    indent = lines[position][0]
    for depth, text in reversed(lines[: position + 1]):
        if depth < indent or not ancestors:
            ancestors.append(text)
            indent = min(indent, depth)
    keys = [key for text in reversed(ancestors) for key in PARSER_KEY.findall(text)]
    classes = [match[1] for text in ancestors if (match := GIVEN_CLASS.search(text))]
    return keys, classes[0].rsplit(".", 1)[-1] if classes else None


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
