"""Config-friendly noise models: validation in __init__, params, files, and apply()."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from robustlabels.errors import InputError
from robustlabels.io import read_labels
from robustlabels.noise import (
    Cifar10AsymmetricNoise,
    Cifar100AsymmetricNoise,
    InstanceDependentNoise,
    LabelsFile,
    MatrixNoise,
    NoiseModel,
    NoNoise,
    PairFlipNoise,
    SymmetricNoise,
    flips_per_class,
)

LABELS = np.random.default_rng(0).permutation(np.arange(1000) % 10).astype(np.int64)

MODELS: list[NoiseModel] = [
    NoNoise(),
    SymmetricNoise(0.4),
    SymmetricNoise(0.4, include_true_class=True, exact=True),
    PairFlipNoise(0.45, exact=True),
    Cifar10AsymmetricNoise(0.4),
    Cifar10AsymmetricNoise(0.4, variant="elr_realised"),
    MatrixNoise([[0.5, 0.5], [0.0, 1.0]]),
]


@pytest.mark.parametrize("model", MODELS, ids=lambda m: type(m).__name__)
def test_params_are_json_and_rebuild_the_model(model: NoiseModel) -> None:
    params = json.loads(json.dumps(model.params()))
    rebuilt = type(model)(**params)
    assert rebuilt.params() == model.params()
    assert isinstance(model.name, str) and model.name
    num_classes = 2 if isinstance(model, MatrixNoise) else 10
    labels = LABELS % num_classes
    first = model.apply(labels, num_classes=num_classes, seed=5)
    second = rebuilt.apply(labels, num_classes=num_classes, seed=5)
    np.testing.assert_array_equal(first.noisy, second.noisy)
    transition = model.transition(num_classes)
    assert transition is not None and np.all(transition[labels, first.noisy] > 0)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: SymmetricNoise(1.5), r"`rate` must be in \[0, 1\]; got 1\.5"),
        (lambda: PairFlipNoise(-0.1), r"`rate` must be in \[0, 1\]; got -0\.1"),
        (lambda: InstanceDependentNoise(float("nan")), "`rate` must be in"),
        (lambda: SymmetricNoise(0.2, exact="yes"), "`exact` must be true or false; got 'yes'"),
        (
            lambda: Cifar10AsymmetricNoise(0.2, variant="elr"),
            "`variant` must be one of clean, elr_realised",
        ),
        (
            lambda: Cifar100AsymmetricNoise(0.2, variant="coarse"),
            "`variant` must be one of block, superclass",
        ),
        (lambda: MatrixNoise([[0.5, 0.4], [0.0, 1.0]]), r"`matrix` row 0 sums to 0\.9, not 1"),
        (lambda: MatrixNoise([[1.0, 0.0]]), "`matrix` must be a non-empty square"),
        (lambda: LabelsFile("no/such/file.npy"), "labels file not found: 'no/such/file.npy'"),
    ],
)
def test_init_validation_names_field_and_value(build, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InputError, match=message):
        build()


def test_cifar_models_need_their_class_counts() -> None:
    with pytest.raises(InputError, match="Cifar10AsymmetricNoise needs num_classes == 10; got 5"):
        Cifar10AsymmetricNoise(0.4).apply(LABELS % 5, num_classes=5, seed=0)
    with pytest.raises(InputError, match="Cifar100AsymmetricNoise needs num_classes == 100; got 10"):
        Cifar100AsymmetricNoise(0.4).transition(10)
    labels = np.arange(2000) % 100
    result = Cifar100AsymmetricNoise(0.4, variant="superclass", exact=True).apply(
        labels, num_classes=100, seed=0
    )
    assert result.realized_rate == pytest.approx(0.4)


def test_cifar10_asymmetric_is_exact_by_default() -> None:
    model = Cifar10AsymmetricNoise(0.4)
    assert model.exact is True and model.variant == "clean"
    assert model.apply(LABELS, num_classes=10, seed=3).realized_rate == pytest.approx(0.2)


CIFAR10_TRAIN = np.random.default_rng(1).permutation(np.repeat(np.arange(10), 4500)).astype(np.int64)
CAT, DOG, SOURCES = 3, 5, (2, 3, 4, 5, 9)


def wrong_per_class(model: NoiseModel, seed: int) -> tuple[np.ndarray, float]:
    result = model.apply(CIFAR10_TRAIN, num_classes=10, seed=seed)
    return flips_per_class(CIFAR10_TRAIN, result.is_flipped, 10), result.realized_rate


def test_cifar10_asymmetric_clean_variant_realises_40_40_20() -> None:
    for seed in range(3):
        wrong, rate = wrong_per_class(Cifar10AsymmetricNoise(0.4), seed)
        assert wrong.tolist() == [0, 0, 1800, 1800, 1800, 1800, 0, 0, 0, 1800] and rate == 0.2


def test_cifar10_asymmetric_elr_realised_variant_reproduces_elrs_loop() -> None:
    # ELR's asymmetric_noise moves ceil(0.4 m) of the m samples whose *current* label is the class, classes in
    # ascending order: 1,800 cats go to dog, then 2,520 of the 6,300 "dogs" go to cat, about 2/7 of them
    # former cats (hypergeometric: 720 +- 17.5). Exact: truck, bird, deer 1,800; dog wrong - cat wrong = 720;
    # 5,220 cat labels among true cats and dogs. Random: the cat/dog split (per seed cat 24.0 +- 0.4 %).
    model = Cifar10AsymmetricNoise(0.4, variant="elr_realised")
    cats, dogs, rates = [], [], []
    for seed in range(20):
        wrong, rate = wrong_per_class(model, seed)
        noisy = model.apply(CIFAR10_TRAIN, num_classes=10, seed=seed).noisy
        assert wrong[[0, 1, 6, 7, 8]].tolist() == [0] * 5 and wrong[[2, 4, 9]].tolist() == [1800] * 3
        assert wrong[DOG] - wrong[CAT] == 720
        assert np.sum(noisy[np.isin(CIFAR10_TRAIN, (CAT, DOG))] == CAT) == 4500 - 1800 + 2520
        assert abs(wrong[CAT] / 4500 - 0.24) < 0.015 and abs(rate - 0.184) < 0.003  # > 3.5 sd per seed
        cats.append(wrong[CAT] / 4500), dogs.append(wrong[DOG] / 4500), rates.append(rate)
    # Means over 20 seeds: sd 0.09 pp (cat, dog) and 0.02 pp (overall); tolerances are > 3 sd.
    assert np.mean(cats) == pytest.approx(0.24, abs=0.003) and np.mean(dogs) == pytest.approx(0.40, abs=0.003)
    assert np.mean(rates) == pytest.approx(0.184, abs=0.0006)


def test_cifar10_asymmetric_elr_realised_is_seeded_and_matches_its_matrix_per_sample() -> None:
    model = Cifar10AsymmetricNoise(0.4, variant="elr_realised")
    first = model.apply(CIFAR10_TRAIN, num_classes=10, seed=7).noisy
    np.testing.assert_array_equal(first, model.apply(CIFAR10_TRAIN, num_classes=10, seed=7).noisy)
    assert not np.array_equal(first, model.apply(CIFAR10_TRAIN, num_classes=10, seed=8).noisy)
    sampled = Cifar10AsymmetricNoise(0.4, exact=False, variant="elr_realised")
    result = sampled.apply(CIFAR10_TRAIN, num_classes=10, seed=0)
    # 4,500 per row: the sd of an entry is at most 0.0075, so 0.03 is 4 sd.
    np.testing.assert_allclose(result.empirical_matrix, sampled.transition(10), atol=0.03)
    assert result.empirical_matrix[CAT, DOG] == pytest.approx(0.24, abs=0.03)


def test_instance_dependent_needs_features() -> None:
    model = InstanceDependentNoise(0.3)
    assert model.transition(10) is None
    with pytest.raises(InputError, match="needs features"):
        model.apply(LABELS, num_classes=10, seed=0)
    features = np.random.default_rng(0).normal(size=(LABELS.size, 8))
    assert 0.15 < model.apply(LABELS, num_classes=10, seed=0, features=features).realized_rate < 0.45


def test_matrix_noise_from_npy_and_csv_files(tmp_path: Path) -> None:
    matrix = np.array([[0.7, 0.3, 0.0], [0.0, 0.8, 0.2], [0.1, 0.0, 0.9]])
    np.save(tmp_path / "t.npy", matrix)
    np.savetxt(tmp_path / "t.csv", matrix, delimiter=",")
    for name in ("t.npy", "t.csv"):
        model = MatrixNoise(str(tmp_path / name), exact=True)
        np.testing.assert_allclose(model.transition(3), matrix)
        assert model.params() == {"matrix": str(tmp_path / name), "exact": True}
    with pytest.raises(InputError, match=r"matrix file '.*t\.csv' is 3x3 but the dataset has 10 classes"):
        model.apply(LABELS, num_classes=10, seed=0)


def test_matrix_file_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("0.5,0.5\n0.6,0.3\n")
    with pytest.raises(InputError, match=r"matrix file '.*bad\.csv' row 1 sums to 0\.9, not 1"):
        MatrixNoise(str(bad))
    words = tmp_path / "words.csv"
    words.write_text("a,b\n1,0\n")
    with pytest.raises(InputError, match=r"matrix file '.*words\.csv' is not a CSV of numbers"):
        MatrixNoise(str(words))
    with pytest.raises(InputError, match=r"must end in \.npy or \.csv; got '\.txt'"):
        (tmp_path / "t.txt").write_text("1")
        MatrixNoise(str(tmp_path / "t.txt"))


def test_labels_file_round_trip_and_errors(tmp_path: Path) -> None:
    noisy = SymmetricNoise(0.3).apply(LABELS, num_classes=10, seed=1).noisy
    path = tmp_path / "x.npy"
    np.save(path, noisy)
    result = LabelsFile(str(path)).apply(LABELS, num_classes=10, seed=123)
    np.testing.assert_array_equal(result.noisy, noisy)
    assert LabelsFile(str(path)).transition(10) is None
    with pytest.raises(InputError, match=r"labels file '.*x\.npy' has 1000 labels but the dataset has 1797"):
        LabelsFile(str(path)).apply(np.zeros(1797, np.int64), num_classes=10, seed=0)
    np.save(path, np.where(np.arange(1000) == 17, 12, noisy))
    with pytest.raises(
        InputError, match=r"labels file '.*x\.npy' value 12 at position 17 is outside \[0, 10\)"
    ):
        LabelsFile(str(path)).apply(LABELS, num_classes=10, seed=0)


def test_read_labels_csv_columns_and_index_order(tmp_path: Path) -> None:
    path = tmp_path / "l.csv"
    path.write_text("index,label\n2,7\n0,5\n1,6\n")
    np.testing.assert_array_equal(read_labels(path), [5, 6, 7])
    path.write_text("id,noisy_label,clean\n0,3,3\n1,4,1\n")
    np.testing.assert_array_equal(read_labels(path), [3, 4])
    path.write_text("y\n1\n\n2.0\n")
    np.testing.assert_array_equal(read_labels(path), [1, 2])
    assert read_labels(path).dtype == np.int64


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("index,label\n0,1\n1,cat\n", r"labels file '.*l\.csv' line 3: label 'cat' is not an integer"),
        ("index,label\n0,1\n1,2.5\n", r"line 3: label '2\.5' is not an integer"),
        ("a,b\n1,2\n", r"has no `label` or `noisy_label` column \(columns: a, b\)"),
        ("index,label\n0,1\n0,2\n", r"`index` value 0 appears more than once"),
        ("index,label\n0,1\n5,2\n", r"`index` value 5 is outside 0\.\.1"),
        ("label\n1\n2,3\n", r"line 3 has 2 fields, not 1"),
        ("", "is empty"),
    ],
)
def test_read_labels_csv_errors(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "l.csv"
    path.write_text(content)
    with pytest.raises(InputError, match=message):
        read_labels(path)


def test_read_labels_npy_errors(tmp_path: Path) -> None:
    np.save(tmp_path / "f.npy", np.array([1.0, 2.0, 2.5]))
    with pytest.raises(
        InputError, match=r"labels file '.*f\.npy' has a non-integer value 2\.5 at position 2"
    ):
        read_labels(tmp_path / "f.npy")
    np.save(tmp_path / "m.npy", np.zeros((2, 3), np.int64))
    with pytest.raises(InputError, match=r"must hold a 1-D array; got shape \(2, 3\)"):
        read_labels(tmp_path / "m.npy")
    (tmp_path / "junk.npy").write_bytes(b"not an array")
    with pytest.raises(InputError, match=r"'.*junk\.npy' is not a readable \.npy array"):
        read_labels(tmp_path / "junk.npy")
    with pytest.raises(InputError, match="labels file not found"):
        read_labels(tmp_path / "missing.csv")
    (tmp_path / "l.json").write_text("[]")
    with pytest.raises(InputError, match=r"must end in \.npy or \.csv; got '\.json'"):
        read_labels(tmp_path / "l.json")


def test_cifar10_gpu_suite_trains_its_asymmetric_cells_on_elrs_realised_noise() -> None:
    from robustlabels.experiments.configs import build_config
    from robustlabels.experiments.suite import grid, load_suite

    suite = load_suite("cifar10-gpu")
    cells = [cell for cell in grid(suite) if cell.setting == "asymmetric-0.4"]
    assert {cell.strategy for cell in cells} >= {"cross_entropy", "elr", "elr_plus"}
    for cell in cells:
        noise = build_config(suite, cell)["data"]["init_args"]["noise"]
        assert noise["class_path"] == "Cifar10AsymmetricNoise"
        assert Cifar10AsymmetricNoise(**noise["init_args"]).variant == "elr_realised"
