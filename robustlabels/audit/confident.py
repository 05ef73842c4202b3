"""Confident learning (Northcutt et al., JAIR 2021) by calling cleanlab, on out-of-sample probabilities.

cleanlab is AGPL: it is called here as a dependency, never copied. :func:`cross_val_pred_probs` makes the
out-of-sample ``pred_probs`` with the ``fit`` pipeline (stratified K-fold, seeded), so any backbone,
strategy or regularizer can produce them; :func:`confident_learning` turns them into a
:class:`~robustlabels.audit.types.MethodResult`. Method: docs/methods.md, "Audit methods".
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from robustlabels.audit.types import MethodResult
from robustlabels.errors import check_choice
from robustlabels.noise.joint import estimate_joint

FILTER_BY = ("prune_by_noise_rate", "prune_by_class", "both", "confident_learning", "predicted_neq_given",
             "low_normalized_margin", "low_self_confidence")  # fmt: skip
RANK_BY = ("self_confidence", "normalized_margin", "confidence_weighted_entropy")
BEST_EPOCH_VAL_FRACTION = 0.1  # of each fold's training rows, to choose the epoch on (best_epoch)
LOW_MEMORY_ABOVE = 2_000_000  # examples; cleanlab's batched path keeps memory bounded beyond this


def cross_val_pred_probs(
    inputs: np.ndarray,
    labels: np.ndarray,
    *,
    num_classes: int,
    config: dict[str, Any],
    folds: int = 5,
    seed: int = 0,
    root_dir: str | Path = "runs/audit",
    epochs: int | None = None,
    progress: bool = True,
    best_epoch: bool = False,
) -> np.ndarray:
    """``(N, C)`` out-of-sample probabilities: each fold's rows predicted by a model trained on the others.

    Folds are ``StratifiedKFold(folds, shuffle=True, random_state=seed)`` over ``labels``, as in cleanlab's
    ``estimate_confident_joint_and_cv_pred_proba``; fold ``f`` trains with seed ``seed + f``. ``best_epoch``: each
    fold model trains on 90 % of its rows and predicts from the epoch that scores best on the other 10 % against
    their given labels (:class:`~robustlabels.audit.training.HeldOutAtBestEpoch`), instead of from the last epoch.
    """
    from sklearn.model_selection import StratifiedKFold

    from robustlabels.audit.training import HeldOutAtBestEpoch, fit_arrays, predict
    from robustlabels.data.datamodule import stratified_split

    pred_probs = np.zeros((len(labels), num_classes), dtype=np.float32)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for fold, (train_rows, heldout_rows) in enumerate(splitter.split(np.zeros(len(labels)), labels)):
        if progress:
            print(f"[audit] confident_learning: fold {fold + 1}/{folds}, {len(train_rows)} train, "
                  f"{len(heldout_rows)} held out", file=sys.stderr, flush=True)  # fmt: skip
        callbacks = []
        if best_epoch:
            kept, val = stratified_split(labels[train_rows], BEST_EPOCH_VAL_FRACTION, seed=seed + fold)
            train_rows, val_rows = train_rows[kept], train_rows[val]
            callbacks = [HeldOutAtBestEpoch(inputs, labels, val_rows, heldout_rows)]
        module, _, datamodule = fit_arrays(config, inputs, labels, num_classes=num_classes, train_rows=train_rows,
                                           heldout_rows=heldout_rows, seed=seed + fold,
                                           root_dir=Path(root_dir) / f"fold{fold}", epochs=epochs,
                                           progress=progress, callbacks=callbacks)  # fmt: skip
        if callbacks:
            pred_probs[heldout_rows] = callbacks[0].probs
            if progress:
                print(f"[audit] confident_learning: fold {fold + 1} predicts from epoch {callbacks[0].best_epoch + 1} "
                      f"(accuracy {callbacks[0].best_accuracy:.3f} on its given validation labels)", file=sys.stderr,
                      flush=True)  # fmt: skip
        else:
            pred_probs[heldout_rows] = predict(module, datamodule, inputs, heldout_rows)[0]
    return pred_probs


def confident_learning(
    labels: np.ndarray,
    pred_probs: np.ndarray,
    *,
    filter_by: str = "prune_by_noise_rate",
    rank_by: str = "self_confidence",
    frac_noise: float = 1.0,
    low_memory: bool | None = None,
    n_jobs: int = 1,
) -> MethodResult:
    """Flag label issues with cleanlab's ``find_label_issues`` and rank them with ``get_label_quality_scores``.

    Args:
        labels: ``(N,)`` given labels.
        pred_probs: ``(N, C)`` **out-of-sample** probabilities (in-sample ones find almost nothing).
        filter_by: any of cleanlab's ``filter_by`` options (:data:`FILTER_BY`).
        rank_by: cleanlab's quality score (:data:`RANK_BY`); our ``score = 1 - quality``.
        frac_noise: cleanlab's ``frac_noise`` (flag this fraction of the estimated issues).
        low_memory: use cleanlab's batched ``find_label_issues_batched`` (bounded memory; it ranks by
            ``self_confidence`` and flags the estimated number of issues). ``None``: above
            :data:`LOW_MEMORY_ABOVE` examples.
        n_jobs: cleanlab's worker processes. 1 by default, not cleanlab's "all cores": above 1 cleanlab forks this
            process, and a fork of a process that runs other threads (torch's, the exact search's workers, a Ray
            driver's) can deadlock the child (it hung the test suite once, 2026-12-04); the per-class pruning
            it spreads over processes is a small part of an audit (docs/benchmarks.md times both at n_jobs=1).

    Returns:
        ``flagged`` exactly as cleanlab's; ``suggested`` = ``argmax pred_probs``; ``joint`` cleanlab's
        calibrated confident joint normalised (its ``estimate_joint``), transposed to rows = true label; on the
        batched path and for ``filter_by="confident_learning"`` the same from
        :func:`~robustlabels.noise.joint.estimate_joint`.
    """
    from cleanlab.count import compute_confident_joint
    from cleanlab.filter import find_label_issues

    check_choice("filter_by", filter_by, FILTER_BY)
    check_choice("rank_by", rank_by, RANK_BY)
    start = time.perf_counter()
    labels = np.asarray(labels, dtype=np.int64)
    low_memory = len(labels) > LOW_MEMORY_ABOVE if low_memory is None else low_memory
    predicted = pred_probs.argmax(1)
    params: dict[str, Any] = {"filter_by": filter_by, "rank_by": rank_by, "frac_noise": frac_noise,
                              "low_memory": low_memory}  # fmt: skip
    if low_memory:
        from cleanlab.experimental.label_issues_batched import find_label_issues_batched

        flagged = find_label_issues_batched(labels, pred_probs, n_jobs=n_jobs, verbose=False, return_mask=True)
        params.update(filter_by="low_self_confidence (batched)", rank_by="self_confidence")
        quality = pred_probs[np.arange(len(labels)), labels]
        joint = estimate_joint(labels, pred_probs, predicted=predicted)  # row blocks: bounded memory
    elif filter_by == "confident_learning":  # this rule recounts the confident joint itself
        flagged = find_label_issues(labels, pred_probs, filter_by=filter_by, frac_noise=frac_noise, n_jobs=n_jobs)
        quality = quality_scores(labels, pred_probs, rank_by)
        joint = estimate_joint(labels, pred_probs, predicted=predicted)
    else:
        # cleanlab's calibrated confident joint, counted once and handed to find_label_issues (which would
        # otherwise count it itself): the joint estimate then costs nothing extra (docs/benchmarks.md).
        confident_joint = compute_confident_joint(labels, pred_probs)
        flagged = find_label_issues(labels, pred_probs, filter_by=filter_by, frac_noise=frac_noise,
                                    confident_joint=confident_joint, n_jobs=n_jobs)  # fmt: skip
        quality = quality_scores(labels, pred_probs, rank_by)
        joint = (confident_joint / max(confident_joint.sum(), 1)).T  # cleanlab indexes [given][true]
    return MethodResult("confident_learning", scores=1.0 - np.asarray(quality, dtype=np.float64),
                        flagged=np.asarray(flagged, dtype=bool), suggested=predicted.astype(np.int64),
                        joint=joint, params=params, seconds=time.perf_counter() - start)  # fmt: skip


def quality_scores(labels: np.ndarray, pred_probs: np.ndarray, method: str) -> np.ndarray:
    """``(N,)`` label quality, lower = more suspicious (docs/methods.md, "Audit methods").

    ``self_confidence`` (``p̂_{i,ỹ}``) and ``normalized_margin`` (``(p̂_{i,ỹ} − max_{j≠ỹ} p̂_ij + 1) / 2``) are
    one vectorised line each here; cleanlab's ``get_label_quality_scores`` re-validates its inputs first,
    which cost 20 % of the whole audit at 50k × 10. Other methods call cleanlab.
    """
    rows = np.arange(len(labels))
    given = pred_probs[rows, labels]
    if method == "self_confidence":
        return given
    if method == "normalized_margin":
        others = pred_probs.copy()
        others[rows, labels] = -np.inf
        return (given - others.max(axis=1) + 1.0) / 2.0
    from cleanlab.rank import get_label_quality_scores

    return get_label_quality_scores(labels, pred_probs, method=method)
