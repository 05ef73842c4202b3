"""Noise models as small config-friendly classes (LightningCLI / jsonargparse ``class_path`` targets).

Each class takes typed keyword arguments, stores them as attributes of the same name and validates them
in ``__init__`` (one-line :class:`InputError` naming the field), e.g. in YAML::

    noise:
      class_path: robustlabels.noise.SymmetricNoise
      init_args: {rate: 0.4}

``apply`` turns ``(N,)`` true labels into :class:`NoisyLabels`; ``transition`` gives the row-stochastic
``(C, C)`` matrix ``T[i, j] = P(noisy = j | true = i)`` (the transpose of cleanlab's ``noise_matrix``), or
``None`` where the noise is not described by one.
"""

from __future__ import annotations

import abc
import inspect
import os
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from robustlabels.errors import InputError, check_choice, check_file, check_interval
from robustlabels.io import LABEL_SUFFIXES, read_labels, read_matrix
from robustlabels.noise.sample import (
    NoisyLabels,
    instance_dependent_noise,
    noisy_labels_from,
    sample_from_transition,
    sequential_flips,
    validate_labels,
)
from robustlabels.noise.transition import (
    CIFAR10_ASYMMETRIC_TARGETS,
    CIFAR10_ASYMMETRIC_VARIANTS,
    cifar10_asymmetric_transition,
    cifar100_asymmetric_transition,
    pairflip_transition,
    symmetric_transition,
    validate_transition,
)


def _check_rate(rate: float) -> float:
    if isinstance(rate, bool):
        raise InputError(f"`rate` must be in [0, 1]; got {rate!r}")
    return float(check_interval("rate", rate, low=0, high=1))


def _check_bool(name: str, value: bool) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise InputError(f"`{name}` must be true or false; got {value!r}")
    return bool(value)


def _check_readable(file: Path, *, what: str) -> None:
    """Raise :class:`InputError` unless ``file`` is a non-empty regular file this process may read."""
    problem = ("is a directory, not a file" if file.is_dir() else "is not a regular file" if not file.is_file()
               else "is not readable (permission denied)" if not os.access(file, os.R_OK)
               else "is empty (0 bytes)" if file.stat().st_size == 0 else None)  # fmt: skip
    if problem is not None:
        raise InputError(f"{what} {str(file)!r} {problem}")


def _check_num_classes(model: NoiseModel, num_classes: int, required: int) -> None:
    if num_classes != required:
        raise InputError(f"{type(model).__name__} needs num_classes == {required}; got {num_classes}")


class NoiseModel(abc.ABC):
    """A way to corrupt labels. Subclasses set ``name`` and implement :meth:`apply`."""

    name: ClassVar[str]

    @abc.abstractmethod
    def apply(
        self, labels: np.ndarray, *, num_classes: int, seed: int, features: np.ndarray | None = None
    ) -> NoisyLabels:
        """Corrupt ``(N,)`` int labels in ``[0, C)``; ``features`` ``(N, ...)`` only where needed."""

    def transition(self, num_classes: int) -> np.ndarray | None:
        """Row-stochastic ``(C, C)`` matrix, or ``None`` for instance-dependent or file-based noise."""
        return None

    def params(self) -> dict[str, Any]:
        """JSON-able constructor arguments, for manifests: ``{field: value}``."""
        named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        parameters = inspect.signature(type(self).__init__).parameters.values()
        return {p.name: getattr(self, p.name) for p in parameters if p.name != "self" and p.kind in named}

    def __repr__(self) -> str:
        fields = ", ".join(f"{key}={value!r}" for key, value in self.params().items())
        return f"{type(self).__name__}({fields})"


class _TransitionNoise(NoiseModel):
    """Noise drawn from :meth:`transition`, per sample or with exact per-class counts."""

    exact: bool

    def apply(
        self, labels: np.ndarray, *, num_classes: int, seed: int, features: np.ndarray | None = None
    ) -> NoisyLabels:
        matrix = self.transition(num_classes)
        return sample_from_transition(labels, matrix, seed=seed, exact=self.exact)

    @abc.abstractmethod
    def transition(self, num_classes: int) -> np.ndarray: ...


class NoNoise(NoiseModel):
    """Clean labels (identity transition)."""

    name = "none"

    def apply(
        self, labels: np.ndarray, *, num_classes: int, seed: int, features: np.ndarray | None = None
    ) -> NoisyLabels:
        labels = validate_labels(labels, num_classes)
        return noisy_labels_from(labels, labels.copy(), num_classes)

    def transition(self, num_classes: int) -> np.ndarray:
        return np.eye(num_classes)


class SymmetricNoise(_TransitionNoise):
    """Uniform noise; see :func:`~robustlabels.noise.transition.symmetric_transition` for the conventions.

    Args:
        rate: noise rate ``r`` in ``[0, 1]``.
        include_true_class: ``True`` for ELR/DivideMix (realised rate ``r (1 - 1/C)``), ``False`` for
            Co-teaching / Nested Co-teaching (realised rate ``r``).
        exact: flip exactly ``round((1 - T_ii) n_k)`` labels per class instead of sampling per label.
    """

    name = "symmetric"

    def __init__(self, rate: float, include_true_class: bool = False, exact: bool = False) -> None:
        self.rate = _check_rate(rate)
        self.include_true_class = _check_bool("include_true_class", include_true_class)
        self.exact = _check_bool("exact", exact)

    def transition(self, num_classes: int) -> np.ndarray:
        return symmetric_transition(num_classes, self.rate, include_true_class=self.include_true_class)


class PairFlipNoise(_TransitionNoise):
    """Pair-flip noise ``i -> (i + 1) mod C`` with probability ``rate`` (Han et al., 2018, Co-teaching).

    Args:
        rate: noise rate ``r`` in ``[0, 1]`` (0.45 in Co-teaching).
        exact: flip exactly ``round(r n_k)`` labels per class.
    """

    name = "pairflip"

    def __init__(self, rate: float, exact: bool = False) -> None:
        self.rate = _check_rate(rate)
        self.exact = _check_bool("exact", exact)

    def transition(self, num_classes: int) -> np.ndarray:
        return pairflip_transition(num_classes, self.rate)


class Cifar10AsymmetricNoise(_TransitionNoise):
    """CIFAR-10 asymmetric noise (truck->automobile, bird->airplane, deer->horse, cat<->dog), two variants.

    * ``variant="clean"`` (default): the definition. Each source class loses a fraction ``r`` to its target;
      exact by default, flipping ``round(r n_k)`` labels per source class (halves up). At ``r`` 0.4 on
      balanced classes: 40 % of cats wrong, 40 % of dogs, 20 % overall.
    * ``variant="elr_realised"``: the noise ELR's code actually trains on (``shengliu66/ELR``,
      ``data_loader/cifar10.py`` ``asymmetric_noise``, identical in ``ELR_plus``), which re-reads labels it has
      already changed: classes are processed in ascending order, each moving ``ceil(r m)`` of the ``m``
      samples whose *current* label is the class, so cats moved to dog are drawn again when dog is
      processed and a fraction ``r`` of them returns to cat. At ``r`` 0.4 with 4,500 per class: cat 24.0 %
      wrong, dog 40.0 %, 18.4 % overall (in expectation; with ``exact`` the cat and dog counts vary by about
      ±18 labels with the seed, the others are exact). Use it to reproduce ELR's and ELR+'s asymmetric
      numbers; :meth:`transition` is then the matrix of the realised noise (cat row ``1 - r + r²``,
      ``r (1 - r)``), see :func:`~robustlabels.noise.transition.cifar10_asymmetric_transition`.

    Nested Co-teaching's code flips a fixed ``ceil(r n_k)`` per class from the true labels (the clean
    variant up to rounding: ``round`` and ``ceil`` agree when ``r n_k`` is an integer, e.g. 40 % of 4,500).

    Args:
        rate: noise rate ``r`` in ``[0, 1]`` of each source class (overall about ``r / 2``).
        exact: fixed counts (default) or per-label sampling (``elr_realised``: a coin per sample and step).
        variant: ``"clean"`` or ``"elr_realised"``.
    """

    name = "cifar10_asymmetric"

    def __init__(
        self, rate: float, exact: bool = True, variant: Literal["clean", "elr_realised"] = "clean"
    ) -> None:
        self.rate = _check_rate(rate)
        self.exact = _check_bool("exact", exact)
        self.variant = check_choice("variant", variant, CIFAR10_ASYMMETRIC_VARIANTS)

    def apply(
        self, labels: np.ndarray, *, num_classes: int, seed: int, features: np.ndarray | None = None
    ) -> NoisyLabels:
        _check_num_classes(self, num_classes, 10)
        if self.variant == "clean":
            return super().apply(labels, num_classes=num_classes, seed=seed, features=features)
        flips = [(source, CIFAR10_ASYMMETRIC_TARGETS[source]) for source in sorted(CIFAR10_ASYMMETRIC_TARGETS)]
        return sequential_flips(labels, flips, self.rate, num_classes=10, seed=seed, exact=self.exact)

    def transition(self, num_classes: int) -> np.ndarray:
        _check_num_classes(self, num_classes, 10)
        return cifar10_asymmetric_transition(self.rate, variant=self.variant)


class Cifar100AsymmetricNoise(_TransitionNoise):
    """CIFAR-100 asymmetric noise, cyclic within groups of five classes.

    Args:
        rate: noise rate ``r`` in ``[0, 1]``.
        variant: ``"block"`` (index blocks ``{5s..5s+4}``, as in the ELR and Nested Co-teaching code; none is
            a real superclass) or ``"superclass"`` (the true CIFAR-100 superclasses).
        exact: flip exactly ``round(r n_k)`` labels per class (Nested Co-teaching) instead of sampling (ELR).
    """

    name = "cifar100_asymmetric"

    def __init__(
        self, rate: float, variant: Literal["block", "superclass"] = "block", exact: bool = False
    ) -> None:
        self.rate = _check_rate(rate)
        self.variant = check_choice("variant", variant, ("block", "superclass"))
        self.exact = _check_bool("exact", exact)

    def transition(self, num_classes: int) -> np.ndarray:
        _check_num_classes(self, num_classes, 100)
        return cifar100_asymmetric_transition(self.rate, variant=self.variant)


class InstanceDependentNoise(NoiseModel):
    """Part/instance-dependent noise of Xia et al. (2020); needs the raw inputs as ``features``.

    The labels depend on the scale of ``features`` (raw 0-255 pixels in the PTD code), so keep the labels.

    Args:
        rate: mean flip rate ``r`` in ``[0, 1]``.

    Reference:
        Xia et al., "Part-dependent Label Noise: Towards Instance-dependent Label Noise", NeurIPS 2020.
    """

    name = "instance_dependent"

    def __init__(self, rate: float) -> None:
        self.rate = _check_rate(rate)

    def apply(
        self, labels: np.ndarray, *, num_classes: int, seed: int, features: np.ndarray | None = None
    ) -> NoisyLabels:
        if features is None:
            raise InputError("InstanceDependentNoise needs features (the dataset's raw inputs); got None")
        return instance_dependent_noise(labels, features, self.rate, num_classes=num_classes, seed=seed)


class MatrixNoise(_TransitionNoise):
    """Noise from a user-given transition matrix ``T[i, j] = P(noisy = j | true = i)``.

    Args:
        matrix: a ``(C, C)`` nested list, or the path of a ``.npy`` or ``.csv`` (numbers, no header) file.
            Rows must sum to 1. A matrix in cleanlab's column convention must be transposed first.
        exact: flip exactly ``round((1 - T_ii) n_k)`` labels per class.
    """

    name = "matrix"

    def __init__(self, matrix: list[list[float]] | str, exact: bool = False) -> None:
        self.matrix = matrix
        self.exact = _check_bool("exact", exact)
        if isinstance(matrix, (str, Path)):
            self._matrix = validate_transition(read_matrix(matrix), name=f"matrix file {str(matrix)!r}")
        else:
            self._matrix = validate_transition(matrix, name="`matrix`")

    def transition(self, num_classes: int) -> np.ndarray:
        size = self._matrix.shape[0]
        if size != num_classes:
            name = f"matrix file {str(self.matrix)!r}" if isinstance(self.matrix, (str, Path)) else "`matrix`"
            raise InputError(f"{name} is {size}x{size} but the dataset has {num_classes} classes")
        return self._matrix.copy()

    def params(self) -> dict[str, Any]:
        matrix = str(self.matrix) if isinstance(self.matrix, (str, Path)) else self._matrix.tolist()
        return {"matrix": matrix, "exact": self.exact}


class LabelsFile(NoiseModel):
    """Noisy labels saved earlier (``.npy`` or ``.csv``, e.g. the ``labels.npy`` written by inject).

    Args:
        path: file read by :func:`robustlabels.io.read_labels`; it must hold one label per sample.
    """

    name = "labels_file"

    def __init__(self, path: str) -> None:
        self.path = str(path)
        file = check_file(self.path, what="labels file")
        if file.suffix.lower() not in LABEL_SUFFIXES:
            raise InputError(f"labels file {self.path!r} must end in .npy or .csv; got {file.suffix!r}")
        _check_readable(file, what="labels file")

    def apply(
        self, labels: np.ndarray, *, num_classes: int, seed: int, features: np.ndarray | None = None
    ) -> NoisyLabels:
        labels = validate_labels(labels, num_classes)
        noisy = read_labels(self.path)
        if noisy.size != labels.size:
            raise InputError(
                f"labels file {self.path!r} has {noisy.size} labels but the dataset has {labels.size}"
            )
        noisy = validate_labels(noisy, num_classes, name=f"labels file {self.path!r}")
        return noisy_labels_from(labels, noisy, num_classes)
