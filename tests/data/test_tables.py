"""Feature-table data modules: STORM's spam layout (generated and real), user tables as TF-IDF or MiniLM features,
the given clean validation split, STORM's label noise, and the spam fit configs end to end."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from robustlabels.cli import package_path
from robustlabels.data import FeatureTableDataModule, SpamDataModule
from robustlabels.data import tables as tables_module
from robustlabels.data.tables import SPAM_DIMS, read_text_table, spam_roots
from robustlabels.errors import InputError
from robustlabels.features import text as text_features
from robustlabels.nn.backbones import BACKBONES
from robustlabels.noise import SymmetricNoise
from tests.conftest import SHARED_DATA

SPAM = SHARED_DATA / "spam"
CONFIGS = package_path("configs") / "spam"
FAST = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false", "--trainer.accelerator=cpu"]
SIZES = {"train": 40, "valid": 10, "test": 12}
DIM = 7


# ---- a generated STORM layout ---------------------------------------------------------------------------
def write_tsv(path: Path, texts: list[str], labels: list[int]) -> None:
    rows = ["index\tsentence1\tlabel"] + [f"{i}\t{t}\t{y}" for i, (t, y) in enumerate(zip(texts, labels, strict=True))]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")


def write_storm_layout(root: Path, name: str = "youtube", **npz_changes: np.ndarray) -> Path:
    """``root/<name>/{train,valid,test}.tsv`` and ``tfidf.npz`` with random rows; returns ``root``."""
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    fields: dict[str, np.ndarray] = {}
    for split, n in SIZES.items():
        write_tsv(folder / f"{split}.tsv", [f'"{split}" comment {i} check out my channel' for i in range(n)],
                  [i % 2 for i in range(n)])  # fmt: skip
        fields[split] = rng.random((n, DIM), dtype=np.float32)
        fields[f"{split}_ids"] = np.arange(n)
    np.savez(folder / "tfidf.npz", **{**fields, **npz_changes})
    return root


@pytest.fixture
def storm_root(tmp_path: Path) -> Path:
    return write_storm_layout(tmp_path / "spam")


def test_storm_layout_is_served_with_its_own_clean_validation_split(storm_root: Path) -> None:
    dm = SpamDataModule("youtube", root=str(storm_root), noise=SymmetricNoise(rate=0.5), batch_size=8)
    assert dm.input_shape == (DIM,) and dm.num_classes == 2 and dm.has_validation_split()
    dm.setup("fit")
    features = np.load(storm_root / "youtube" / "tfidf.npz")
    train, val, test = (dm.datasets[s] for s in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (40, 10, 12)  # nothing carved out of train
    assert torch.equal(train.inputs, torch.from_numpy(features["train"]))
    assert torch.equal(val.inputs, torch.from_numpy(features["valid"]))
    assert (train.targets != train.clean_targets).any()  # the noise reaches the training labels ...
    expected = torch.arange(10) % 2
    assert torch.equal(val.targets, expected) and torch.equal(val.clean_targets, expected)  # ... never validation
    assert torch.equal(test.targets, test.clean_targets)
    assert dm.texts["val"][3] == '"valid" comment 3 check out my channel'  # tsv quotes are text, not quoting
    assert len(dm.noisy.noisy) == 40 and dm._splits is None  # released after setup; the tensors hold them


def test_a_given_validation_split_refuses_carving_or_noising_it(storm_root: Path) -> None:
    for option in ({"val_fraction": 0.1}, {"clean_validation": False}):
        dm = SpamDataModule("youtube", root=str(storm_root), **option)  # type: ignore[arg-type]
        with pytest.raises(InputError, match="ships its own clean validation split: set val_fraction: 0"):
            dm.setup("fit")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"train_ids": np.r_[np.arange(39), 41]},
         r"tfidf.npz': field train_ids differs from the index column of train.tsv at row 39: 41 vs 39"),
        ({"valid": np.zeros((10, DIM - 1), np.float32)},
         r"tfidf.npz': field 'valid' has 6 columns; field 'train' has 7"),
        ({"test": np.zeros((11, DIM), np.float32)}, r"tfidf.npz': field 'test' has 11 rows .* test.tsv has 12 rows"),
        ({"train": np.zeros(40, np.float32)}, r"tfidf.npz': field 'train' must be 2-D floats"),
    ],
    ids=["ids", "dims", "rows", "not-2d"],
)
def test_a_tfidf_that_does_not_match_the_tsv_is_a_one_line_error(
    tmp_path: Path, change: dict[str, np.ndarray], message: str
) -> None:
    root = write_storm_layout(tmp_path / "spam", **change)
    with pytest.raises(InputError, match=message) as err:
        SpamDataModule("youtube", root=str(root)).setup("fit")
    assert "\n" not in str(err.value)


def test_missing_files_name_the_file_and_where_to_get_it(storm_root: Path, tmp_path: Path) -> None:
    (storm_root / "youtube" / "tfidf.npz").unlink()
    with pytest.raises(InputError, match=r"spam dataset 'youtube': '.*youtube/tfidf.npz' not found; to get it: put"):
        SpamDataModule("youtube", root=str(storm_root)).setup("fit")
    with pytest.raises(InputError, match=r"spam dataset 'sms' not found; searched: .*nowhere/sms; to get it"):
        _ = SpamDataModule("sms", root=str(tmp_path / "nowhere")).input_shape
    write_tsv(storm_root / "youtube" / "valid.tsv", ["a", "b"], [0, 2])
    (storm_root / "youtube" / "tfidf.npz").touch()
    with pytest.raises(InputError, match=r"valid.tsv': label 2 out of range for 2 classes"):
        SpamDataModule("youtube", root=str(storm_root)).setup("fit")
    with pytest.raises(InputError, match="`name` must be one of youtube, sms"):
        SpamDataModule("imdb")  # type: ignore[arg-type]


def test_default_search_follows_the_environment_then_data_then_shared(
    storm_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ROBUSTLABELS_DATA", str(storm_root.parent))
    assert spam_roots() == [storm_root, tmp_path / "data" / "spam", tmp_path.parent / "shared" / "data" / "spam"]
    assert SpamDataModule("youtube").input_shape == (DIM,)


def test_fake_mode_needs_no_files_and_has_the_real_widths(tmp_path: Path) -> None:
    dm = SpamDataModule("sms", root=str(tmp_path), fake=True)
    dm.setup("fit")
    assert dm.input_shape == (SPAM_DIMS["sms"],) and dm.datasets["val"].inputs.shape[1] == 7694


# ---- the real data --------------------------------------------------------------------------------------
@pytest.mark.skipif(not SPAM.is_dir(), reason=f"the STORM spam data is not at {SPAM} (shared/data/spam)")
@pytest.mark.parametrize(("name", "sizes", "dim", "spam"), [("youtube", (1586, 120, 250), 3916, 831),
                                                           ("sms", (4502, 500, 500), 7694, 579)])  # fmt: skip
def test_the_shipped_spam_data(name: str, sizes: tuple[int, int, int], dim: int, spam: int) -> None:
    dm = SpamDataModule(name, root=str(SPAM))  # type: ignore[arg-type]
    dm.setup("fit")
    assert tuple(len(dm.datasets[s]) for s in ("train", "val", "test")) == sizes
    assert dm.input_shape == (dim,) == (SPAM_DIMS[name],) and dm.datasets["test"].inputs.dtype == torch.float32
    assert int(dm.datasets["train"].targets.sum()) == spam  # no noise asked for: the labels as shipped


# ---- STORM's noise --------------------------------------------------------------------------------------
def test_storm_noise_is_a_seeded_bernoulli_flip_per_label() -> None:
    """``SymmetricNoise(rate=r, include_true_class=False)`` on two classes flips each label with probability r."""
    labels, rate = np.arange(20_000) % 2, 0.3
    noise = SymmetricNoise(rate=rate, include_true_class=False, exact=False)
    draws = [noise.apply(labels, num_classes=2, seed=seed) for seed in range(20)]
    sd = np.sqrt(rate * (1 - rate) / len(labels))
    assert abs(draws[0].realized_rate - rate) < 3 * sd
    assert np.array_equal(draws[0].noisy[draws[0].is_flipped], 1 - labels[draws[0].is_flipped])  # 0 <-> 1
    counts = [int(d.is_flipped.sum()) for d in draws]
    assert 0.6 < np.std(counts, ddof=1) / np.sqrt(len(labels) * rate * (1 - rate)) < 1.4  # binomial spread
    assert np.array_equal(noise.apply(labels, num_classes=2, seed=0).noisy, draws[0].noisy)  # seeded
    exact = SymmetricNoise(rate=rate, include_true_class=False, exact=True).apply(labels[:1001], num_classes=2, seed=0)
    per_class = [int(exact.is_flipped[labels[:1001] == k].sum()) for k in (0, 1)]
    assert per_class == [round(rate * 501), round(rate * 500)] == [150, 150]


# ---- users' own tables ----------------------------------------------------------------------------------
WORDS = ("free prize click now", "see you at lunch", "win cash today", "meeting moved to noon")


def write_user_tables(folder: Path) -> dict[str, str]:
    """train.csv (RFC 4180 quoting), valid.jsonl.gz, test.tsv; texts cycle through :data:`WORDS`."""
    folder.mkdir(parents=True, exist_ok=True)
    train = ["text,label"] + [f'"{WORDS[i % 4]}, ""really""",{i % 2}' for i in range(60)]
    (folder / "train.csv").write_text("\n".join(train) + "\n")
    with gzip.open(folder / "valid.jsonl.gz", "wt") as f:
        f.writelines(json.dumps({"text": WORDS[i % 4], "label": i % 2}) + "\n" for i in range(8))
    write_tsv(folder / "test.tsv", [*(WORDS[i % 4] for i in range(9)), "zebra quokka"], [i % 2 for i in range(10)])
    return {name: str(folder / file) for name, file in (("train", "train.csv"), ("valid", "valid.jsonl.gz"),
                                                         ("test", "test.tsv"))}  # fmt: skip


def test_tfidf_is_fitted_on_the_training_texts_and_the_valid_file_is_the_clean_validation(tmp_path: Path) -> None:
    files = write_user_tables(tmp_path)
    dm = FeatureTableDataModule(**files, noise=SymmetricNoise(rate=0.4), max_features=8)
    assert dm.num_classes == 2 and dm.input_shape == (8,) and dm.has_validation_split()
    dm.setup("fit")
    train, val, test = (dm.datasets[s] for s in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (60, 8, 10) and train.inputs.dtype == torch.float32
    assert torch.equal(val.targets, torch.arange(8) % 2) and torch.equal(val.targets, val.clean_targets)
    assert (train.targets != train.clean_targets).any()
    assert float(test.inputs[-1].abs().sum()) == 0.0  # words never seen in training have no column
    assert torch.allclose(train.inputs.norm(dim=1), torch.ones(60))  # rows L2-normalised
    assert dm.texts["train"][0] == 'free prize click now, "really"'  # csv quoting undone


def test_without_a_valid_file_a_validation_split_is_carved(tmp_path: Path) -> None:
    files = write_user_tables(tmp_path)
    dm = FeatureTableDataModule(train=files["train"], test=files["test"], num_classes=3)
    dm.setup("fit")
    assert not dm.has_validation_split() and (len(dm.datasets["train"]), len(dm.datasets["val"])) == (54, 6)
    assert dm.num_classes == 3


def test_minilm_features_use_the_embedding_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def fake_encoder(model: str = text_features.DEFAULT_MODEL) -> text_features.Encoder:
        def encode(texts: list[str], batch_size: int) -> np.ndarray:
            calls.append(len(texts))
            return np.ones((len(texts), text_features.EMBEDDING_DIM), np.float32)

        return encode

    monkeypatch.setattr(text_features, "_load_encoder", fake_encoder)
    files = write_user_tables(tmp_path / "tables")
    for _ in range(2):
        dm = FeatureTableDataModule(**files, features="minilm", cache_dir=str(tmp_path / "cache"))
        assert dm.input_shape == (384,)
    assert calls == [60, 8, 10]  # the second module read the cache


def test_bad_tables_are_one_line_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = write_user_tables(tmp_path)
    bad = tmp_path / "bad.csv"
    bad.write_text("text,label\nhello,1\nworld,spam\n")
    with pytest.raises(InputError, match=r"bad.csv' line 3: 'label' must be an integer; got 'spam'"):
        read_text_table(bad)
    bad.write_text("body,label\nhello,1\n")
    with pytest.raises(InputError, match=r"bad.csv': no text column \(looked for sentence1, text; columns: body"):
        read_text_table(bad)
    with pytest.raises(InputError, match=r"bad.csv' line 2: missing column 'y'"):
        read_text_table(bad, text_column="body", label_column="y")
    with pytest.raises(InputError, match=r"unknown table format '.txt'; use .tsv, .csv, .jsonl"):
        read_text_table(tmp_path / "x.txt")
    with pytest.raises(InputError, match="table file not found"):
        FeatureTableDataModule(train=str(tmp_path / "none.csv"), test=files["test"]).setup("fit")
    with pytest.raises(InputError, match="FeatureTableDataModule needs a `test` file"):
        _ = FeatureTableDataModule(train=files["train"]).input_shape
    monkeypatch.setattr(tables_module, "MAX_DENSE_VALUES", 100)
    with pytest.raises(InputError, match=r"train.csv': a dense TF-IDF of 78 rows x 8 terms .* lower max_features"):
        FeatureTableDataModule(**files, max_features=8).setup("fit")


# ---- the model and the configs --------------------------------------------------------------------------
def test_mlp_of_depth_zero_is_exactly_a_linear_layer_on_the_features() -> None:
    mlp = BACKBONES.get("mlp")(input_shape=(5,), num_classes=2, depth=0)
    assert [type(m).__name__ for m in mlp.body] == ["Flatten"] and mlp.feature_dim == 5
    assert sum(p.numel() for p in mlp.parameters()) == 5 * 2 + 2
    x = torch.randn(4, 5)
    assert torch.equal(mlp.forward_features(x), x)
    assert torch.allclose(mlp(x), x @ mlp.head.weight.T + mlp.head.bias)


def fit(tmp_path: Path, config: str, *extra: str) -> dict:
    from robustlabels.fit import main

    args = ["--config", str(CONFIGS / config), "--trainer.max_epochs=1", f"--trainer.default_root_dir={tmp_path}",
            f"--trainer.logger.init_args.save_dir={tmp_path}", *FAST, *extra]  # fmt: skip
    assert main(args) == 0
    run = tmp_path / Path(config).stem / "version_0"
    return {"run": run, **json.loads((run / "metrics.json").read_text())}


@pytest.mark.skipif(not SPAM.is_dir(), reason=f"the STORM spam data is not at {SPAM} (shared/data/spam)")
def test_youtube_config_trains_and_saves_its_noise(tmp_path: Path) -> None:
    result = fit(tmp_path, "youtube_ce.yaml", f"--data.init_args.root={SPAM}")
    row = result["history"][-1]
    assert {"val/acc", "test/acc", "val/f1", "test/f1"} <= set(row) and row["test/acc"] > 0.5
    noise = json.loads((result["run"] / "noise.json").read_text())
    labels = np.load(result["run"] / "noisy_labels.npy")
    assert len(labels) == noise["num_samples"] == 1586 and noise["noise_seed"] == 42
    assert noise["params"] == {"rate": 0.3, "include_true_class": False, "exact": False}
    sd = np.sqrt(0.3 * 0.7 / 1586)
    assert abs(noise["realized_rate_train"] - 0.3) < 3 * sd


@pytest.mark.skipif(not SPAM.is_dir(), reason=f"the STORM spam data is not at {SPAM} (shared/data/spam)")
def test_sms_config_logs_the_f1_of_the_spam_class(tmp_path: Path) -> None:
    result = fit(tmp_path, "sms_ce.yaml", f"--data.init_args.root={SPAM}", "--data.init_args.noise_seed=3")
    assert {"val/f1", "val/f1_clean", "test/f1"} <= set(result["history"][-1])
    summary = result["summary"]
    assert 0.0 <= summary["test_f1_at_best_val_f1"] <= 1.0 and "best_val_f1" in summary


def test_a_user_table_trains_through_the_fit_cli(tmp_path: Path) -> None:
    """``input_shape`` (the TF-IDF width) reaches the model through the CLI's link, before ``setup``."""
    files = write_user_tables(tmp_path / "tables")
    result = fit(tmp_path, "youtube_ce.yaml", "--data=FeatureTableDataModule",
                 f"--data.init_args.train={files['train']}", f"--data.init_args.valid={files['valid']}",
                 f"--data.init_args.test={files['test']}", "--data.init_args.max_features=6")  # fmt: skip
    assert {"val/acc", "test/f1"} <= set(result["history"][-1])
    assert len(np.load(result["run"] / "noisy_labels.npy")) == 60
