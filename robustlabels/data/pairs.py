"""Preference pairs as data: readers, the pair encoding, and the pair data modules.

**The encoding** (docs/pairs.md). A pair is served as inputs ``(2, D)`` (the features of its two sides) and a
target in ``{0, 1}``: the side that is preferred. Which side comes first is drawn once per pair (seeded by
``order_seed``), so the target is balanced and carries no position cue. With the
:class:`~robustlabels.nn.backbones.PairwiseScorer` backbone, whose two logits are ``(s/2, −s/2)`` for the reward
difference ``s = r(side 0) − r(side 1)``, cross-entropy is exactly the Bradley–Terry loss ``−log σ(±s)``, every
classification strategy runs on pairs unchanged, ``val/acc`` is pairwise accuracy, and a label flip is a swap of
chosen and rejected.

**Files.** ``.jsonl`` or ``.csv`` (optionally gzipped) with ``chosen`` and ``rejected`` and, optionally,
``prompt`` (UltraFeedback-binarized style; ``chosen``/``rejected`` may also be lists of ``{"role", "content"}``
messages, whose last message is the response and the others the prompt). Without ``prompt``, ``chosen`` and
``rejected`` are whole dialogues (HH-RLHF style) and the prompt is their shared part up to the last
``"\\n\\nAssistant:"``. Optional ``score_chosen``/``score_rejected`` give a latent reward (difficulty-dependent
noise needs it). A ``.npy`` file holds features ``(N, 2, D)``, side 0 chosen.

**Features.** ``minilm``: all-MiniLM-L6-v2 embeddings (cached by content hash) of each response, concatenated
with the embedding of the prompt when the data has prompts (``D`` = 384 or 768); ``tfidf``: TF-IDF of the
responses fitted on the training split (a shared prompt would cancel in a linear scorer).
"""

from __future__ import annotations

import gzip
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from robustlabels.data.catalog import ENV_VAR
from robustlabels.data.datamodule import NoisyLabelDataModule
from robustlabels.data.read_once import read_once
from robustlabels.data.tables import table_format, table_records, tfidf_features
from robustlabels.errors import InputError, check_choice
from robustlabels.features import text as text_features
from robustlabels.io import load_npy
from robustlabels.noise import NoisyLabels

PairFeatures = Literal["minilm", "tfidf"]
ASSISTANT_TURN = "\n\nAssistant:"
SCORE_FIELDS = ("score_chosen", "score_rejected")


# ---- reading ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PreferencePairs:
    """Pairs read from a file or built from a dataset, chosen side first.

    Attributes:
        prompts: N prompts (``""`` where there is none).
        chosen, rejected: N responses each.
        source: where they came from, for messages.
        reward_gap: ``(N,)`` latent reward of the chosen side minus the rejected one, when known.
        group: N group keys (e.g. the movie of an IMDB-Pref pair), when known.
    """

    prompts: list[str]
    chosen: list[str]
    rejected: list[str]
    source: str
    reward_gap: np.ndarray | None = None
    group: list[str] | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.chosen)

    def length_gap(self) -> np.ndarray:
        """``(N,)`` characters of the chosen response minus those of the rejected one."""
        return np.array([len(c) - len(r) for c, r in zip(self.chosen, self.rejected, strict=True)], np.float64)


def split_dialogue(text: str, where: str) -> tuple[str, str]:
    """``(prompt, response)`` of an HH-RLHF dialogue: everything up to and including the last assistant tag,
    and the last assistant turn."""
    cut = text.rfind(ASSISTANT_TURN)
    if cut < 0:
        raise InputError(f"{where}: a dialogue without prompt has no {ASSISTANT_TURN.strip()!r} turn")
    cut += len(ASSISTANT_TURN)
    return text[:cut], text[cut:].strip()


def _side(value: Any, where: str, name: str) -> tuple[str | None, str]:
    """``(prompt or None, response)`` of one side: a string, or a list of ``{"role", "content"}`` messages."""
    if isinstance(value, str):
        return None, value
    if isinstance(value, list) and value and all(isinstance(m, dict) and "content" in m for m in value):
        prompt = "\n".join(str(m["content"]) for m in value[:-1])
        return prompt, str(value[-1]["content"])
    raise InputError(f"{where}: field {name!r} must be a string or a list of messages; got {type(value).__name__}")


def _score(row: dict[str, Any], name: str, where: str) -> float:
    try:
        return float(row[name])
    except (TypeError, ValueError):
        raise InputError(f"{where}: field {name!r} must be a number; got {row[name]!r}") from None


def read_pairs(path: str | Path, *, skip_inconsistent: bool = False) -> PreferencePairs:
    """Preference pairs from a ``.jsonl`` or ``.csv`` file (see the module docstring for the fields).

    Args:
        skip_inconsistent: leave out, with one warning naming their lines, the pairs whose two responses are
            identical or whose dialogue prompts differ, instead of refusing the file (5 of the 2,312 pairs of
            HH-RLHF harmless-base test have a turn of the chosen dialogue glued into the previous one).

    Raises:
        InputError: one line naming the file, line and field: a missing ``chosen``/``rejected``, a pair whose
            two sides are identical, an HH dialogue whose prompt differs between the two sides, no pairs.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"pairs file {str(p)!r} not found")
    kind = table_format(p)
    if kind == ".tsv":
        raise InputError(f"{str(p)!r}: pairs are read from .jsonl or .csv files; got .tsv")
    prompts, chosen, rejected, scores, skipped = [], [], [], [], []
    for lineno, row in table_records(p, kind):
        where = f"{str(p)!r} line {lineno}"
        for name in ("chosen", "rejected"):
            if name not in row or row[name] is None:
                raise InputError(f"{where}: missing field {name!r}")
        (prompt_c, c), (prompt_r, r) = _side(row["chosen"], where, "chosen"), _side(row["rejected"], where, "rejected")
        prompt = row.get("prompt")
        if prompt is None and prompt_c is None:  # whole dialogues: the prompt is their shared part
            (prompt_c, c), (prompt_r, r) = split_dialogue(c, where), split_dialogue(r, where)
        problem = None
        if prompt is None and prompt_c != prompt_r:
            problem = "the prompt differs between the chosen and the rejected side"
        elif c == r:
            problem = "the chosen and rejected responses are identical"
        if problem is not None and skip_inconsistent:
            skipped.append(lineno)
            continue
        if problem is not None:
            raise InputError(f"{where}: {problem}")
        prompt = prompt_c if prompt is None else prompt
        prompts.append(str(prompt or ""))
        chosen.append(c)
        rejected.append(r)
        if all(k in row for k in SCORE_FIELDS):
            scores.append(_score(row, SCORE_FIELDS[0], where) - _score(row, SCORE_FIELDS[1], where))
    if skipped:
        warnings.warn(f"{str(p)!r}: left out {len(skipped)} pairs with identical responses or differing prompts "
                      f"(lines {', '.join(map(str, skipped))})", stacklevel=2)  # fmt: skip
    if not chosen:
        raise InputError(f"{str(p)!r}: no pairs")
    gap = np.array(scores) if len(scores) == len(chosen) else None
    return PreferencePairs(prompts, chosen, rejected, str(p), reward_gap=gap)


def read_pair_array(path: str | Path) -> np.ndarray:
    """Pair features ``(N, 2, D)`` float32 from a ``.npy`` file, side 0 the chosen one."""
    array = load_npy(path, what="pair features file")
    if array.ndim != 3 or array.shape[1] != 2 or len(array) == 0:
        raise InputError(f"pair features file {str(path)!r} must hold an array shaped (N, 2, D); got "
                         f"{tuple(array.shape)}")  # fmt: skip
    if not np.issubdtype(array.dtype, np.number) or not np.isfinite(array).all():
        raise InputError(f"pair features file {str(path)!r} must hold finite numbers")
    return np.asarray(array, dtype=np.float32)


# ---- the encoding ---------------------------------------------------------------------------------------
ORDER_STREAM = 0x5A1DE  # keeps the side-order draws apart from the noise draws, which seed PCG64(seed) directly


def orient(chosen: np.ndarray, rejected: np.ndarray, *, seed: int, split: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Inputs ``(N, 2, D)`` with the side order drawn per pair, and targets ``(N,)``: the chosen side's position.

    The draw comes from its own stream, ``(ORDER_STREAM, seed, split)``: with a plain ``PCG64(seed)`` a noise
    model seeded alike would reuse the same uniforms and swap pairs depending on their side order (we measured a
    realised swap rate of 0.43 for a rate of 0.2 that way).
    """
    targets = (np.random.default_rng((ORDER_STREAM, seed, split)).random(len(chosen)) < 0.5).astype(np.int64)
    inputs = np.empty((len(chosen), 2, *chosen.shape[1:]), dtype=np.float32)
    inputs[:, 0], inputs[:, 1] = chosen, rejected
    swapped = targets == 1
    inputs[swapped, 0], inputs[swapped, 1] = rejected[swapped], chosen[swapped]
    return inputs, targets


PROMPT_CHARS = 1000  # the end of a prompt that is embedded: the turns nearest the response (MiniLM reads 256 tokens)


def pair_text_features(
    splits: list[PreferencePairs], *, features: PairFeatures, max_features: int | None = 2000,
    cache_dir: str | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(chosen (N, D), rejected (N, D))`` features of every split, the training split first.

    MiniLM features of a side are ``[prompt, response]`` embeddings side by side when the data has prompts (the
    last :data:`PROMPT_CHARS` characters of the prompt), else the response's alone.
    """
    check_choice("features", features, ("minilm", "tfidf"))
    if features == "tfidf":
        texts = [[*s.chosen, *s.rejected] for s in splits]
        blocks = tfidf_features(texts, max_features=max_features, source=f"{splits[0].source} (responses)")
        return [(b[: len(s)], b[len(s) :]) for s, b in zip(splits, blocks, strict=True)]
    with_prompts = any(p for s in splits for p in s.prompts)
    out = []
    for s in splits:
        emb = text_features.encode_texts([*s.chosen, *s.rejected], cache_dir=cache_dir)
        chosen, rejected = emb[: len(s)], emb[len(s) :]
        if with_prompts:
            prompt = text_features.encode_texts([p[-PROMPT_CHARS:] for p in s.prompts], cache_dir=cache_dir)
            chosen, rejected = np.hstack([prompt, chosen]), np.hstack([prompt, rejected])
        out.append((chosen, rejected))
    return out


# ---- data modules ---------------------------------------------------------------------------------------
class PairDataModule(NoisyLabelDataModule):
    """Preference pairs served as inputs ``(B, 2, D)`` and targets (the preferred side), see the module docstring.

    Noise is a label flip, i.e. a swap of chosen and rejected: ``SymmetricNoise`` swaps each pair with probability
    ``rate``; the pair noise models (``DifficultySwapNoise``, ``SystematicAnnotatorNoise``) read a per-pair
    covariate the data module supplies (``reward_gap``, ``length_gap``).

    Args:
        train: a pairs file (``.jsonl``/``.csv``) or pair features (``.npy``, ``(N, 2, D)``).
        test: the same for the test pairs (clean).
        val: optional validation pairs, served with their labels as given (then ``val_fraction: 0`` and
            ``clean_validation: true``); without it a validation split is carved from ``train``.
        features: ``minilm`` or ``tfidf`` for text files.
        max_features: TF-IDF vocabulary size.
        order_seed: seed of the side order of every pair.
        cache_dir: folder of the embedding cache.
        **kwargs: see :class:`~robustlabels.data.datamodule.NoisyLabelDataModule`.
    """

    num_classes = 2
    fake_dim = 16

    def __init__(
        self,
        train: str | None = None,
        test: str | None = None,
        val: str | None = None,
        *,
        features: PairFeatures = "minilm",
        max_features: int | None = 2000,
        order_seed: int = 0,
        cache_dir: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.files = {"train": train, "val": val, "test": test}
        self.features = check_choice("features", features, ("minilm", "tfidf"))
        self.max_features, self.order_seed, self.cache_dir = max_features, order_seed, cache_dir
        self.pairs: dict[str, PreferencePairs] = {}  # the text pairs, chosen first (not for .npy inputs)
        self.covariates: dict[str, np.ndarray] = {}  # per training pair, in the served side order
        self.gaps: dict[str, np.ndarray] = {}  # split -> (P,) latent reward gap chosen - rejected, when known
        self._splits: dict[str, tuple[np.ndarray, np.ndarray]] | None = None

    # what subclasses provide: the pairs of every split (val optional), chosen first
    def read_pairs(self) -> dict[str, PreferencePairs]:
        for split in ("train", "test"):
            if self.files[split] is None:
                raise InputError(f"{type(self).__name__} needs `{split}`: a pairs file (.jsonl, .csv) or "
                                 "(N, 2, D) .npy")  # fmt: skip
        return {split: read_pairs(path) for split, path in self.files.items() if path is not None}

    def has_validation_split(self) -> bool:
        return self.files["val"] is not None

    def splits(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Every split's ``(inputs (N, 2, D), targets (N,))``, built once."""
        if self._splits is None:
            self._splits = self._fake_splits() if self.fake else self._build_splits()
        return self._splits

    def _build_splits(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        files = [f for f in self.files.values() if f is not None]
        if files and all(str(f).endswith(".npy") for f in files) and type(self) is PairDataModule:
            arrays = {s: read_pair_array(f) for s, f in self.files.items() if f is not None}
            sides = {s: (a[:, 0], a[:, 1]) for s, a in arrays.items()}
        else:
            self.pairs = self.read_pairs()
            names = list(self.pairs)  # train first
            encoded = pair_text_features([self.pairs[s] for s in names], features=self.features,
                                         max_features=self.max_features, cache_dir=self.cache_dir)  # fmt: skip
            sides = dict(zip(names, encoded, strict=True))
        widths = {s: c.shape[1] for s, (c, _) in sides.items()}
        if len(set(widths.values())) != 1:
            raise InputError(f"{type(self).__name__}: the splits' pair features differ in width: {widths}")
        return self._orient(sides)

    def _orient(self, sides: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Every split's ``(chosen, rejected)`` features in the drawn side order; the gaps and the training
        covariates (side 0 minus side 1) from :attr:`pairs`."""
        out = {split: orient(chosen, rejected, seed=self.order_seed, split=i)
               for i, (split, (chosen, rejected)) in enumerate(sides.items())}  # fmt: skip
        self.gaps = {s: p.reward_gap for s, p in self.pairs.items() if p.reward_gap is not None}
        train = self.pairs.get("train")
        if train is not None:
            sign = np.where(out["train"][1] == 0, 1.0, -1.0)  # covariates of side 0 minus side 1
            self.covariates = {"length_gap": train.length_gap() * sign}
            if train.reward_gap is not None:
                self.covariates["reward_gap"] = train.reward_gap * sign
        return out

    def _fake_splits(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        rng = np.random.default_rng(0)
        w = rng.normal(size=self.fake_dim)
        out = {}
        for i, (split, n) in enumerate((("train", 96), ("val", 48), ("test", 48))):
            chosen, rejected = rng.normal(size=(2, n, self.fake_dim))
            swap = (chosen @ w) < (rejected @ w)
            chosen[swap], rejected[swap] = rejected[swap].copy(), chosen[swap].copy()
            out[split] = orient(chosen, rejected, seed=self.order_seed, split=i)
        rewards = {split: np.einsum("nsd,d->ns", inputs, w) for split, (inputs, _) in out.items()}
        self.gaps = {split: np.ceil(np.abs(r[:, 0] - r[:, 1])) for split, r in rewards.items()}
        gap = rewards["train"][:, 0] - rewards["train"][:, 1]
        self.covariates = {"reward_gap": gap, "length_gap": gap}
        return out

    def reward_gaps(self, split: str) -> np.ndarray:
        """``(P,)`` latent reward gap (chosen − rejected) of every pair of ``split``, for accuracy by gap.

        Raises:
            InputError: the pairs carry no latent reward (no ``score_chosen``/``score_rejected``).
        """
        self.splits()
        if split not in self.gaps:
            raise InputError(f"{type(self).__name__}: the {split} pairs have no latent reward gap")
        return self.gaps[split]

    @property
    def input_shape(self) -> tuple[int, ...]:  # type: ignore[override]
        """``(2, D)`` (reads the data the first time)."""
        return tuple(self.splits()["train"][0].shape[1:])

    def load_split(self, split: str) -> tuple[np.ndarray, ...]:  # type: ignore[override]
        return self.splits()[split]

    def fake_split(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        return self.splits()[split]

    def apply_noise(self, inputs: np.ndarray, clean: np.ndarray) -> NoisyLabels:
        """Swap pairs once, seeded; a pair noise model gets its covariate (``noise.covariate``) as ``features``."""
        covariate = getattr(self.noise, "covariate", None)
        if covariate is None:
            return super().apply_noise(inputs, clean)
        if covariate not in self.covariates:
            known = ", ".join(self.covariates) or "none"
            raise InputError(f"{type(self.noise).__name__} needs the pairs' {covariate!r}, which "
                             f"{type(self).__name__} does not know (known: {known})")  # fmt: skip
        assert self.noise is not None
        return self.noise.apply(clean, num_classes=2, seed=self.noise_seed, features=self.covariates[covariate])

    def setup(self, stage: str | None = None) -> None:
        super().setup(stage)
        if not self.fake and "val" not in self.splits() and self.val_fraction == 0:
            raise InputError(f"{type(self).__name__}: give `val` pairs or a `val_fraction` > 0")


# ---- IMDB-Pref ------------------------------------------------------------------------------------------
IMDB_DIR = "imdb"


def imdb_roots(root: str | None = None) -> list[Path]:
    """Folders searched for the IMDB reviews: ``root`` alone when given, else the default places."""
    if root is not None:
        return [Path(root).expanduser()]
    env = os.environ.get(ENV_VAR)
    cwd = Path.cwd()
    roots = [Path(env).expanduser().absolute() / IMDB_DIR] if env else []
    return [*roots, cwd / "data" / IMDB_DIR, cwd.parent / "shared" / "data" / IMDB_DIR]


@dataclass(frozen=True)
class Reviews:
    """IMDB test reviews: ``texts``, ``ratings (N,)`` (1-10 stars) and each review's movie (its IMDb URL)."""

    texts: list[str]
    ratings: np.ndarray
    movies: list[str]
    source: str


def _urls(path: Path) -> list[str]:
    return [line.strip().removesuffix("/usercomments") for line in path.read_text(encoding="utf-8").splitlines()]


def _movie(urls: dict[str, list[str]], polarity: str, review_id: int, where: str) -> str:
    lines = urls[polarity]
    if not 0 <= review_id < len(lines):
        raise InputError(f"{where}: review {polarity}/{review_id} has no line in urls_{polarity}.txt "
                         f"({len(lines)} lines)")  # fmt: skip
    return lines[review_id]


def _parse_name(name: str, where: str) -> tuple[int, int]:
    """``(id, rating)`` of an aclImdb file name ``<id>_<rating>.txt``."""
    try:
        review_id, rating = Path(name).stem.split("_")
        return int(review_id), int(rating)
    except ValueError:
        raise InputError(f"{where}: file name {name!r} is not <id>_<rating>.txt") from None


def read_imdb_reviews(root: str | None = None) -> Reviews:
    """The IMDB test reviews with their movies, from either layout:

    * ``imdb_test.jsonl[.gz]`` (fields ``text``, ``rating``, ``file`` = ``pos/<id>_<rating>.txt``) next to
      ``urls_test_pos.txt`` and ``urls_test_neg.txt`` (the shared data folder);
    * aclImdb v1 as released: ``test/{pos,neg}/<id>_<rating>.txt`` and ``test/urls_{pos,neg}.txt`` (``root`` may
      be the ``aclImdb`` folder or its parent).
    """
    searched = imdb_roots(root)
    for folder in searched:
        for jsonl in (folder / "imdb_test.jsonl.gz", folder / "imdb_test.jsonl"):
            urls = {p: folder / f"urls_test_{p}.txt" for p in ("pos", "neg")}
            if jsonl.is_file() and all(u.is_file() for u in urls.values()):
                return _read_imdb_jsonl(jsonl, {p: _urls(u) for p, u in urls.items()})
        for acl in (folder / "test", folder / "aclImdb" / "test"):
            if (acl / "urls_pos.txt").is_file() and (acl / "pos").is_dir():
                return _read_acl_imdb(acl)
    raise InputError("IMDB reviews with movie ids not found (imdb_test.jsonl.gz + urls_test_{pos,neg}.txt, or "
                     f"aclImdb/test); searched: {', '.join(str(r) for r in searched)}")  # fmt: skip


def _read_imdb_jsonl(path: Path, urls: dict[str, list[str]]) -> Reviews:
    texts, ratings, movies = [], [], []
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            where = f"{str(path)!r} line {lineno}"
            try:
                row = json.loads(line)
                polarity, name = str(row["file"]).split("/")
                text, rating = str(row["text"]), int(row["rating"])
            except (json.JSONDecodeError, KeyError, ValueError, TypeError):
                raise InputError(f"{where}: expected an object with text, rating and file 'pos|neg/<id>_<r>.txt'") \
                    from None
            if polarity not in urls:
                raise InputError(f"{where}: field 'file' must start with pos/ or neg/; got {row['file']!r}")
            movies.append(_movie(urls, polarity, _parse_name(name, where)[0], where))
            texts.append(text)
            ratings.append(rating)
    return Reviews(texts, np.array(ratings), movies, str(path))


def _read_acl_imdb(test: Path) -> Reviews:
    urls = {p: _urls(test / f"urls_{p}.txt") for p in ("pos", "neg")}
    texts, ratings, movies = [], [], []
    for polarity in ("neg", "pos"):
        files = sorted((test / polarity).glob("*.txt"), key=lambda f: _parse_name(f.name, str(f))[0])
        for file in files:
            review_id, rating = _parse_name(file.name, str(file))
            movies.append(_movie(urls, polarity, review_id, str(file)))
            texts.append(file.read_text(encoding="utf-8"))
            ratings.append(rating)
    return Reviews(texts, np.array(ratings), movies, str(test))


def imdb_pref_pairs(
    reviews: Reviews, *, fractions: tuple[float, float, float] = (0.7, 0.1, 0.2), max_pairs_per_movie: int = 40,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """IMDB-Pref (docs/pairs.md): pairs of reviews of the **same movie** with different ratings, higher first.

    Movies are split ``fractions`` (train/val/test) by a seeded permutation; within each movie every pair of
    reviews with different ratings is a candidate, and at most ``max_pairs_per_movie`` are drawn (seeded).

    Returns:
        ``{split: (P, 2) int array of review indices, chosen first}``.
    """
    by_movie: dict[str, list[int]] = {}
    for i, movie in enumerate(reviews.movies):
        by_movie.setdefault(movie, []).append(i)
    movies = sorted(m for m, members in by_movie.items() if len(members) >= 2)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(movies))
    bounds = np.cumsum([round(f * len(movies)) for f in fractions[:2]])
    out = {}
    for split, part in zip(("train", "val", "test"), np.split(order, bounds), strict=True):
        pairs = []
        for m in sorted(part):
            members = by_movie[movies[m]]
            candidates = [(a, b) for k, a in enumerate(members) for b in members[k + 1 :]
                          if reviews.ratings[a] != reviews.ratings[b]]  # fmt: skip
            if len(candidates) > max_pairs_per_movie:
                keep = np.sort(rng.choice(len(candidates), max_pairs_per_movie, replace=False))
                candidates = [candidates[k] for k in keep]
            pairs += [(a, b) if reviews.ratings[a] > reviews.ratings[b] else (b, a) for a, b in candidates]
        out[split] = np.array(pairs, dtype=np.int64).reshape(-1, 2)
    return out


class IMDBPrefDataModule(PairDataModule):
    """IMDB-Pref: pairs of IMDB reviews of the same movie, the higher-rated one preferred (docs/pairs.md).

    The latent reward is the star rating, so the true preference is known and difficulty-dependent noise can use
    the rating gap (``reward_gap``). It measures sentiment intensity, not alignment. The movie-disjoint
    validation split keeps its labels (set ``val_fraction: 0`` and ``clean_validation: true``).

    Args:
        root: folder of the reviews (see :func:`read_imdb_reviews`); default: the usual places.
        max_pairs_per_movie: cap on the pairs drawn per movie.
        pair_seed: seed of the movie split and the pair draw.
        **kwargs: see :class:`PairDataModule` (``features``, ``order_seed``, ...).
    """

    def __init__(self, root: str | None = None, *, max_pairs_per_movie: int = 40, pair_seed: int = 0,
                 val_fraction: float = 0.0, clean_validation: bool = True, **kwargs: Any) -> None:  # fmt: skip
        super().__init__(val_fraction=val_fraction, clean_validation=clean_validation, **kwargs)
        self.root, self.max_pairs_per_movie, self.pair_seed = root, max_pairs_per_movie, pair_seed
        self.indices: dict[str, np.ndarray] = {}
        self.reviews: Reviews | None = None

    def has_validation_split(self) -> bool:
        return True

    def read_pairs(self) -> dict[str, PreferencePairs]:
        self.reviews = reviews = read_imdb_reviews(self.root)
        self.indices = imdb_pref_pairs(reviews, max_pairs_per_movie=self.max_pairs_per_movie, seed=self.pair_seed)
        texts, ratings = reviews.texts, reviews.ratings.astype(np.float64)
        return {split: PreferencePairs([""] * len(ix), [texts[a] for a in ix[:, 0]], [texts[b] for b in ix[:, 1]],
                                       reviews.source, reward_gap=ratings[ix[:, 0]] - ratings[ix[:, 1]],
                                       group=[reviews.movies[a] for a in ix[:, 0]])
                for split, ix in self.indices.items()}  # fmt: skip

    def _build_splits(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        if self.features != "minilm":
            return super()._build_splits()
        # one embedding of every review in file order (one cache file), then gathered per pair; once per process
        def read() -> tuple[Reviews, dict[str, np.ndarray], dict[str, PreferencePairs], np.ndarray]:
            pairs = self.read_pairs()
            assert self.reviews is not None
            return self.reviews, self.indices, pairs, text_features.encode_texts(self.reviews.texts,
                                                                                 cache_dir=self.cache_dir)

        def sources(value: tuple[Reviews, Any, Any, Any]) -> list[Path]:  # the jsonl and its url lists, or aclImdb
            source = Path(value[0].source)
            return [source] if source.is_dir() else [source, *sorted(source.parent.glob("urls_test_*.txt"))]

        key = ("imdb_pref", self.root, os.getcwd(), os.environ.get(ENV_VAR), self.cache_dir, self.max_pairs_per_movie,
               self.pair_seed)  # fmt: skip
        self.reviews, self.indices, self.pairs, emb = read_once(key, read, sources)
        return self._orient({split: (emb[ix[:, 0]], emb[ix[:, 1]]) for split, ix in self.indices.items()})


# ---- HH-RLHF --------------------------------------------------------------------------------------------
HH_FILE = "harmless-base_test.jsonl.gz"


class HHRLHFDataModule(PairDataModule):
    """Anthropic HH-RLHF pairs (default: the harmless-base test split of the shared data, 2,312 human pairs),
    split ``test_fraction`` (seeded) into training and test pairs. Real human preferences: there is no clean
    truth, so the given labels are also the "clean" ones and only accuracy is meaningful. Pairs whose dialogue
    prompts differ or whose responses are identical are left out with a warning (5 in harmless-base test).

    Args:
        path: the ``.jsonl[.gz]`` file; default: ``hh_rlhf/harmless-base_test.jsonl.gz`` in the usual places.
        test_fraction: share of the pairs held out as test pairs.
        **kwargs: see :class:`PairDataModule`.
    """

    def __init__(self, path: str | None = None, *, test_fraction: float = 0.2, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.path, self.test_fraction = path, test_fraction

    def has_validation_split(self) -> bool:
        return False

    def read_pairs(self) -> dict[str, PreferencePairs]:
        path = Path(self.path) if self.path else _find_hh()
        pairs = read_pairs(path, skip_inconsistent=True)
        order = np.random.default_rng(self.split_seed).permutation(len(pairs))
        cut = round(len(pairs) * (1 - self.test_fraction))
        return {"train": subset(pairs, order[:cut]), "test": subset(pairs, order[cut:])}


def subset(pairs: PreferencePairs, rows: np.ndarray) -> PreferencePairs:
    """The pairs at ``rows`` (in file order)."""
    rows = np.sort(rows)
    gap = None if pairs.reward_gap is None else pairs.reward_gap[rows]
    prompts, chosen, rejected = ([values[i] for i in rows] for values in (pairs.prompts, pairs.chosen, pairs.rejected))
    return PreferencePairs(prompts, chosen, rejected, pairs.source, reward_gap=gap)


def _find_hh() -> Path:
    roots = [r.parent / "hh_rlhf" for r in imdb_roots()]
    for folder in roots:
        if (folder / HH_FILE).is_file():
            return folder / HH_FILE
    raise InputError(f"HH-RLHF file {HH_FILE} not found; searched: {', '.join(str(r) for r in roots)}")
