"""Text views for the audit: sparse TF-IDF beside the sentence embeddings, out-of-fold linear probabilities on
each, and their combination.

A MiniLM embedding sees the first 256 word pieces and the meaning; TF-IDF sees every word. Each *view* gives
``(N, C)`` out-of-fold probabilities from a linear model (:func:`cross_val_linear_probs`: stratified K-fold
multinomial logistic regression, sparse input kept sparse), and the views combine by :func:`combine_probs`
(the mean of the views' probabilities; docs/results/audit.md, "Text on two views", for how it was chosen).
SimiFeat votes on the TF-IDF view through :func:`tfidf_neighbour_features` (unit-norm LSA rows, since the
neighbour search wants dense rows).

The TF-IDF vocabulary and idf weights are fitted on all N texts: that uses no label, so no fold sees the
labels of its held-out rows (Northcutt et al., JAIR 2021, need out-of-sample *labels*, not features).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from robustlabels.errors import InputError, check_choice

VIEWS = ("minilm", "tfidf")
COMBINE = ("mean", "geometric")
VIEW_COMBINE = "mean"  # how the audit combines the views' probabilities (docs/results/audit.md)
TFIDF_MIN_DF = 2  # a term must occur in two texts: one-off tokens (names, typos) only memorise their text
TFIDF_MAX_FEATURES = 200_000  # the most frequent terms kept (unigrams and bigrams)
LSA_DIMS = 256  # TruncatedSVD width of the TF-IDF view's neighbour features
LINEAR_C = {"minilm": 1.0, "tfidf": 10.0}  # inverse L2 strength per view (docs/results/audit.md)


def parse_views(text: str) -> list[str]:
    """``["minilm", "tfidf"]`` from ``--text-views minilm,tfidf`` (order kept, duplicates dropped)."""
    names = list(dict.fromkeys(n.strip().lower() for n in text.split(",") if n.strip()))
    unknown = [n for n in names if n not in VIEWS]
    if unknown or not names:
        raise InputError(f"--text-views: unknown view {(unknown or [text])[0]!r}; choose from {', '.join(VIEWS)}")
    return names


def tfidf_matrix(
    texts: Sequence[str], *, min_df: int = TFIDF_MIN_DF, max_features: int | None = TFIDF_MAX_FEATURES
) -> Any:
    """``(N, V)`` sparse CSR float32 TF-IDF of ``texts``: unigrams and bigrams, sublinear term frequency, rows
    L2-normalised (scikit-learn's ``TfidfVectorizer``; Salton & Buckley 1988). Never densified.

    Raises:
        InputError: no term survives (empty texts, or ``min_df`` above the number of texts).
    """
    from sklearn.feature_extraction.text import TfidfVectorizer

    texts = list(texts)
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, dtype=np.float32,
                                 min_df=min(min_df, max(len(texts), 1)), max_features=max_features)  # fmt: skip
    try:
        return vectorizer.fit_transform(texts).tocsr()
    except ValueError as err:  # "empty vocabulary; perhaps the documents only contain stop words"
        raise InputError(f"TF-IDF view: no usable terms in the {len(texts)} texts ({err})") from None


def cross_val_linear_probs(
    x: Any,
    labels: np.ndarray,
    *,
    num_classes: int,
    folds: int = 5,
    seed: int = 0,
    c: float = 1.0,
    max_iter: int = 300,
) -> np.ndarray:
    """``(N, C)`` out-of-fold probabilities of an L2 multinomial logistic regression on ``x``.

    Args:
        x: ``(N, D)`` dense array or scipy sparse matrix (kept sparse).
        labels: ``(N,)`` given labels in ``[0, num_classes)``.
        num_classes: C; a class absent from a training fold gets probability 0 in that fold's rows.
        folds: K of ``StratifiedKFold(folds, shuffle=True, random_state=seed)``, the folds of
            :func:`~robustlabels.audit.confident.cross_val_pred_probs`; each row is predicted only by the model
            of the one fold that held it out.
        c: inverse regularisation strength.
    """
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    labels = np.asarray(labels, dtype=np.int64)
    n = len(labels)
    if x.shape[0] != n:
        raise InputError(f"view has {x.shape[0]} rows but the labels have {n}")
    counts = np.bincount(labels, minlength=num_classes)
    k = int(min(folds, counts[counts > 0].min(initial=folds)))
    if k < 2:
        raise InputError(f"--folds: every class needs 2 examples for out-of-fold probabilities; got {counts.tolist()}")
    probs = np.zeros((n, num_classes), dtype=np.float32)
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    for train_rows, heldout_rows in splitter.split(np.zeros(n), labels):
        model = LogisticRegression(C=c, max_iter=max_iter)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # a few more iterations change no ranking
            model.fit(x[train_rows], labels[train_rows])
        probs[np.ix_(heldout_rows, model.classes_)] = model.predict_proba(x[heldout_rows])
    return probs


def combine_probs(views: Sequence[np.ndarray], rule: str = "mean") -> np.ndarray:
    """``(N, C)`` one probability table from several views' ``(N, C)`` tables.

    ``mean``: the arithmetic mean (a linear opinion pool); ``geometric``: the normalised geometric mean (a
    logarithmic pool, Genest & Zidek 1986), which lets one confident view overrule the other.
    """
    check_choice("rule", rule, COMBINE)
    stack = np.stack([np.asarray(v, dtype=np.float64) for v in views])
    if rule == "mean":
        out = stack.mean(axis=0)
    else:
        out = np.exp(np.log(np.clip(stack, 1e-12, 1.0)).mean(axis=0))
    return (out / out.sum(axis=1, keepdims=True)).astype(np.float32)


def tfidf_neighbour_features(x: Any, *, dims: int = LSA_DIMS, seed: int = 0) -> np.ndarray:
    """``(N, d)`` float32 unit rows: TF-IDF projected on its top ``d`` singular directions (latent semantic
    analysis, Deerwester et al. 1990), for SimiFeat's cosine neighbours."""
    from sklearn.decomposition import TruncatedSVD

    d = int(min(dims, x.shape[1] - 1, x.shape[0] - 1))
    if d < 1:
        raise InputError(f"TF-IDF view: too few terms ({x.shape[1]}) or texts ({x.shape[0]}) for neighbours")
    z = TruncatedSVD(n_components=d, random_state=seed).fit_transform(x).astype(np.float32)
    norms = np.linalg.norm(z, axis=1, keepdims=True)
    z /= np.where(norms > 0, norms, 1.0)
    z[norms[:, 0] == 0, 0] = 1.0  # a text without any kept term: a unit row of its own
    return np.ascontiguousarray(z)


def joint_neighbour_features(views: Sequence[np.ndarray]) -> np.ndarray:
    """``(N, Σ d_v)`` float32: the views' unit rows side by side, each scaled by ``1/√V``, so that the cosine of
    two rows is the mean of the views' cosines (one neighbour search on all views; SimiFeat on both)."""
    blocks = []
    for x in views:
        x = np.asarray(x, dtype=np.float32)
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        blocks.append(x / np.where(norms > 0, norms, 1.0))
    return np.ascontiguousarray(np.hstack(blocks) / np.float32(np.sqrt(len(blocks))))


def view_pred_probs(
    views: dict[str, Any],
    labels: np.ndarray,
    *,
    num_classes: int,
    folds: int = 5,
    seed: int = 0,
    rule: str = VIEW_COMBINE,
    progress: bool = True,
) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, float]]:
    """``(combined (N, C), {view: (N, C)}, {view: seconds})``: each view's out-of-fold linear probabilities
    (:data:`LINEAR_C` per view) and their :func:`combine_probs`."""
    per_view, seconds = {}, {}
    for name, x in views.items():
        if progress:
            print(f"[audit] confident_learning: {folds}-fold logistic regression on the {name} view "
                  f"({x.shape[1]} dims)", file=sys.stderr, flush=True)  # fmt: skip
        start = time.perf_counter()
        per_view[name] = cross_val_linear_probs(x, labels, num_classes=num_classes, folds=folds, seed=seed,
                                                c=LINEAR_C.get(name, 1.0))  # fmt: skip
        seconds[name] = time.perf_counter() - start
    return combine_probs(list(per_view.values()), rule), per_view, seconds
