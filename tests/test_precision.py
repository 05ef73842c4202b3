"""``precision: auto`` (robustlabels.precision): bf16-mixed where bf16 is native, fp32 elsewhere, and logged."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import robustlabels.precision as precision_module
from robustlabels.fit import build_cli
from robustlabels.precision import auto_precision, cpu_bf16_flags

FLAGS = "fpu sse2 avx2 fma avx512f avx512bw avx512vl"


def cpuinfo(tmp_path: Path, flags: str) -> Path:
    path = tmp_path / "cpuinfo"
    path.write_text(f"processor\t: 0\nmodel name\t: test\nflags\t\t: {flags}\n\nprocessor\t: 1\nflags\t\t: {flags}\n")
    return path


@pytest.mark.parametrize(
    ("flags", "expected"),
    [(FLAGS, "32-true"), (f"{FLAGS} avx512_bf16", "bf16-mixed"), (f"{FLAGS} amx_bf16 amx_tile", "bf16-mixed")],
)
def test_a_cpu_gets_bf16_only_where_it_computes_in_bf16(tmp_path: Path, flags: str, expected: str) -> None:
    chosen, reason = auto_precision("cpu", cpuinfo=cpuinfo(tmp_path, flags))
    assert chosen == expected
    assert ("lists" in reason) == (expected == "bf16-mixed")


def test_an_unreadable_cpuinfo_means_fp32(tmp_path: Path) -> None:
    assert cpu_bf16_flags(tmp_path / "missing") == frozenset()
    assert auto_precision("cpu", cpuinfo=tmp_path / "missing")[0] == "32-true"


@pytest.mark.skipif(torch.cuda.is_available(), reason="the accelerator 'auto' would pick the GPU")
def test_auto_without_a_gpu_is_the_cpus_choice(tmp_path: Path) -> None:
    assert auto_precision("auto", cpuinfo=cpuinfo(tmp_path, f"{FLAGS} avx512_bf16"))[0] == "bf16-mixed"
    assert auto_precision(None, cpuinfo=cpuinfo(tmp_path, FLAGS))[0] == "32-true"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_bf16_gpu_gets_bf16_mixed_unless_the_cpu_is_asked_for(tmp_path: Path) -> None:
    assert auto_precision("gpu")[0] == ("bf16-mixed" if torch.cuda.is_bf16_supported() else "32-true")
    assert auto_precision("cpu", cpuinfo=cpuinfo(tmp_path, FLAGS))[0] == "32-true"


def trainer_precision(tmp_path: Path, *extra: str) -> str:
    args = ["--config", "quickstart", "--trainer.logger=false", f"--trainer.default_root_dir={tmp_path}", *extra]
    return str(build_cli(args, args).trainer.precision)


def test_the_fit_cli_resolves_auto_by_default_and_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    said: list[tuple[str, str]] = []
    monkeypatch.setattr(precision_module, "announce", lambda chosen, reason: said.append((chosen, reason)))
    assert trainer_precision(tmp_path) == auto_precision("auto")[0]
    assert said == [auto_precision("auto")]


def test_an_explicit_precision_is_kept_and_not_announced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    said: list[tuple[str, str]] = []
    monkeypatch.setattr(precision_module, "announce", lambda chosen, reason: said.append((chosen, reason)))
    assert trainer_precision(tmp_path, "--trainer.precision=bf16-mixed", "--trainer.accelerator=cpu") == "bf16-mixed"
    assert said == []


def test_the_announcement_is_one_info_line_of_lightning(monkeypatch: pytest.MonkeyPatch) -> None:
    import pytorch_lightning.utilities as utilities

    lines: list[str] = []
    monkeypatch.setattr(utilities, "rank_zero_info", lines.append)
    precision_module.announce("32-true", "this CPU has no avx512_bf16 or amx_bf16")
    assert lines == ["precision auto -> 32-true (this CPU has no avx512_bf16 or amx_bf16)"]
