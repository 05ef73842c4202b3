"""The ``python -m robustlabels.inject`` CLI: reproducible files, --force, and one-line user errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from robustlabels.inject import main
from robustlabels.io import atomic_save_npy, atomic_write_bytes, read_labels, sha256_of_array, sha256_of_file

OUTPUTS = ("labels.npy", "labels.csv", "manifest.json")
MANIFEST_KEYS = {
    "convention",
    "empirical_matrix",
    "exact",
    "flips_per_class",
    "labels_sha256",
    "noise",
    "num_classes",
    "num_flipped",
    "num_samples",
    "realized_rate",
    "robustlabels_version",
    "seed",
    "source",
    "source_labels_sha256",
    "transition_matrix",
}


@pytest.fixture
def clean_file(tmp_path: Path) -> Path:
    path = tmp_path / "clean.npy"
    np.save(path, np.random.default_rng(0).integers(0, 10, 2000))
    return path


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_round_trip_is_byte_identical_and_manifest_matches(
    tmp_path: Path, clean_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for out in ("a", "b"):
        argv = ["--labels", str(clean_file), "--noise", "symmetric", "--rate", "0.4", "--seed", "3"]
        code, stdout, _ = run_cli(capsys, *argv, "--out", str(tmp_path / out))
        assert code == 0 and "realized rate" in stdout
    for name in OUTPUTS:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    clean = np.load(clean_file)
    noisy = np.load(tmp_path / "a" / "labels.npy")
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert set(manifest) == MANIFEST_KEYS
    assert (tmp_path / "a" / "manifest.json").read_text().endswith("}\n")
    assert noisy.dtype == np.int64 and manifest["num_samples"] == clean.size == noisy.size
    assert manifest["realized_rate"] == pytest.approx(np.mean(noisy != clean), abs=0)
    assert manifest["num_flipped"] == int(np.sum(noisy != clean)) == sum(manifest["flips_per_class"])
    assert manifest["noise"] == {
        "name": "symmetric",
        "params": {"rate": 0.4, "include_true_class": False, "exact": False},
    }
    assert manifest["labels_sha256"] == sha256_of_array(noisy)
    assert manifest["source_labels_sha256"] == sha256_of_array(clean.astype(np.int64))
    assert manifest["convention"] == "T[i, j] = P(noisy=j | true=i)"
    assert manifest["source"]["labels_file"] == str(clean_file.resolve())
    np.testing.assert_array_equal(read_labels(tmp_path / "a" / "labels.csv"), noisy)
    assert (tmp_path / "a" / "labels.csv").read_text().startswith("index,label\n0,")


def test_force_is_needed_to_overwrite(
    tmp_path: Path, clean_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "--labels",
        str(clean_file),
        "--noise",
        "pairflip",
        "--rate",
        "0.45",
        "--out",
        str(tmp_path / "o"),
    ]
    assert run_cli(capsys, *argv)[0] == 0
    before = (tmp_path / "o" / "labels.npy").read_bytes()
    code, _, err = run_cli(capsys, *argv, "--seed", "9")
    assert code == 2 and err.count("\n") == 1 and "labels.npy" in err and "--force" in err
    assert (tmp_path / "o" / "labels.npy").read_bytes() == before
    assert run_cli(capsys, *argv, "--seed", "9", "--force")[0] == 0
    assert (tmp_path / "o" / "labels.npy").read_bytes() != before


def test_json_format_and_exact_counts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    labels = tmp_path / "clean.csv"
    labels.write_text("index,label\n" + "".join(f"{i},{i % 10}\n" for i in range(1000)))
    argv = ["--labels", str(labels), "--noise", "cifar10_asym", "--rate", "0.4", "--out", str(tmp_path / "o")]
    code, stdout, _ = run_cli(capsys, *argv, "--format", "json")
    summary = json.loads(stdout)
    assert code == 0 and summary["realized_rate"] == pytest.approx(0.2) and summary["num_flipped"] == 200
    manifest = json.loads(Path(summary["manifest"]).read_text())
    assert manifest["exact"] is True and manifest["flips_per_class"] == [0, 0, 40, 40, 40, 40, 0, 0, 0, 40]


def test_cifar10_asym_elr_is_elrs_realised_variant(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    labels = tmp_path / "clean.npy"
    np.save(labels, np.arange(1000) % 10)
    argv = ["--labels", str(labels), "--noise", "cifar10_asym_elr", "--rate", "0.4", "--out", str(tmp_path / "o")]
    code, stdout, _ = run_cli(capsys, *argv, "--format", "json")
    manifest = json.loads(Path(json.loads(stdout)["manifest"]).read_text())
    assert code == 0 and manifest["noise"]["params"] == {"rate": 0.4, "exact": True, "variant": "elr_realised"}
    flips = manifest["flips_per_class"]  # 100 per class: cat 40 -> dog, then 56 of the 140 "dogs" -> cat
    assert flips[2] == flips[4] == flips[9] == 40 and flips[5] - flips[3] == 16
    assert manifest["transition_matrix"][3][5] == pytest.approx(0.24)


def test_instance_noise_with_features_file(
    tmp_path: Path, clean_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    features = tmp_path / "x.npy"
    np.save(features, np.random.default_rng(1).integers(0, 256, (2000, 4, 4), dtype=np.uint8))
    argv = ["--labels", str(clean_file), "--noise", "instance", "--rate", "0.3", "--out", str(tmp_path / "o")]
    assert run_cli(capsys, *argv)[0] == 2  # needs --features
    code, _, err = run_cli(capsys, *argv, "--features", str(features))
    assert code == 0, err
    manifest = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert manifest["transition_matrix"] is None and manifest["exact"] is None
    assert 0.2 < manifest["realized_rate"] < 0.4


def test_matrix_noise_and_source_file_unchanged(
    tmp_path: Path, clean_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    matrix = tmp_path / "t.npy"
    np.save(matrix, np.full((10, 10), 0.1))
    before = sha256_of_file(clean_file)
    argv = ["--labels", str(clean_file), "--noise", "matrix", "--matrix", str(matrix), "--out", str(tmp_path)]
    code, _, err = run_cli(capsys, *argv)
    assert code == 0, err
    assert sha256_of_file(clean_file) == before
    assert json.loads((tmp_path / "manifest.json").read_text())["noise"]["params"]["matrix"] == str(matrix)


def test_refuses_to_overwrite_its_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "labels.npy"
    np.save(source, np.arange(50) % 5)
    before = sha256_of_file(source)
    argv = [
        "--labels",
        str(source),
        "--noise",
        "symmetric",
        "--rate",
        "0.2",
        "--out",
        str(tmp_path),
        "--force",
    ]
    code, _, err = run_cli(capsys, *argv)
    assert code == 2 and "would overwrite an input file" in err
    assert sha256_of_file(source) == before


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--noise", "symmetric", "--rate", "1.5"], "`rate` must be in [0, 1]; got 1.5"),
        (["--noise", "symmetric", "--rate", "0.2", "--num-classes", "5"], "is outside [0, 5)"),
        (["--noise", "symmetric"], "--noise symmetric needs --rate"),
        (["--noise", "matrix", "--matrix", "BAD"], "bad.csv' row 0 sums to 0.9, not 1"),
        (["--noise", "matrix", "--matrix", "missing.npy"], "matrix file not found"),
        (["--noise", "cifar100_block", "--rate", "0.2"], "needs num_classes == 100; got 10"),
    ],
)
def test_user_errors_exit_2_with_one_line(
    tmp_path: Path, clean_file: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(",".join(["0.1"] * 10) for _ in range(10)).replace("0.1", "0.0", 1) + "\n")
    extra = [str(bad) if item == "BAD" else item for item in extra]
    before = sha256_of_file(clean_file)
    code, stdout, err = run_cli(capsys, "--labels", str(clean_file), "--out", str(tmp_path / "o"), *extra)
    assert code == 2 and stdout == ""
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err
    assert not (tmp_path / "o").exists()
    assert sha256_of_file(clean_file) == before


def test_missing_labels_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(
        capsys, "--labels", "nope.npy", "--noise", "pairflip", "--rate", "0.2", "--out", str(tmp_path)
    )
    assert code == 2 and err == "error: labels file not found: 'nope.npy'\n"


def test_subprocess_error_is_one_line_without_traceback(tmp_path: Path, clean_file: Path) -> None:
    command = [sys.executable, "-m", "robustlabels.inject", "--labels", str(clean_file)]
    command += ["--noise", "symmetric", "--rate", "1.5", "--out", str(tmp_path / "o")]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert completed.returncode == 2
    assert len(completed.stderr.splitlines()) == 1 and "Traceback" not in completed.stderr
    assert completed.stderr.startswith("error: `rate` must be in [0, 1]")


def test_dataset_digits(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("robustlabels.data.catalog", reason="needs the dataset catalog")
    argv = [
        "--dataset",
        "digits",
        "--noise",
        "symmetric_incl",
        "--rate",
        "0.5",
        "--exact",
        "--out",
        str(tmp_path),
    ]
    code, _, err = run_cli(capsys, *argv)
    assert code == 0, err
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["source"] == {"dataset": "digits", "split": "train"}
    assert manifest["num_classes"] == 10 and manifest["num_samples"] == np.load(tmp_path / "labels.npy").size
    assert manifest["realized_rate"] == pytest.approx(0.45, abs=0.01)


def test_atomic_writes_leave_no_partial_files(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "x.bin"
    atomic_write_bytes(target, b"first")
    atomic_write_bytes(target, b"second")
    assert target.read_bytes() == b"second"
    with pytest.raises(TypeError):
        atomic_write_bytes(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_bytes() == b"second"
    assert sorted(p.name for p in target.parent.iterdir()) == ["x.bin"]
    atomic_save_npy(tmp_path / "a.npy", np.arange(3))
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), [0, 1, 2])


# ---- preference pairs ----------------------------------------------------------------------------------
def write_pair_file(path: Path, n: int = 400) -> Path:
    rows = [{"prompt": f"q{i}", "chosen": "a" * (3 + i % 5), "rejected": "b" * (2 + i % 3), "score_chosen": 2 + i % 6,
             "score_rejected": 1, "id": i} for i in range(n)]  # fmt: skip
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.mark.parametrize("noise", ["symmetric", "difficulty", "longer", "shorter"])
def test_pairs_are_swapped_reproducibly_and_the_swaps_written(tmp_path: Path, noise: str) -> None:
    source = write_pair_file(tmp_path / "pairs.jsonl")
    before = sha256_of_file(source)
    args = ["--pairs", str(source), "--noise", noise, "--rate", "0.3", "--seed", "4"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0 and main([*args, "--out", str(tmp_path / "b")]) == 0
    assert sha256_of_file(source) == before  # the user's data is never modified
    for name in ("labels.npy", "manifest.json", "pairs.jsonl"):
        assert sha256_of_file(tmp_path / "a" / name) == sha256_of_file(tmp_path / "b" / name)
    swapped = read_labels(tmp_path / "a" / "labels.npy").astype(bool)
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["realized_rate"] == pytest.approx(swapped.mean())
    assert manifest["pairs"]["label_1_means"] == "swapped"
    original = [json.loads(line) for line in source.read_text().splitlines()]
    written = [json.loads(line) for line in (tmp_path / "a" / "pairs.jsonl").read_text().splitlines()]
    for row, out, flip in zip(original, written, swapped, strict=True):
        assert out["id"] == row["id"] and out["prompt"] == row["prompt"]
        sides = (row["rejected"], row["chosen"]) if flip else (row["chosen"], row["rejected"])
        assert (out["chosen"], out["rejected"]) == sides
        assert out["score_chosen"] == (row["score_rejected"] if flip else row["score_chosen"])
    if noise == "longer":  # the annotator swaps only pairs whose rejected side is the longer one
        longer_rejected = np.array([len(r["rejected"]) > len(r["chosen"]) for r in original])
        assert swapped.sum() > 0 and not (swapped & ~longer_rejected).any()
    if noise == "shorter":
        assert 0.2 < swapped.mean() < 0.4
    if noise == "difficulty":
        assert manifest["pairs"]["beta"] > 0 and 0.2 < swapped.mean() < 0.4


def test_pair_feature_arrays_are_swapped_side_for_side(tmp_path: Path) -> None:
    features = np.random.default_rng(0).normal(size=(50, 2, 3)).astype(np.float32)
    atomic_save_npy(tmp_path / "pairs.npy", features)
    assert main(["--pairs", str(tmp_path / "pairs.npy"), "--noise", "symmetric", "--rate", "0.5", "--out",
                 str(tmp_path / "o")]) == 0  # fmt: skip
    swapped = read_labels(tmp_path / "o" / "labels.npy").astype(bool)
    out = np.load(tmp_path / "o" / "pairs.npy")
    assert 0 < swapped.sum() < 50
    assert np.array_equal(out[swapped], features[swapped][:, ::-1])
    assert np.array_equal(out[~swapped], features[~swapped])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--labels", "L", "--noise", "longer", "--rate", "1"], "--noise longer applies to preference pairs"),
        (["--pairs", "NOSCORES", "--noise", "difficulty", "--rate", "0.2"], "needs score_chosen and score_rejected"),
        (["--pairs", "SAME", "--noise", "symmetric", "--rate", "0.2"], "line 1: the chosen and rejected responses"),
    ],
)  # fmt: skip
def test_bad_pair_input_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str],
                                              message: str) -> None:  # fmt: skip
    atomic_save_npy(tmp_path / "labels.npy", np.zeros(4, np.int64))
    (tmp_path / "noscores.jsonl").write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\n')
    (tmp_path / "same.jsonl").write_text('{"prompt": "p", "chosen": "a", "rejected": "a"}\n')
    files = {"L": tmp_path / "labels.npy", "NOSCORES": tmp_path / "noscores.jsonl", "SAME": tmp_path / "same.jsonl"}
    argv = [str(files.get(a, a)) for a in args]
    assert main([*argv, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and not (tmp_path / "out" / "manifest.json").exists()
