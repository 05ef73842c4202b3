"""keep_freed_heap: glibc's trim threshold is raised unless the user opts out."""

from __future__ import annotations

import sys

import pytest

from robustlabels.memory import keep_freed_heap


def test_opt_out_by_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROBUSTLABELS_KEEP_FREED_HEAP", "0")
    assert keep_freed_heap() is False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's")
def test_applies_on_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ROBUSTLABELS_KEEP_FREED_HEAP", raising=False)
    assert keep_freed_heap() is True
