"""An installed wheel finds everything it reads at run time inside itself (configs, suites), from any directory."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHECK = """
import sys
from pathlib import Path

import robustlabels
from robustlabels.audit.training import default_fit_config, load_fit_config
from robustlabels.cli import packaged_config, resolve_config_args
from robustlabels.experiments.configs import base_config_path, build_config
from robustlabels.experiments.suite import grid, load_suite
import numpy as np

site = Path(sys.argv[1]).resolve()
assert Path(robustlabels.__file__).resolve().is_relative_to(site), robustlabels.__file__
assert packaged_config("quickstart").resolve().is_relative_to(site)
assert resolve_config_args(["--config", "fashion_mnist/ce"])[1] == str(packaged_config("fashion_mnist/ce"))
config = default_fit_config(np.zeros((2, 28, 28), dtype=np.uint8), "dynamics")
assert config.resolve().is_relative_to(site) and "model" in load_fit_config(config)
for name in ("smoke", "cpu", "cifar10-gpu"):
    suite = load_suite(name)
    assert suite.path.resolve().is_relative_to(site)
    assert all(base_config_path(suite, d).resolve().is_relative_to(site) for d in suite.datasets)
    assert all(build_config(suite, cell) for cell in grid(suite, seeds=suite.seeds[:1]))
print("ok")
"""


def test_an_installed_wheel_finds_its_configs_and_suites(tmp_path: Path) -> None:
    source = tmp_path / "source"  # build from a copy: no build/ folder in the checkout
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "robustlabels", source / "robustlabels", ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", tmp_path / "dist", source], check=True)
    wheel = next((tmp_path / "dist").glob("robustlabels-*.whl"))
    subprocess.run([*pip, "install", "--no-deps", "--target", tmp_path / "site", wheel], check=True)
    away = tmp_path / "elsewhere"  # outside the checkout, which is not on the path either
    away.mkdir()
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    result = subprocess.run([sys.executable, "-c", CHECK, tmp_path / "site"], cwd=away, env=env, capture_output=True,
                            text=True, timeout=600)  # fmt: skip
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-2000:]
