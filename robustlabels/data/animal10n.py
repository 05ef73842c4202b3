"""ANIMAL-10N: 55,000 64×64 images of five pairs of look-alike animals, labelled by people (about 8 % wrong), read
lazily from the release's ``training/`` and ``testing/`` folders.

Reference: Song et al., "SELFIE: Refurbishing Unclean Samples for Robust Deep Learning", ICML 2019; the layout and
class order of dm.kaist.ac.kr/datasets/animal-10n.
"""

from __future__ import annotations

from pathlib import Path

from robustlabels.data.lazy import ImageList, LazyImageDataModule, parse_label, require

ANIMAL10N_CLASSES = ("cat", "lynx", "wolf", "coyote", "cheetah", "jaguar", "chimpanzee", "orangutan", "hamster",
                     "guinea pig")  # fmt: skip
ANIMAL10N_SOURCE = "ANIMAL-10N is at dm.kaist.ac.kr/datasets/animal-10n (training/ and testing/ go in the root)"


def read_animal10n_folder(folder: Path) -> ImageList:
    """The images of ``training/`` or ``testing/``, sorted by name, labelled by their ``{label}_{id}.jpg`` names."""
    require(folder, dataset="ANIMAL-10N", source=ANIMAL10N_SOURCE)
    files = sorted(f for f in folder.iterdir() if f.suffix.lower() in (".jpg", ".jpeg", ".png"))
    labels = [parse_label(f.name.split("_")[0], folder, i + 1, len(ANIMAL10N_CLASSES)) for i, f in enumerate(files)]
    return ImageList.of([str(f) for f in files], labels)


def read_animal10n(root: Path) -> dict[str, ImageList]:
    """``{"train": training/ (human labels, no true labels), "test": testing/ (labels taken as true)}``; the test
    images were chosen among those whose label matches their search keyword, so their labels count as clean."""
    train, test = read_animal10n_folder(root / "training"), read_animal10n_folder(root / "testing")
    return {"train": train, "test": ImageList.clean(list(test.files), test.labels)}


class Animal10NDataModule(LazyImageDataModule):
    """ANIMAL-10N from ``root/training/*.jpg`` (50,000) and ``root/testing/*.jpg`` (5,000), file names
    ``{label}_{id}.jpg`` with labels 0-9 in :data:`ANIMAL10N_CLASSES`' order.

    The images are 64×64 already: decoded at 64, trained with a random crop (padding 4) and flip, ImageNet statistics.
    Validation: a share of the training images (``val_fraction``), noisy like them (no true training labels exist).
    """

    data_name, title, source = "animal10n", "ANIMAL-10N", ANIMAL10N_SOURCE
    num_classes = len(ANIMAL10N_CLASSES)
    class_names = ANIMAL10N_CLASSES
    known_counts = {"train": 50_000, "test": 5_000}  # noqa: RUF012  # the ANIMAL-10N page
    default_image_size = default_decode_size = 64

    def read_lists(self, root: Path) -> dict[str, ImageList]:
        return read_animal10n(root)
