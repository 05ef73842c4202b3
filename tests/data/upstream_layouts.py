"""Tiny copies of the real-noise datasets in their upstream layouts (a few small JPEGs per class), for the wrapper
tests. Each writer returns ``{split: count}`` of what it wrote."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_image(path: Path, seed: int, size: tuple[int, int] = (12, 9)) -> Path:
    """A random ``size`` (W, H) RGB JPEG at ``path``."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format="JPEG")
    return path


def write_lines(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines))
    return path


def write_clothing1m(root: Path) -> dict[str, int]:
    """14 classes: 28 noisy training images (the first 7 also clean-labelled, 2 of those wrongly labelled), 14 clean
    training, 14 validation and 14 test images."""
    def key(i: int) -> str:
        return f"images/{i % 10}/{i % 100:02d}/{1000 + i}.jpg"

    noisy, clean, lists = [], [], {}
    for split, start, count in (("noisy_train", 0, 28), ("clean_train", 100, 14), ("clean_val", 200, 14),
                                ("clean_test", 300, 14)):  # fmt: skip
        keys = [key(start + i) for i in range(count)]
        lists[split] = keys
        for i, k in enumerate(keys):
            write_image(root / k, start + i)
            label = i % 14
            if split == "noisy_train":
                noisy.append(f"{k} {label}")
                if i < 7:
                    clean.append(f"{k} {(label + 1) % 14 if i < 2 else label}")
            else:
                clean.append(f"{k} {label}")
    write_lines(root / "noisy_label_kv.txt", [*noisy, f"{key(999)} 3"])  # the kv file lists more than the split
    write_lines(root / "clean_label_kv.txt", clean)
    for split, keys in lists.items():
        write_lines(root / f"{split}_key_list.txt", keys)
    return {"train": 28, "val": 14, "test": 14}


def write_animal10n(root: Path) -> dict[str, int]:
    """``training/{label}_{id}.jpg`` (2 per class) and ``testing/`` (1 per class), 64×64 JPEGs."""
    for c in range(10):
        for i in range(2):
            write_image(root / "training" / f"{c}_{c * 10 + i:05d}.jpg", c * 10 + i, size=(64, 64))
        write_image(root / "testing" / f"{c}_{900 + c:05d}.jpg", 900 + c, size=(64, 64))
    return {"train": 20, "test": 10}


def write_webvision(root: Path) -> dict[str, int]:
    """Five classes in the lists (3 kept with ``num_classes: 3``): 2 Google images, 1 validation image and 1 ImageNet
    validation image (DivideMix's ``imagenet/val/<label>/``) per class."""
    train, val = [], []
    for c in range(5):
        for i in range(2):
            name = f"google/q{c:04d}/{c}{i}.jpg"
            write_image(root / name, c * 10 + i)
            train.append(f"{name} {c}")
        write_image(root / "val_images_256" / f"val{c:06d}.jpg", 100 + c)
        val.append(f"val{c:06d}.jpg {c}")
        write_image(root / "imagenet" / "val" / str(c) / f"ILSVRC2012_val_{c:08d}.JPEG", 200 + c)
    write_lines(root / "info" / "train_filelist_google.txt", train)
    write_lines(root / "info" / "val_filelist.txt", val)
    return {"train": 6, "val": 3, "test": 3}


def write_food101n(root: Path) -> dict[str, int]:
    """Three classes: 3 Food-101N images each (2 verified: one right, one wrong) and 2 Food-101 test images each."""
    classes = ["apple_pie", "baklava", "churros"]
    release, food101 = root / "Food-101N_release", root / "food-101"
    keys, verified, test = [], [], []
    for c, name in enumerate(classes):
        for i in range(3):
            k = f"{name}/{c}{i}abc.jpg"
            write_image(release / "images" / k, c * 10 + i)
            keys.append(k)
            if i < 2:
                verified.append(f"{k}\t{1 - i}")
        for i in range(2):
            write_image(food101 / "images" / name / f"{500 + 10 * c + i}.jpg", 500 + 10 * c + i)
            test.append(f"{name}/{500 + 10 * c + i}")
    write_lines(release / "meta" / "classes.txt", ["class_name", *classes])
    write_lines(release / "meta" / "imagelist.tsv", ["class_name/key", *keys])
    write_lines(release / "meta" / "verified_train.tsv", ["class_name/key\tverification_label", *verified[:4]])
    write_lines(release / "meta" / "verified_val.tsv", ["class_name/key\tverification_label", *verified[4:]])
    write_lines(food101 / "meta" / "classes.txt", classes)
    write_lines(food101 / "meta" / "test.txt", test)
    return {"train": 9, "test": 6}


def write_cnwl(root: Path) -> dict[str, int]:
    """Three classes, 4 training images each: at noise level 0.4 the last one of each class is a web image (its label
    wrong); ``red_noise_nl_0.0`` lists the clean mini-ImageNet images; 2 validation images per class."""
    clean, noisy, val = [], [], []
    for c in range(3):
        for i in range(4):
            name = f"n0{c:07d}{i + 1:08d}.jpg"
            write_image(root / "all_images" / name, c * 10 + i)
            clean.append(f"{name} {c}")
            if i < 3:
                noisy.append(f"{name} {c}")
        web = f"{c:04x}beefcafe{c:04x}.jpg"
        write_image(root / "all_images" / web, 50 + c)
        noisy.append(f"{web} {c}")
        for i in range(2):
            name = f"ILSVRC2012_val_{c * 10 + i:08d}.jpg"
            write_image(root / "validation" / str(c) / name, 80 + c * 10 + i)
            val.append(f"{name} {c}")
    write_lines(root / "split" / "red_noise_nl_0.0", clean)
    write_lines(root / "split" / "red_noise_nl_0.4", noisy)
    write_lines(root / "split" / "clean_validation", val)
    return {"train": 12, "test": 6}
