"""Preference pairs as data: the readers' formats and errors, the pair encoding, IMDB-Pref and the data modules."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from robustlabels.data.pairs import (
    HHRLHFDataModule,
    IMDBPrefDataModule,
    PairDataModule,
    Reviews,
    imdb_pref_pairs,
    orient,
    read_imdb_reviews,
    read_pair_array,
    read_pairs,
)
from robustlabels.errors import InputError
from robustlabels.noise import DifficultySwapNoise, SymmetricNoise, SystematicAnnotatorNoise

SHARED_IMDB = Path(__file__).resolve().parents[3] / "shared" / "data" / "imdb"


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def dialogue(prompt: str, answer: str) -> str:
    return f"\n\nHuman: {prompt}\n\nAssistant: {answer}"


def test_reads_prompt_chosen_rejected_and_message_lists(tmp_path: Path) -> None:
    rows = [
        {"prompt": "p0", "chosen": "good", "rejected": "bad", "score_chosen": 8, "score_rejected": 3},
        {"prompt": "p1", "chosen": [{"role": "user", "content": "p1"}, {"role": "assistant", "content": "yes"}],
         "rejected": [{"role": "user", "content": "p1"}, {"role": "assistant", "content": "no"}],
         "score_chosen": 5, "score_rejected": 4.5},
    ]  # fmt: skip
    pairs = read_pairs(write_jsonl(tmp_path / "uf.jsonl", rows))
    assert pairs.prompts == ["p0", "p1"] and pairs.chosen == ["good", "yes"] and pairs.rejected == ["bad", "no"]
    assert pairs.reward_gap is not None and pairs.reward_gap.tolist() == [5.0, 0.5]
    assert pairs.length_gap().tolist() == [1.0, 1.0]


def test_hh_dialogues_split_at_the_last_assistant_turn(tmp_path: Path) -> None:
    prompt = "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: help me"
    rows = [{"chosen": prompt + "\n\nAssistant: sure", "rejected": prompt + "\n\nAssistant: no way"}]
    path = tmp_path / "hh.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write(json.dumps(rows[0]) + "\n")
    pairs = read_pairs(path)
    assert pairs.prompts == [prompt + "\n\nAssistant:"] and pairs.chosen == ["sure"] and pairs.rejected == ["no way"]
    assert pairs.reward_gap is None


def test_csv_pairs(tmp_path: Path) -> None:
    path = tmp_path / "pairs.csv"
    path.write_text('prompt,chosen,rejected\nq,"a, long answer",short\n', encoding="utf-8")
    pairs = read_pairs(path)
    assert pairs.chosen == ["a, long answer"] and pairs.rejected == ["short"] and pairs.prompts == ["q"]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"prompt": "p", "chosen": "same", "rejected": "same"}, "line 2: the chosen and rejected responses are"),
        ({"prompt": "p", "chosen": "a"}, "line 2: missing field 'rejected'"),
        ({"chosen": dialogue("x", "a"), "rejected": dialogue("y", "b")}, "line 2: the prompt differs between"),
        ({"chosen": "no turns", "rejected": "at all"}, "line 2: a dialogue without prompt has no 'Assistant:'"),
        ({"prompt": "p", "chosen": 3, "rejected": "b"}, "line 2: field 'chosen' must be a string or a list"),
        ({"prompt": "p", "chosen": "a", "rejected": "b", "score_chosen": "x", "score_rejected": 1},
         "line 2: field 'score_chosen' must be a number"),
    ],
)  # fmt: skip
def test_bad_pairs_are_one_line_errors_naming_file_and_line(tmp_path: Path, row: dict, message: str) -> None:
    path = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "ok", "chosen": "a", "rejected": "b"}, row])
    with pytest.raises(InputError, match=message) as err:
        read_pairs(path)
    assert "bad.jsonl" in str(err.value) and "\n" not in str(err.value)


def test_pair_arrays_must_be_n_2_d(tmp_path: Path) -> None:
    np.save(tmp_path / "ok.npy", np.ones((4, 2, 3), np.float64))
    assert read_pair_array(tmp_path / "ok.npy").dtype == np.float32
    np.save(tmp_path / "flat.npy", np.ones((4, 6)))
    with pytest.raises(InputError, match=r"flat.npy' must hold an array shaped \(N, 2, D\); got \(4, 6\)"):
        read_pair_array(tmp_path / "flat.npy")


def test_orient_puts_the_chosen_side_where_the_target_says_and_is_balanced() -> None:
    chosen, rejected = np.arange(2000.0).reshape(1000, 2), -np.arange(2000.0).reshape(1000, 2) - 1
    inputs, targets = orient(chosen, rejected, seed=3)
    assert inputs.shape == (1000, 2, 2) and 420 < targets.sum() < 580
    rows = np.arange(1000)
    assert np.array_equal(inputs[rows, targets], chosen) and np.array_equal(inputs[rows, 1 - targets], rejected)
    _, targets_again = orient(chosen, rejected, seed=3)
    assert np.array_equal(targets, targets_again)
    assert not np.array_equal(targets, orient(chosen, rejected, seed=4)[1])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_side_order_and_noise_draws_are_independent(seed: int) -> None:
    """Seeding the side order and the noise alike must not correlate them (the realised rate stays near η)."""
    _, targets = orient(np.zeros((20_000, 1)), np.ones((20_000, 1)), seed=seed)
    rate = SymmetricNoise(0.2).apply(targets, num_classes=2, seed=seed).realized_rate
    assert abs(rate - 0.2) < 0.015


def pairs_module(tmp_path: Path, rows: int = 60, **kwargs) -> PairDataModule:
    rng = np.random.default_rng(0)
    words = ["great", "awful", "fine", "superb", "dull", "ok"]
    data = [{"prompt": f"q{i}", "chosen": " ".join(rng.choice(words, 6)) + f" good{i}",
             "rejected": " ".join(rng.choice(words, 3)) + f" bad{i}", "score_chosen": 2 + i % 3, "score_rejected": 1}
            for i in range(rows)]  # fmt: skip
    train = write_jsonl(tmp_path / "train.jsonl", data)
    test = write_jsonl(tmp_path / "test.jsonl", data[:20])
    return PairDataModule(str(train), str(test), features="tfidf", batch_size=16, **kwargs)


def test_pair_module_serves_pairs_and_swaps_are_label_flips(tmp_path: Path) -> None:
    dm = pairs_module(tmp_path, noise=SymmetricNoise(0.3), noise_seed=5, val_fraction=0.2)
    dm.setup()
    train = dm.datasets["train"]
    assert dm.input_shape == train.inputs.shape[1:] and train.inputs.shape[1] == 2 and dm.num_classes == 2
    swapped = train.targets != train.clean_targets
    assert 0 < swapped.float().mean() < 0.6 and dm.has_validation_split() is False
    batch = next(iter(dm.train_dataloader()))
    assert batch.inputs.shape[1:] == train.inputs.shape[1:] and set(batch.targets.tolist()) <= {0, 1}


def test_pair_noise_models_read_the_module_covariates(tmp_path: Path) -> None:
    dm = pairs_module(tmp_path, noise=SystematicAnnotatorNoise("longer"), val_fraction=0.0, clean_validation=True,
                      val=None)  # fmt: skip
    dm.files["val"] = dm.files["test"]
    dm.setup()  # every chosen response is longer: the length annotator agrees with the truth everywhere
    assert dm.noisy is not None and dm.noisy.realized_rate == 0.0
    shorter = pairs_module(tmp_path, noise=SystematicAnnotatorNoise("shorter", fraction=0.5), val_fraction=0.25)
    shorter.setup()
    assert shorter.noisy is not None and 0.3 < shorter.noisy.realized_rate < 0.7
    gap = pairs_module(tmp_path, noise=DifficultySwapNoise(0.3), val_fraction=0.25)
    gap.setup()
    assert gap.noisy is not None and 0.1 < gap.noisy.realized_rate < 0.5


def test_pair_module_errors(tmp_path: Path) -> None:
    dm = pairs_module(tmp_path, noise=DifficultySwapNoise(0.2), val_fraction=0.2)
    np.save(tmp_path / "feats.npy", np.ones((10, 2, 3)))
    arrays = PairDataModule(str(tmp_path / "feats.npy"), str(tmp_path / "feats.npy"), noise=DifficultySwapNoise(0.2))
    with pytest.raises(InputError, match="DifficultySwapNoise needs the pairs' 'reward_gap', which PairDataModule"):
        arrays.setup()
    dm.setup()  # the jsonl has scores: fine
    with pytest.raises(InputError, match="needs `test`"):
        PairDataModule(str(tmp_path / "train.jsonl")).setup()


# ---- IMDB-Pref --------------------------------------------------------------------------------------------
def write_acl_imdb(root: Path) -> Path:
    """A tiny aclImdb/test: 6 movies, reviews with ratings; urls_{pos,neg}.txt line k = the movie of review k."""
    test = root / "aclImdb" / "test"
    urls: dict[str, list[str]] = {"pos": [], "neg": []}
    rng = np.random.default_rng(0)
    for movie in range(6):
        for k in range(4):
            rating = int(rng.choice([1, 2, 3, 4, 7, 8, 9, 10]))
            polarity = "pos" if rating >= 7 else "neg"
            review_id = len(urls[polarity])
            urls[polarity].append(f"http://www.imdb.com/title/tt{movie:07d}/usercomments")
            (test / polarity).mkdir(parents=True, exist_ok=True)
            (test / polarity / f"{review_id}_{rating}.txt").write_text(f"movie {movie} review {k} stars {rating}")
    for polarity, lines in urls.items():
        (test / f"urls_{polarity}.txt").write_text("\n".join(lines) + "\n")
    return root


def test_reads_the_upstream_acl_imdb_layout(tmp_path: Path) -> None:
    reviews = read_imdb_reviews(str(write_acl_imdb(tmp_path)))
    assert len(reviews.texts) == 24 and len(set(reviews.movies)) == 6
    for text, rating, movie in zip(reviews.texts, reviews.ratings, reviews.movies, strict=True):
        assert text.endswith(f"stars {rating}") and movie.endswith(f"tt{int(text.split()[1]):07d}")


def test_imdb_pref_pairs_are_same_movie_different_ratings_and_movie_disjoint() -> None:
    rng = np.random.default_rng(1)
    movies = [f"m{i // 5}" for i in range(200)]
    reviews = Reviews([f"r{i}" for i in range(200)], rng.integers(1, 11, 200), movies, "test")
    splits = imdb_pref_pairs(reviews, max_pairs_per_movie=4, seed=0)
    seen: dict[str, set[str]] = {}
    for split, ix in splits.items():
        assert len(ix) > 0
        assert all(reviews.movies[a] == reviews.movies[b] for a, b in ix)
        assert (reviews.ratings[ix[:, 0]] > reviews.ratings[ix[:, 1]]).all()
        per_movie = np.unique([reviews.movies[a] for a in ix[:, 0]], return_counts=True)[1]
        assert per_movie.max() <= 4
        seen[split] = {reviews.movies[a] for a in ix[:, 0]}
    assert not (seen["train"] & seen["test"]) and not (seen["train"] & seen["val"]) and not (seen["val"] & seen["test"])
    assert abs(len(seen["train"]) / 40 - 0.7) < 0.1
    again = imdb_pref_pairs(reviews, max_pairs_per_movie=4, seed=0)
    assert all(np.array_equal(splits[s], again[s]) for s in splits)


def test_imdb_pref_module_on_the_upstream_layout_with_rating_gap_noise(tmp_path: Path) -> None:
    dm = IMDBPrefDataModule(str(write_acl_imdb(tmp_path)), features="tfidf", noise=DifficultySwapNoise(0.3),
                            batch_size=8)  # fmt: skip
    dm.setup()
    assert dm.has_validation_split() and set(dm.datasets) == {"train", "val", "test"}
    gaps = dm.reward_gaps("test")
    assert len(gaps) == len(dm.datasets["test"]) and (gaps >= 1).all()
    assert dm.noisy is not None and dm.noisy.realized_rate > 0


def test_imdb_pref_reads_and_embeds_once_per_process_until_the_reviews_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reused suite worker fits many cells: the reviews are read and embedded once, again after they change."""
    from robustlabels.data import pairs

    embedded: list[int] = []

    def fake_encode(texts: list[str], **_: object) -> np.ndarray:
        embedded.append(len(texts))
        return np.stack([[len(t), t.count("1"), hash(t) % 7] for t in texts]).astype(np.float32)

    monkeypatch.setattr(pairs.text_features, "encode_texts", fake_encode)
    root = write_acl_imdb(tmp_path)

    def served() -> dict[str, np.ndarray]:
        dm = IMDBPrefDataModule(str(root), noise=SymmetricNoise(0.2), batch_size=8)
        dm.setup()
        return {split: ds.inputs.numpy() for split, ds in dm.datasets.items()}

    first, second = served(), served()
    assert embedded == [24] and all(np.array_equal(first[s], second[s]) for s in first)
    review = next((root / "aclImdb" / "test" / "pos").glob("*.txt"))
    review.write_text(review.read_text() + " and more")
    served()
    assert embedded == [24, 24]


@pytest.mark.skipif(not SHARED_IMDB.is_dir(), reason="the shared IMDB data is not next to this checkout")
def test_imdb_pref_from_the_shared_data_matches_the_documented_counts() -> None:
    reviews = read_imdb_reviews(str(SHARED_IMDB))
    assert len(reviews.texts) == 25_000 and len(set(reviews.movies)) == 3_569
    assert sum(n >= 2 for n in np.unique(reviews.movies, return_counts=True)[1]) == 2_853
    sizes = {split: len(ix) for split, ix in imdb_pref_pairs(reviews).items()}
    assert sizes == {"train": 30_108, "val": 4_259, "test": 8_854}  # docs/pairs.md
    # the research note's split (another permutation of the same protocol) gave 30,039 / 4,616 / 8,566
    assert all(abs(sizes[s] / n - 1) < 0.1 for s, n in {"train": 30_039, "val": 4_616, "test": 8_566}.items())


def test_hh_module_splits_dialogues_into_train_and_test(tmp_path: Path) -> None:
    rows = [{"chosen": dialogue(f"q {i}", f"helpful answer {i}"), "rejected": dialogue(f"q {i}", f"no {i}")}
            for i in range(50)]  # fmt: skip
    dm = HHRLHFDataModule(str(write_jsonl(tmp_path / "hh.jsonl", rows)), features="tfidf", test_fraction=0.2)
    dm.setup()
    assert len(dm.datasets["test"]) == 10 and len(dm.datasets["train"]) + len(dm.datasets["val"]) == 40
    assert dm.pairs["train"].prompts[0].endswith("\n\nAssistant:") and dm.noisy is not None
    assert dm.noisy.realized_rate == 0.0  # human labels as given: no synthetic noise unless asked


def test_accuracy_by_reward_gap_callback(tmp_path: Path, quiet_trainer: dict) -> None:
    import pytorch_lightning as pl

    from robustlabels.callbacks import AccuracyByRewardGap
    from robustlabels.module import RobustModule
    from robustlabels.strategies import BradleyTerry

    dm = pairs_module(tmp_path, val_fraction=0.2)
    module = RobustModule(BradleyTerry(), backbone="pairwise", backbone_kwargs={"hidden": 8}, num_classes=2,
                          input_shape=dm.input_shape)  # fmt: skip
    callback = AccuracyByRewardGap()
    pl.Trainer(max_epochs=3, callbacks=[callback], **quiet_trainer).fit(module, datamodule=dm)
    assert callback.result is not None
    by_gap = callback.result["by_gap"]
    assert set(by_gap) == {"1", "2", "3"} and sum(v["pairs"] for v in by_gap.values()) == 20
    overall = sum(v["pairs"] * v["accuracy"] for v in by_gap.values()) / 20
    assert overall == pytest.approx(callback.result["overall"]["accuracy"])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"prompt": "p", "chosen": "a"}\n', "line 1: missing field 'rejected'"),
        ('{"prompt": "p", "chosen": "a", "rejected": "a"}\n', "line 1: the chosen and rejected responses are"),
        (json.dumps({"chosen": dialogue("x", "a"), "rejected": dialogue("y", "b")}) + "\n",
         "line 1: the prompt differs between the chosen and the rejected side"),
        ("NPY", "must hold an array shaped (N, 2, D); got (5, 4)"),
    ],
)  # fmt: skip
def test_fit_on_bad_pairs_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str,
                                                message: str) -> None:  # fmt: skip
    from robustlabels.fit import main

    if content == "NPY":
        path = tmp_path / "bad.npy"
        np.save(path, np.ones((5, 4)))
    else:
        path = tmp_path / "bad.jsonl"
        path.write_text(content, encoding="utf-8")
    config = tmp_path / "pairs.yaml"
    config.write_text(json.dumps({
        "trainer": {"logger": False, "fast_dev_run": True},
        "model": {"backbone": "pairwise", "strategy": {"class_path": "BradleyTerry"}},
        "data": {"class_path": "PairDataModule", "init_args": {"train": str(path), "test": str(path),
                                                               "features": "tfidf"}},
    }))  # fmt: skip
    assert main(["--config", str(config)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and "bad." in err[0]


def test_inconsistent_pairs_can_be_left_out_with_a_warning(tmp_path: Path) -> None:
    rows = [{"chosen": dialogue("a", "yes"), "rejected": dialogue("a", "no")},
            {"chosen": dialogue("a", "yes"), "rejected": dialogue("b", "no")},
            {"chosen": dialogue("c", "same"), "rejected": dialogue("c", "same")}]  # fmt: skip
    path = write_jsonl(tmp_path / "hh.jsonl", rows)
    with pytest.warns(UserWarning, match=r"left out 2 pairs .*\(lines 2, 3\)"):
        pairs = read_pairs(path, skip_inconsistent=True)
    assert pairs.chosen == ["yes"]
    with pytest.raises(InputError, match="line 2: the prompt differs"):
        read_pairs(path)
