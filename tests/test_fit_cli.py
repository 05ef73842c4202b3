"""The real ``python -m robustlabels.fit`` CLI: every config, run folder contents, resume, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from robustlabels.cli import package_path, packaged_config_names, resolve_config_args
from robustlabels.errors import InputError
from robustlabels.fit import main

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = package_path("configs")  # package data; `configs` in the checkout links to it
CONFIGS = sorted(p for p in CONFIG_DIR.rglob("*.yaml") if p.parent.name != "audit")  # audit: tests/audit
QUICK = str(CONFIG_DIR / "quickstart.yaml")
FAST = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: str(p.relative_to(CONFIG_DIR)))
def test_every_config_runs_fast_dev_run_on_fake_data(config: Path, tmp_path: Path) -> None:
    assert fast_dev_run(config, tmp_path, "--trainer.accelerator=cpu", "--trainer.precision=32-true") == 0


def fast_dev_run(config: Path, tmp_path: Path, *device: str) -> int:
    return main(["--config", str(config), "--trainer.fast_dev_run=true", "--data.fake=true", "--trainer.logger=false",
                 f"--trainer.default_root_dir={tmp_path}", *device, *FAST])  # fmt: skip


def run_quickstart(tmp_path: Path, *extra: str, epochs: int = 2) -> int:
    return main(["--config", QUICK, f"--trainer.max_epochs={epochs}", f"--trainer.default_root_dir={tmp_path}",
                 f"--trainer.logger.init_args.save_dir={tmp_path}", *FAST, *extra])  # fmt: skip


def test_run_folder_holds_noise_metrics_and_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert run_quickstart(tmp_path) == 0
    run = tmp_path / "quickstart" / "version_0"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["summary"]["epochs"] == 2 and len(metrics["history"]) == 2
    assert 0 < metrics["summary"]["final_test_acc"] <= metrics["summary"]["best_test_acc"] <= 1
    noise = json.loads((run / "noise.json").read_text())
    labels = np.load(run / "noisy_labels.npy")
    assert noise["noise_model"] == "symmetric" and noise["num_samples"] == len(labels) == 1438
    assert abs(noise["realized_rate_full_train_split"] - 0.4) < 0.01
    assert (run / "checkpoints" / "last.ckpt").exists()
    out = capsys.readouterr().out
    assert "best test accuracy" in out and "flipped samples predicted as noisy label" in out


def test_resume_from_checkpoint_continues_exactly(tmp_path: Path) -> None:
    assert run_quickstart(tmp_path / "a", epochs=3) == 0
    assert run_quickstart(tmp_path / "b", epochs=2) == 0
    ckpt = tmp_path / "b" / "quickstart" / "version_0" / "checkpoints" / "last.ckpt"
    assert run_quickstart(tmp_path / "b", f"--ckpt_path={ckpt}", epochs=3) == 0
    straight = json.loads((tmp_path / "a" / "quickstart" / "version_0" / "metrics.json").read_text())
    resumed = json.loads((tmp_path / "b" / "quickstart" / "version_1" / "metrics.json").read_text())
    assert len(resumed["history"]) == 3
    assert resumed["history"][-1]["test/acc"] == pytest.approx(straight["history"][-1]["test/acc"], abs=1e-6)
    assert resumed["history"][-1]["train/loss"] == pytest.approx(straight["history"][-1]["train/loss"], rel=1e-5)


BAD_INPUT = {
    "unknown strategy": (["--model.strategy=Nope"], "unknown class 'Nope'"),
    "unknown backbone": (["--model.backbone=nonet"], "unknown backbone 'nonet'"),
    "unknown dataset": (["--data=NopeData"], "unknown class 'NopeData'"),
    "misspelled key": (["--data.init_args.batch_sizee=3"], "batch_sizee"),
    "rate outside [0, 1]": (["--data.init_args.noise.init_args.rate=1.5"], "`rate` must be in [0, 1]; got 1.5"),
    "matrix rows": (["--data.init_args.noise=MatrixNoise", "--data.init_args.noise.init_args.matrix=[[0.5,0.4],[0,1]]"],
                    "row 0 sums to 0.9"),
    "missing file": (["--data.init_args.noise=LabelsFile", "--data.init_args.noise.init_args.path=/no/such.npy"],
                     "/no/such.npy"),
}  # fmt: skip


@pytest.mark.parametrize("case", BAD_INPUT, ids=list(BAD_INPUT))
def test_bad_input_is_one_line_and_exit_code_2(case: str, capsys: pytest.CaptureFixture) -> None:
    args, expected = BAD_INPUT[case]
    assert main(["--config", QUICK, "--trainer.fast_dev_run=true", "--trainer.logger=false", *args]) == 2
    err_lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")]
    assert len(err_lines) == 1 and expected in err_lines[0]


@pytest.mark.parametrize(
    ("labels", "expected"),
    [(np.full(1438, 12), "outside [0, 10)"), (np.zeros(99, dtype=np.int64), "has 99 labels")],
    ids=["labels outside range", "length mismatch"],
)
def test_bad_labels_file(tmp_path: Path, labels: np.ndarray, expected: str, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "labels.npy"
    np.save(path, labels)
    args = ["--data.init_args.noise=LabelsFile", f"--data.init_args.noise.init_args.path={path}"]
    assert main(["--config", QUICK, "--trainer.fast_dev_run=true", "--trainer.logger=false", *args]) == 2
    err = capsys.readouterr().err
    assert expected in err and "labels.npy" in err


def test_misspelled_key_in_yaml_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    config = tmp_path / "typo.yaml"
    config.write_text(Path(QUICK).read_text().replace("backbone_kwargs", "backbone_kwarg"))
    assert main(["--config", str(config), "--trainer.fast_dev_run=true"]) == 2
    assert "backbone_kwarg" in capsys.readouterr().err


def test_module_entry_point_exits_2_without_traceback() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "robustlabels.fit", "--config", QUICK, "--model.backbone=nonet"],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.count("error:") == 1


def test_config_takes_a_bundled_name_from_any_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert (ROOT / "configs").resolve() == CONFIG_DIR.resolve()  # the checkout's link
    assert {"quickstart", "fashion_mnist/ce", "audit/cnn_ce"} <= set(packaged_config_names())
    for name in ("quickstart", "quickstart.yaml", "configs/quickstart.yaml"):
        assert resolve_config_args(["--config", name, "--x=1"]) == ["--config", QUICK, "--x=1"]
    assert resolve_config_args(["-c=fashion_mnist/ce"]) == [f"-c={CONFIG_DIR / 'fashion_mnist' / 'ce.yaml'}"]
    (tmp_path / "quickstart").write_text("seed_everything: 1\n")  # a file of that name wins
    assert resolve_config_args(["--config", "quickstart"]) == ["--config", "quickstart"]
    with pytest.raises(InputError, match="`--config` 'nope' is neither a file nor a bundled config; bundled: "):
        resolve_config_args(["--config", "nope"])
    assert main(["--config", "configs/quickstart.yaml", "--trainer.fast_dev_run=true", "--trainer.logger=false",
                 f"--trainer.default_root_dir={tmp_path}", *FAST]) == 0  # fmt: skip


def test_a_config_that_does_not_exist_is_one_line(capsys: pytest.CaptureFixture) -> None:
    assert main(["--config", "fashion_mnist/nope", "--trainer.fast_dev_run=true"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: `--config` 'fashion_mnist/nope' is neither a file") and "\n" not in err
    assert "quickstart" in err


def test_help_names_the_bundled_configs(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "name of a bundled one (quickstart, fashion_mnist/ce" in " ".join(capsys.readouterr().out.split())


@pytest.mark.gpu
@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: str(p.relative_to(CONFIG_DIR)))
def test_every_config_runs_fast_dev_run_on_a_gpu_in_bf16(config: Path, tmp_path: Path) -> None:
    assert fast_dev_run(config, tmp_path, "--trainer.accelerator=gpu", "--trainer.precision=bf16-mixed") == 0
