"""Synthetic label noise: transition matrices, samplers and config-friendly noise models.

Convention: ``T[i, j] = P(noisy = j | true = i)``, rows sum to 1 (cleanlab's ``noise_matrix`` is the
transpose). Noise is data: draw it once with a seed and save it with the run.
"""

from __future__ import annotations

from robustlabels.noise.pairs import DifficultySwapNoise, SystematicAnnotatorNoise, calibrate_beta
from robustlabels.noise.sample import (
    NoisyLabels,
    flips_per_class,
    instance_dependent_noise,
    noisy_labels_from,
    sample_from_transition,
    sequential_flips,
    validate_labels,
)
from robustlabels.noise.spec import (
    Cifar10AsymmetricNoise,
    Cifar100AsymmetricNoise,
    InstanceDependentNoise,
    LabelsFile,
    MatrixNoise,
    NoiseModel,
    NoNoise,
    PairFlipNoise,
    SymmetricNoise,
)
from robustlabels.noise.transition import (
    CIFAR10_ASYMMETRIC_TARGETS,
    CIFAR10_ASYMMETRIC_VARIANTS,
    CIFAR100_COARSE_OF_FINE,
    cifar10_asymmetric_transition,
    cifar100_asymmetric_transition,
    pairflip_transition,
    symmetric_transition,
    validate_transition,
)

__all__ = [
    "CIFAR10_ASYMMETRIC_TARGETS",
    "CIFAR10_ASYMMETRIC_VARIANTS",
    "CIFAR100_COARSE_OF_FINE",
    "Cifar10AsymmetricNoise",
    "Cifar100AsymmetricNoise",
    "DifficultySwapNoise",
    "InstanceDependentNoise",
    "LabelsFile",
    "MatrixNoise",
    "NoNoise",
    "NoiseModel",
    "NoisyLabels",
    "PairFlipNoise",
    "SymmetricNoise",
    "SystematicAnnotatorNoise",
    "calibrate_beta",
    "cifar10_asymmetric_transition",
    "cifar100_asymmetric_transition",
    "flips_per_class",
    "instance_dependent_noise",
    "noisy_labels_from",
    "pairflip_transition",
    "sample_from_transition",
    "sequential_flips",
    "symmetric_transition",
    "validate_labels",
    "validate_transition",
]
