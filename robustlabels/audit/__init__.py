"""Find label errors in existing data: ``python -m robustlabels.audit`` and its functional core.

- :func:`confident_learning` (cleanlab, on out-of-sample ``pred_probs``; :func:`cross_val_pred_probs` makes them
  with the ``fit`` pipeline);
- :func:`simifeat` (kNN label votes on features, through :mod:`robustlabels.neighbors`);
- :func:`training_dynamics` (ELR target disagreement, AUM, mean loss from one training run);
- :func:`rank_consistency` (preference pairs: a cross-fitted Bradley–Terry ranking of recurring responses);
- :func:`ensemble` (rank-averaged scores).

Each returns a :class:`MethodResult` (scores higher = more suspicious); :func:`write_audit` writes
``issues.csv``, ``summary.json`` and ``report.html``.
"""

from importlib import import_module
from typing import Any

_EXPORTS = {
    "AuditData": "types", "MethodResult": "types", "confident_learning": "confident",
    "cross_val_pred_probs": "confident", "ensemble": "ensemble", "simifeat": "simifeat",
    "training_dynamics": "dynamics", "write_audit": "report", "rank_consistency": "rank_consistency",
}  # fmt: skip
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Import on first use, so ``python -m robustlabels.audit --help`` stays fast."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'robustlabels.audit' has no attribute {name!r}")
    return getattr(import_module(f"robustlabels.audit.{_EXPORTS[name]}"), name)
