"""Shared fixtures: seeded noisy blobs, a tiny batch, and quiet trainer settings."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from robustlabels.types import Batch

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

os.environ.setdefault("PL_DISABLE_FORK", "1")
torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(autouse=True, scope="session")
def ctrl_c_raises() -> Iterator[None]:
    """Python's own Ctrl-C handler for the Ctrl-C tests (they send SIGINT to this process), also when a shell
    started the suite in the background: such a shell ignores SIGINT and the process inherits SIG_IGN."""
    previous = signal.getsignal(signal.SIGINT)
    if previous == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.fixture
def quiet_trainer() -> dict[str, object]:
    """Trainer kwargs for fast CPU tests: no logger, no checkpoints, no progress bar."""
    return {
        "accelerator": "cpu",
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
    }


@pytest.fixture
def noisy_batch() -> Batch:
    """16 samples, 4 classes, 8 features; a quarter of the labels flipped; known clean labels."""
    gen = torch.Generator().manual_seed(0)
    clean = torch.arange(16) % 4
    targets = clean.clone()
    targets[::4] = (targets[::4] + 1) % 4
    return Batch(torch.randn(16, 8, generator=gen), targets, torch.arange(16), clean)


@pytest.fixture
def blobs_arrays() -> tuple[np.ndarray, np.ndarray]:
    """300 points, 4 classes, 16-D, seeded."""
    from robustlabels.data.synthetic import make_blobs

    return make_blobs(300, num_classes=4, dim=16, separation=3.0, seed=0)
