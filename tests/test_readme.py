"""The README's Python example runs as written and shows the memorization it describes."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example_runs(capsys, tmp_path, monkeypatch) -> None:
    code = re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)
    monkeypatch.chdir(tmp_path)  # the example's Trainer writes its checkpoints under the working directory
    assert len(code.strip().splitlines()) <= 12
    exec(compile(code, str(README), "exec"), {})
    test_acc, mem_noisy = map(float, capsys.readouterr().out.split()[-2:])
    assert 0.3 < test_acc <= 1.0 and 0.0 <= mem_noisy <= 1.0


def test_readme_names_the_two_quickstart_commands() -> None:
    text = README.read_text()
    assert "make demo" in text and "make test" in text


def test_architecture_example_strategy_registers_and_trains(quiet_trainer, monkeypatch) -> None:
    """docs/architecture.md's "Adding a strategy" example works as written: it registers, and it trains."""
    import pytorch_lightning as pl
    import torch

    from robustlabels.data import BlobsDataModule
    from robustlabels.module import RobustModule
    from robustlabels.strategies import STRATEGIES

    doc = README.parent / "docs" / "architecture.md"
    code = re.search(r"```python\n(.*?)```", doc.read_text(), re.S).group(1)
    monkeypatch.setattr(STRATEGIES, "_entries", dict(STRATEGIES._entries))  # the registration stays local
    namespace: dict = {}
    exec(compile(code, str(doc), "exec"), namespace)
    strategy = STRATEGIES.get("bootstrap_hard")(beta=0.8)
    dm = BlobsDataModule(num_samples=300, test_samples=100, batch_size=64)
    torch.manual_seed(0)
    model = RobustModule(strategy, num_classes=dm.num_classes, input_shape=dm.input_shape)
    pl.Trainer(max_epochs=3, **quiet_trainer).fit(model, datamodule=dm)
    assert model.history[-1]["test/acc"] > 0.8
