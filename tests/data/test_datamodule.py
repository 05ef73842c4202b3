"""Data modules: shapes, index alignment, noise applied once, splits, batched augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robustlabels.data import BlobsDataModule, DigitsDataModule
from robustlabels.data.augment import random_crop, random_hflip
from robustlabels.data.datamodule import EpochBatchSampler, stratified_split
from robustlabels.errors import InputError
from robustlabels.io import atomic_save_npy
from robustlabels.noise import LabelsFile, SymmetricNoise


def digits(**kwargs: object) -> DigitsDataModule:
    dm = DigitsDataModule(noise=SymmetricNoise(rate=0.4, exact=True), **kwargs)
    dm.setup("fit")
    return dm


def test_batches_have_the_batch_fields_and_shapes() -> None:
    dm = digits(batch_size=32)
    batch = next(iter(dm.train_dataloader()))
    assert batch.inputs.shape == (32, 1, 8, 8) and batch.inputs.dtype == torch.uint8
    assert batch.targets.dtype == batch.index.dtype == batch.clean_targets.dtype == torch.int64
    assert dm.num_classes == 10 and dm.input_shape == (1, 8, 8)


def test_index_keys_the_training_set() -> None:
    """batch.index points at the sample's row, so per-sample state (ELR targets) lines up."""
    dm = digits(batch_size=50)
    train = dm.datasets["train"]
    seen = []
    for batch in dm.train_dataloader():
        assert torch.equal(train.inputs[batch.index], batch.inputs)
        assert torch.equal(train.targets[batch.index], batch.targets)
        seen.append(batch.index)
    assert torch.equal(torch.cat(seen).sort().values, torch.arange(len(train)))


def test_noise_is_applied_once_and_seeded() -> None:
    a, b = digits(), digits()
    assert torch.equal(a.datasets["train"].targets, b.datasets["train"].targets)
    assert 0.37 < a.realized_noise_rate < 0.43
    other = DigitsDataModule(noise=SymmetricNoise(rate=0.4, exact=True), noise_seed=1)
    other.setup("fit")
    assert not torch.equal(a.datasets["train"].targets, other.datasets["train"].targets)


def test_validation_labels_noisy_by_default_clean_on_request() -> None:
    noisy_val = digits().datasets["val"]
    assert (noisy_val.targets != noisy_val.clean_targets).any()
    clean_val = digits(clean_validation=True).datasets["val"]
    assert torch.equal(clean_val.targets, clean_val.clean_targets)
    test = digits().datasets["test"]
    assert torch.equal(test.targets, test.clean_targets)


def test_split_is_stratified_disjoint_and_seeded() -> None:
    labels = np.repeat(np.arange(4), [100, 50, 30, 20])
    kept, taken = stratified_split(labels, 0.1, seed=0)
    assert np.bincount(labels[taken]).tolist() == [10, 5, 3, 2]
    assert len(np.intersect1d(kept, taken)) == 0 and len(kept) + len(taken) == len(labels)
    assert np.array_equal(taken, stratified_split(labels, 0.1, seed=0)[1])


def test_train_subset_keeps_the_requested_size() -> None:
    dm = BlobsDataModule(num_samples=1000, train_subset=300)
    dm.setup("fit")
    assert len(dm.datasets["train"]) == 300


def test_labels_file_from_inject_lines_up_with_the_full_training_split(tmp_path) -> None:
    """A labels.npy indexes the full training split (before the validation split)."""
    ref = digits()
    path = tmp_path / "labels.npy"
    atomic_save_npy(path, ref.noisy.noisy)
    dm = DigitsDataModule(noise=LabelsFile(path=str(path)))
    dm.setup("fit")
    assert torch.equal(dm.datasets["train"].targets, ref.datasets["train"].targets)
    assert torch.equal(dm.datasets["val"].targets, ref.datasets["val"].targets)


def test_labels_file_of_the_wrong_length_is_a_one_line_error(tmp_path) -> None:
    path = tmp_path / "short.npy"
    atomic_save_npy(path, np.zeros(10, dtype=np.int64))
    with pytest.raises(InputError, match=r"short\.npy") as err:
        DigitsDataModule(noise=LabelsFile(path=str(path))).setup("fit")
    assert "\n" not in str(err.value)


def test_sampler_order_depends_only_on_seed_and_epoch() -> None:
    sampler = EpochBatchSampler(100, 32, shuffle=True, seed=3)
    sampler.set_epoch(2)
    first = list(sampler)
    sampler.set_epoch(0)
    other_epoch = list(sampler)
    fresh = EpochBatchSampler(100, 32, shuffle=True, seed=3)
    fresh.set_epoch(2)
    assert first == list(fresh) and first != other_epoch
    assert len(first) == len(sampler) == 4 and sorted(i for batch in first for i in batch) == list(range(100))


def test_random_crop_is_a_shifted_window_of_the_zero_padded_image() -> None:
    torch.manual_seed(0)
    images = torch.arange(2 * 3 * 6 * 6, dtype=torch.float32).view(2, 3, 6, 6) + 1
    out = random_crop(images, 2)
    assert out.shape == images.shape
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2))
    for b in range(2):
        windows = [padded[b, :, i : i + 6, j : j + 6] for i in range(5) for j in range(5)]
        assert any(torch.equal(out[b], w) for w in windows)


def test_hflip_flips_some_images_and_keeps_the_rest() -> None:
    torch.manual_seed(0)
    images = torch.randn(64, 1, 4, 4)
    out = random_hflip(images)
    flipped = [torch.equal(o, i.flip(-1)) for o, i in zip(out, images, strict=True)]
    kept = [torch.equal(o, i) for o, i in zip(out, images, strict=True)]
    assert all(f or k for f, k in zip(flipped, kept, strict=True)) and 10 < sum(flipped) < 54


def test_fake_mode_needs_no_files_and_keeps_shapes() -> None:
    from robustlabels.data import CIFAR10DataModule

    dm = CIFAR10DataModule(root="/nonexistent", fake=True)
    dm.setup("fit")
    assert dm.datasets["train"].inputs.shape[1:] == (3, 32, 32)


def test_missing_dataset_is_a_one_line_error() -> None:
    from robustlabels.data import CIFAR10DataModule

    with pytest.raises(InputError, match="cifar10") as err:
        CIFAR10DataModule(root="/nonexistent").setup("fit")
    assert "\n" not in str(err.value)
