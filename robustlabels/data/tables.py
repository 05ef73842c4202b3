"""Labelled texts as feature tables (TF-IDF or sentence embeddings), with a validation split of their own.

:class:`FeatureTableDataModule` serves a user's labelled texts: a ``train`` file, an optional ``valid`` file and a
``test`` file, each ``.tsv``, ``.csv`` or ``.jsonl`` (optionally gzipped), with a text column and an integer label
column. The texts become float32 ``(N, D)`` features:

* ``tfidf``: scikit-learn's ``TfidfVectorizer`` fitted on the training texts only (``max_features`` terms), dense;
* ``minilm``: all-MiniLM-L6-v2 sentence embeddings (``D = 384``), cached on disk
  (:func:`robustlabels.features.text.encode_texts`; needs the ``text`` extra the first time).

:class:`SpamDataModule` serves the YouTube and SMS spam collections as split by the STORM authors (Heck et al.,
"STORM: Self-Taught On-the-fly Meta Loss Rescaling", AAAI 2025) with the TF-IDF features they shipped, so the
paper's exact inputs are used: ``<root>/<name>/{train,valid,test}.tsv`` (header ``index, sentence1, label``;
0 = ham, 1 = spam) and ``<root>/<name>/tfidf.npz`` (float32 rows ``train``, ``valid``, ``test``; ``train_ids``,
``valid_ids``, ``test_ids`` repeat the tsv ``index`` column). Without ``root`` the first of
``$ROBUSTLABELS_DATA/spam``, ``./data/spam`` and ``../shared/data/spam`` that holds ``<name>/train.tsv`` is read.

**The validation split.** A ``valid`` file is the validation split, served with its labels as given: the noise
model flips training labels only, and model selection happens on the clean validation split, as in the STORM
protocol (:meth:`~robustlabels.data.datamodule.NoisyLabelDataModule.has_validation_split`; ``val_fraction`` is then
0). Without a ``valid`` file a validation split is carved from the training data as for every other data module.

File formats: ``.tsv`` is one row a line, tab-separated, without quoting (the STORM and GLUE files keep quotes
inside texts as they are); ``.csv`` follows RFC 4180 quoting; ``.jsonl`` holds one JSON object a line.
"""

from __future__ import annotations

import csv
import gzip
import json
import os
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

import numpy as np

from robustlabels.data.catalog import ENV_VAR
from robustlabels.data.datamodule import FeatureDataModule
from robustlabels.errors import InputError, check_choice
from robustlabels.features import text as text_features

Split = Literal["train", "val", "test"]
SPLITS: tuple[Split, ...] = ("train", "val", "test")
TEXT_COLUMNS = ("sentence1", "text")  # looked for, in this order, when no text column is named
TABLE_FORMATS = (".tsv", ".csv", ".jsonl")
MAX_DENSE_VALUES = 2_000_000_000  # rows x columns of a dense float32 TF-IDF (8 GB): refused above
FAKE_TFIDF_DIM = 256  # fake=True without max_features

SPAM_DIR = "spam"
SPAM_NAMES = ("youtube", "sms")
SPAM_DIMS = {"youtube": 3916, "sms": 7694}  # the shipped TF-IDF widths (fake=True uses them)
SPAM_FILES: dict[Split, str] = {"train": "train.tsv", "val": "valid.tsv", "test": "test.tsv"}
SPAM_TFIDF = "tfidf.npz"
SPAM_FIELDS: dict[Split, str] = {"train": "train", "val": "valid", "test": "test"}  # rows; ids in `<field>_ids`
SPAM_CLASSES = ("ham", "spam")
SPAM_HOW_TO_GET = ("put the STORM release's data/{name}/{{train,valid,test}}.tsv and its TF-IDF converted to "
                   "tfidf.npz there (see data/README.md)")  # fmt: skip


# ---- reading text tables --------------------------------------------------------------------------------
@dataclass(frozen=True)
class TextTable:
    """One split read from a file: ``texts`` (N strings), ``labels (N,)`` int64 and, when the file has the id
    column asked for, ``ids (N,)`` int64; ``path`` for messages."""

    texts: list[str]
    labels: np.ndarray
    path: Path
    ids: np.ndarray | None = None


def table_format(path: Path) -> str:
    """``.tsv``, ``.csv`` or ``.jsonl`` from the file name (a trailing ``.gz`` is allowed), else InputError."""
    suffixes = [s.lower() for s in path.suffixes]
    kind = suffixes[-2] if suffixes[-1:] == [".gz"] and len(suffixes) > 1 else (suffixes[-1] if suffixes else "")
    if kind not in TABLE_FORMATS:
        raise InputError(f"{str(path)!r}: unknown table format {kind or '(no suffix)'!r}; use "
                         f"{', '.join(TABLE_FORMATS)} (optionally .gz)")  # fmt: skip
    return kind


def _open_text(path: Path) -> IO[str]:
    """``path`` opened for reading UTF-8 text, gunzipped when it starts with the gzip magic."""
    with open(path, "rb") as f:
        gzipped = f.read(2) == b"\x1f\x8b"
    if gzipped:
        return gzip.open(path, "rt", encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def table_records(path: Path, kind: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, row)`` of a table file; a row maps column names to values."""
    with _open_text(path) as f:
        if kind == ".jsonl":
            for lineno, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as err:
                    raise InputError(f"{str(path)!r} line {lineno}: invalid JSON ({err.msg})") from None
                if not isinstance(record, dict):
                    kind_of = type(record).__name__
                    raise InputError(f"{str(path)!r} line {lineno}: expected a JSON object; got {kind_of}")
                yield lineno, record
            return
        tsv = kind == ".tsv"
        reader = csv.reader(f, delimiter="\t" if tsv else ",", quoting=csv.QUOTE_NONE if tsv else csv.QUOTE_MINIMAL)
        header = next(reader, None)
        if header is None:
            raise InputError(f"{str(path)!r}: empty file (expected a header line)")
        for row in reader:
            if not row:
                continue
            if len(row) != len(header):
                raise InputError(f"{str(path)!r} line {reader.line_num}: {len(row)} fields; the header has "
                                 f"{len(header)} ({', '.join(header)})")  # fmt: skip
            yield reader.line_num, dict(zip(header, row, strict=True))


def _integer(value: Any, path: Path, lineno: int, column: str) -> int:
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise InputError(f"{str(path)!r} line {lineno}: {column!r} must be an integer; got {value!r}")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise InputError(f"{str(path)!r} line {lineno}: {column!r} must be an integer; got {value!r}") from None


def read_text_table(
    path: str | Path,
    *,
    text_column: str | None = None,
    label_column: str = "label",
    id_column: str | None = None,
) -> TextTable:
    """Read the texts and integer labels of one ``.tsv`` / ``.csv`` / ``.jsonl`` file (optionally gzipped).

    Args:
        path: the file; its format follows its suffix (module docstring).
        text_column: the column holding the text; ``None``: the first of :data:`TEXT_COLUMNS` the file has.
        label_column: the column holding the label, an integer ``>= 0``.
        id_column: a column of integer ids to return as well (``index`` in the STORM files), or ``None``.

    Returns:
        A :class:`TextTable` in file order.

    Raises:
        InputError: one line naming the file (and the line) for a missing file or column, a bad label or id, a
            row of the wrong width, invalid JSON or an unreadable file.
    """
    p = Path(path).expanduser()
    kind = table_format(p)
    if not p.is_file():
        raise InputError(f"table file not found: {str(p)!r}")
    texts: list[str] = []
    labels: list[int] = []
    ids: list[int] = []
    text_key = text_column
    try:
        for lineno, row in table_records(p, kind):
            if text_key is None:  # the first row decides which default column holds the text
                text_key = next((c for c in TEXT_COLUMNS if c in row), None)
                if text_key is None:
                    raise InputError(f"{str(p)!r}: no text column (looked for {', '.join(TEXT_COLUMNS)}; columns: "
                                     f"{', '.join(map(str, row))}); name it with text_column")  # fmt: skip
            for column in (text_key, label_column, *([id_column] if id_column else [])):
                if column not in row:
                    raise InputError(f"{str(p)!r} line {lineno}: missing column {column!r} (columns: "
                                     f"{', '.join(map(str, row))})")  # fmt: skip
            label = _integer(row[label_column], p, lineno, label_column)
            if label < 0:
                raise InputError(f"{str(p)!r} line {lineno}: {label_column!r} must be >= 0; got {label}")
            texts.append(str(row[text_key]))
            labels.append(label)
            if id_column:
                ids.append(_integer(row[id_column], p, lineno, id_column))
    except (OSError, EOFError, UnicodeDecodeError, csv.Error, zlib.error) as err:
        raise InputError(f"{str(p)!r}: unreadable {kind} file ({err})") from None
    if not texts:
        raise InputError(f"{str(p)!r}: no rows")
    return TextTable(texts, np.array(labels, np.int64), p, np.array(ids, np.int64) if id_column else None)


# ---- features -------------------------------------------------------------------------------------------
def tfidf_features(
    texts: Sequence[Sequence[str]], *, max_features: int | None, source: str = "training texts"
) -> list[np.ndarray]:
    """Dense float32 TF-IDF rows of several splits, the vocabulary and idf weights fitted on ``texts[0]`` only.

    Args:
        texts: the splits' texts, training split first.
        max_features: keep the most frequent terms (``TfidfVectorizer(max_features=...)``); ``None``: all.
        source: what ``texts[0]`` is, for messages.

    Returns:
        One ``(N_i, D)`` float32 array per split (rows L2-normalised, scikit-learn's defaults otherwise).

    Raises:
        InputError: the dense matrices would hold more than :data:`MAX_DENSE_VALUES` values in all.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(max_features=max_features, dtype=np.float32)
    try:
        vectorizer.fit(list(texts[0]))
    except ValueError as err:  # e.g. "empty vocabulary; perhaps the documents only contain stop words"
        raise InputError(f"{source}: TF-IDF could not be fitted ({err})") from None
    rows, width = sum(len(t) for t in texts), len(vectorizer.vocabulary_)
    if rows * width > MAX_DENSE_VALUES:
        raise InputError(f"{source}: a dense TF-IDF of {rows} rows x {width} terms ({rows * width:.3g} values) is "
                         f"over the limit of {MAX_DENSE_VALUES:.0e}; lower max_features")  # fmt: skip
    return [np.asarray(vectorizer.transform(list(t)).toarray(), dtype=np.float32) for t in texts]


# ---- the shared machinery -------------------------------------------------------------------------------
@dataclass(frozen=True)
class LabelledFeatures:
    """One split in memory: ``features (N, D)`` float32, ``labels (N,)`` int64, the ``texts`` they came from."""

    features: np.ndarray
    labels: np.ndarray
    texts: list[str]


def check_labels(tables: dict[Split, TextTable], num_classes: int | None) -> int:
    """The number of classes: ``num_classes``, or one more than the largest label of any split (at least 2).

    Raises:
        InputError: a label ``>= num_classes``, naming the file.
    """
    largest = {split: int(t.labels.max()) for split, t in tables.items()}
    if num_classes is None:
        return max(2, *(v + 1 for v in largest.values()))
    for split, value in largest.items():
        if value >= num_classes:
            raise InputError(f"{str(tables[split].path)!r}: label {value} out of range for {num_classes} classes")
    return num_classes


class LabelledTextDataModule(FeatureDataModule):
    """Base of the feature-table data modules: subclasses implement :meth:`read_tables`, read once (see
    :class:`~robustlabels.data.datamodule.FeatureDataModule`).

    Args:
        **kwargs: see :class:`~robustlabels.data.datamodule.NoisyLabelDataModule`.
    """

    fake_shape: tuple[int, int] = (FAKE_TFIDF_DIM, 2)  # (D, C) served with fake=True

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.texts: dict[str, list[str]] = {}  # split -> texts, e.g. to show the texts of suspect labels

    def read_tables(self) -> tuple[dict[Split, LabelledFeatures], int]:
        """Every split's features and labels (``val`` only for a given validation split), and ``C``."""
        raise NotImplementedError

    def read_splits(self) -> tuple[dict[str, tuple[np.ndarray, ...]], int]:
        tables, num_classes = self.read_tables()
        self.texts = {split: table.texts for split, table in tables.items()}
        return {split: (table.features, table.labels) for split, table in tables.items()}, num_classes


class FeatureTableDataModule(LabelledTextDataModule):
    """A user's labelled texts, as TF-IDF or MiniLM features; the ``valid`` file, when given, is the validation split.

    Args:
        train: the training file (``.tsv``, ``.csv`` or ``.jsonl``, optionally ``.gz``); its labels get the noise.
        test: the test file, labels used as the truth.
        valid: an optional validation file, served with its labels as given (the module docstring); without it,
            ``val_fraction`` of the training data is carved out.
        text_column: the text column; ``None``: ``sentence1``, else ``text``.
        label_column: the integer label column (``0 .. C-1``).
        features: ``tfidf`` (fitted on the training texts only) or ``minilm`` (sentence embeddings, cached).
        max_features: TF-IDF vocabulary size (``None``: every term of the training texts).
        num_classes: ``C``; ``None``: one more than the largest label in any file.
        cache_dir: folder of the embedding cache (``minilm``).
        val_fraction: default 0 with a ``valid`` file (the only value allowed then), else 0.1.
        clean_validation: default ``True`` with a ``valid`` file (the only value allowed then), else ``False``.
        **kwargs: see :class:`~robustlabels.data.datamodule.NoisyLabelDataModule`.
    """

    def __init__(
        self,
        train: str | None = None,
        test: str | None = None,
        valid: str | None = None,
        *,
        text_column: str | None = None,
        label_column: str = "label",
        features: Literal["tfidf", "minilm"] = "tfidf",
        max_features: int | None = 20_000,
        num_classes: int | None = None,
        cache_dir: str | None = None,
        val_fraction: float | None = None,
        clean_validation: bool | None = None,
        **kwargs: Any,
    ) -> None:
        given = valid is not None
        super().__init__(val_fraction=(0.0 if given else 0.1) if val_fraction is None else val_fraction,
                         clean_validation=given if clean_validation is None else clean_validation,
                         **kwargs)  # fmt: skip
        check_choice("features", features, ("tfidf", "minilm"))
        if max_features is not None and max_features < 1:
            raise InputError(f"`max_features` must be >= 1 or null; got {max_features!r}")
        if num_classes is not None and num_classes < 2:
            raise InputError(f"`num_classes` must be >= 2 or null; got {num_classes!r}")
        named: tuple[tuple[Split, str | None], ...] = (("train", train), ("val", valid), ("test", test))
        self.files = {split: path for split, path in named if path}
        self.text_column, self.label_column = text_column, label_column
        self.features, self.max_features, self.cache_dir = features, max_features, cache_dir
        self.given_num_classes = num_classes
        width = text_features.EMBEDDING_DIM if features == "minilm" else (max_features or FAKE_TFIDF_DIM)
        self.fake_shape = (width, num_classes or 2)

    def has_validation_split(self) -> bool:
        return "val" in self.files

    def read_tables(self) -> tuple[dict[Split, LabelledFeatures], int]:
        missing = [name for name in ("train", "test") if name not in self.files]
        if missing:
            raise InputError(f"FeatureTableDataModule needs a `{missing[0]}` file (.tsv, .csv or .jsonl)")
        texts = {split: read_text_table(path, text_column=self.text_column, label_column=self.label_column)
                 for split, path in self.files.items()}  # fmt: skip
        num_classes = check_labels(texts, self.given_num_classes)
        splits = list(texts)  # train first
        if self.features == "tfidf":
            rows = tfidf_features([texts[s].texts for s in splits], max_features=self.max_features,
                                  source=repr(str(texts["train"].path)))  # fmt: skip
        else:
            rows = [text_features.encode_texts(texts[s].texts, cache_dir=self.cache_dir) for s in splits]
        tables = {s: LabelledFeatures(x, texts[s].labels, texts[s].texts) for s, x in zip(splits, rows, strict=True)}
        return tables, num_classes


# ---- STORM's spam data ----------------------------------------------------------------------------------
def spam_roots(root: str | None = None) -> list[Path]:
    """Folders searched for ``<name>/`` of the spam data: ``root`` alone when given, else the default places."""
    if root is not None:
        return [Path(root).expanduser()]
    roots: list[Path] = []
    env = os.environ.get(ENV_VAR)
    if env:
        roots.append(Path(env).expanduser().absolute() / SPAM_DIR)
    cwd = Path.cwd()
    return [*roots, cwd / "data" / SPAM_DIR, cwd.parent / "shared" / "data" / SPAM_DIR]


def find_spam_folder(name: str, root: str | None = None) -> Path:
    """``<root>/<name>`` of the first root holding ``<name>/train.tsv``, with every file of the layout present.

    Raises:
        InputError: one line naming the missing file, or every place searched and how to get the data.
    """
    roots = spam_roots(root)
    for candidate in roots:
        folder = candidate / name
        if (folder / SPAM_FILES["train"]).is_file():
            for file in (*SPAM_FILES.values(), SPAM_TFIDF):
                if not (folder / file).is_file():
                    raise InputError(f"spam dataset {name!r}: {str(folder / file)!r} not found; to get it: "
                                     + SPAM_HOW_TO_GET.format(name=name))  # fmt: skip
            return folder
    raise InputError(f"spam dataset {name!r} not found; searched: {', '.join(str(r / name) for r in roots)}; to get "
                     f"it: {SPAM_HOW_TO_GET.format(name=name)} (or set {ENV_VAR}=<dir> holding <dir>/{SPAM_DIR}/"
                     f"{name}, or pass root=)")  # fmt: skip


def read_spam_tfidf(path: Path, texts: dict[Split, TextTable]) -> dict[Split, np.ndarray]:
    """The shipped TF-IDF rows of each split, checked against the tsv files.

    Args:
        path: ``tfidf.npz`` with float rows ``train``, ``valid``, ``test`` and int ids ``train_ids`` ...
        texts: the tsv splits, read with their ``index`` column as ids.

    Returns:
        ``split -> (N, D)`` float32, row ``i`` for the tsv row with ``index`` ``i``.

    Raises:
        InputError: one line naming the file, the field and the value (missing field, not 2-D, not floats, a row
            count or ids that differ from the tsv's, a width that differs from the training rows').
    """
    try:
        with np.load(path, allow_pickle=False) as archive:
            fields = {key: archive[key] for key in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise InputError(f"{str(path)!r}: unreadable .npz ({err})") from None
    rows: dict[Split, np.ndarray] = {}
    for split, table in texts.items():
        field = SPAM_FIELDS[split]
        for key in (field, f"{field}_ids"):
            if key not in fields:
                raise InputError(f"{str(path)!r}: missing field {key!r} (fields: {', '.join(sorted(fields))})")
        x, ids = fields[field], fields[f"{field}_ids"]
        if x.ndim != 2 or not np.issubdtype(x.dtype, np.floating):
            raise InputError(f"{str(path)!r}: field {field!r} must be 2-D floats (rows x features); got "
                             f"{x.dtype} of shape {x.shape}")  # fmt: skip
        tsv = table.path.name
        if len(x) != len(table.labels) or ids.shape != (len(table.labels),):
            raise InputError(f"{str(path)!r}: field {field!r} has {len(x)} rows and {field}_ids shape {ids.shape}; "
                             f"{tsv} has {len(table.labels)} rows")  # fmt: skip
        assert table.ids is not None
        differ = np.flatnonzero(ids != table.ids)
        if len(differ):
            i = int(differ[0])
            raise InputError(f"{str(path)!r}: field {field}_ids differs from the index column of {tsv} at row {i}: "
                             f"{int(ids[i])} vs {int(table.ids[i])}")  # fmt: skip
        width = rows["train"].shape[1] if rows else x.shape[1]
        if x.shape[1] != width:
            raise InputError(f"{str(path)!r}: field {field!r} has {x.shape[1]} columns; field 'train' has {width}")
        rows[split] = np.ascontiguousarray(x, dtype=np.float32)
    return rows


class SpamDataModule(LabelledTextDataModule):
    """YouTube or SMS spam (0 = ham, 1 = spam) on STORM's shipped TF-IDF features, with its clean ``valid`` split.

    Youtube: 1,586 / 120 / 250 comments, 3,916 TF-IDF dimensions; SMS: 4,502 / 500 / 500 messages (13 % spam),
    7,694 dimensions. STORM's noise flips each training label with probability ``r``:
    ``noise: {class_path: SymmetricNoise, init_args: {rate: r, include_true_class: false}}`` (two classes).
    STORM reports accuracy on Youtube and the F1 of the spam class on SMS, selecting the model on ``valid``.

    Args:
        name: ``youtube`` or ``sms``.
        root: the folder holding ``<name>/`` (the only place searched when given; see :func:`spam_roots`).
        val_fraction: 0, the only value allowed: ``valid`` is the validation split.
        clean_validation: ``true``, the only value allowed: ``valid`` keeps its clean labels.
        **kwargs: see :class:`~robustlabels.data.datamodule.NoisyLabelDataModule`.
    """

    class_names = SPAM_CLASSES

    def __init__(
        self,
        name: Literal["youtube", "sms"],
        root: str | None = None,
        *,
        val_fraction: float = 0.0,
        clean_validation: bool = True,
        **kwargs: Any,
    ) -> None:
        check_choice("name", name, SPAM_NAMES)
        super().__init__(val_fraction=val_fraction, clean_validation=clean_validation, **kwargs)
        self.dataset, self.root = name, root  # (LightningDataModule.name is Lightning's)
        self.fake_shape = (SPAM_DIMS[name], len(SPAM_CLASSES))

    def has_validation_split(self) -> bool:
        return True

    def read_tables(self) -> tuple[dict[Split, LabelledFeatures], int]:
        folder = find_spam_folder(self.dataset, self.root)
        texts = {split: read_text_table(folder / file, text_column="sentence1", label_column="label", id_column="index")
                 for split, file in SPAM_FILES.items()}  # fmt: skip
        check_labels(texts, len(SPAM_CLASSES))
        rows = read_spam_tfidf(folder / SPAM_TFIDF, texts)
        tables = {s: LabelledFeatures(rows[s], texts[s].labels, texts[s].texts) for s in SPLITS}
        return tables, len(SPAM_CLASSES)
