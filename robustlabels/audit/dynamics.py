"""Audit scores from one training run, no K-fold retraining: ELR target disagreement, AUM and mean loss.

K-fold retraining of deep networks is what makes confident learning expensive (cleanlab issue #555,
"it takes days"); these scores come from a single ``fit`` run over all the data:

- **ELR target disagreement** (Liu et al., NeurIPS 2020): ``1 − t_i[ỹ_i] / Σ t_i``, the ELR regularizer's
  temporal-ensemble target away from the given label (when the run's config has an ELR regularizer);
- **AUM**, area under the margin (Pleiss et al., NeurIPS 2020): the mean over epochs of the given label's
  logit minus the largest other logit; mislabelled examples keep a low or negative margin;
- **mean training loss** over epochs (small-loss criterion, as in Co-teaching).

The method's score is the mean of the three scores' normalised ranks; it flags examples whose prediction
(ELR's target argmax, else the mean softmax after the first epoch) differs from the given label, and suggests
that prediction.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robustlabels.audit.ensemble import joint_from_decisions, normalized_rank
from robustlabels.audit.types import MethodResult
from robustlabels.regularizers.elr import ELR


def training_dynamics(
    inputs: np.ndarray,
    labels: np.ndarray,
    *,
    num_classes: int,
    config: dict[str, Any],
    seed: int = 0,
    root_dir: str | Path = "runs/audit",
    epochs: int | None = None,
    progress: bool = True,
    with_features: bool = False,
) -> tuple[MethodResult, np.ndarray | None]:
    """Train once on all of ``inputs`` and score every example from its training dynamics.

    Returns:
        the :class:`MethodResult` (``params["components"]`` names the scores used) and, when
        ``with_features``, the final model's ``(N, D)`` penultimate features (for the ``knn`` method; one more
        pass over the data, so only on request).
    """
    from robustlabels.audit.training import TrainingDynamics, fit_arrays, predict

    start = time.perf_counter()
    rows = np.arange(len(labels))
    dynamics = TrainingDynamics(len(labels), num_classes)
    module, _, datamodule = fit_arrays(config, inputs, labels, num_classes=num_classes, train_rows=rows,
                                       heldout_rows=rows[:0], seed=seed, root_dir=root_dir, epochs=epochs,
                                       callbacks=[dynamics], progress=progress)  # fmt: skip
    features = predict(module, datamodule, inputs, rows)[1] if with_features else None
    components = {"aum": -dynamics.margin, "mean_loss": dynamics.loss}
    elr = next((r for r in module.regularizers if isinstance(r, ELR)), None)
    predicted = dynamics.probs.argmax(1)
    if elr is not None:
        given = torch.from_numpy(labels)
        components["elr_disagreement"] = elr.mislabel_scores(given).cpu().double().numpy()
        predicted = elr.targets.argmax(1).cpu().numpy()
    scores = np.mean([normalized_rank(s) for s in components.values()], axis=0)
    flagged = predicted != labels
    result = MethodResult("dynamics", scores=scores, flagged=flagged, suggested=predicted.astype(np.int64),
                          joint=joint_from_decisions(labels, flagged, predicted, num_classes),
                          params={"components": list(components), "epochs": len(module.history),
                                  "strategy": type(module.strategy).__name__,
                                  "regularizers": [type(r).__name__ for r in module.regularizers]},
                          seconds=time.perf_counter() - start)  # fmt: skip
    return result, features
