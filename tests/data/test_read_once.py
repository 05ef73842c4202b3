"""The per-process memo of data files (robustlabels.data.read_once)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from robustlabels.data import read_once as memo


@pytest.fixture(autouse=True)
def empty_memo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memo, "_MEMO", type(memo._MEMO)())


def test_a_value_is_read_once_until_a_source_file_changes(tmp_path: Path) -> None:
    data = tmp_path / "data.txt"
    data.write_text("one")
    reads: list[str] = []

    def read() -> str:
        reads.append(data.read_text())
        return reads[-1]

    assert [memo.read_once("k", read, lambda _: [data]) for _ in range(3)] == ["one"] * 3 and reads == ["one"]
    data.write_text("two!")  # another size
    assert memo.read_once("k", read, lambda _: [data]) == "two!"
    stat = data.stat()
    data.write_text("six!")  # same size, other content: the modification time tells
    os.utime(data, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert memo.read_once("k", read, lambda _: [data]) == "six!" and reads == ["one", "two!", "six!"]


def test_a_folder_source_counts_every_file_under_it(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "r.txt").write_text("x")
    calls: list[int] = []
    read = lambda: calls.append(1) or len(calls)  # noqa: E731
    assert memo.read_once("k", read, lambda _: [tmp_path / "a"]) == 1
    assert memo.read_once("k", read, lambda _: [tmp_path / "a"]) == 1
    (tmp_path / "a" / "b" / "r.txt").write_text("xy")  # a file deep inside changed; the folder's mtime did not
    assert memo.read_once("k", read, lambda _: [tmp_path / "a"]) == 2


def test_only_the_last_few_keys_are_kept(tmp_path: Path) -> None:
    source = tmp_path / "s"
    source.write_text("s")
    calls: list[str] = []
    for key in ["k0", *[f"k{i}" for i in range(memo.MAX_ENTRIES + 1)]]:
        memo.read_once(key, lambda key=key: calls.append(key) or key, lambda _: [source])
    assert calls == [f"k{i}" for i in range(memo.MAX_ENTRIES + 1)]  # k0's second read came from the memo
    memo.read_once("k0", lambda: calls.append("k0") or "k0", lambda _: [source])
    assert calls[-1] == "k0" and len(memo._MEMO) == memo.MAX_ENTRIES  # k0 had been dropped as the oldest
