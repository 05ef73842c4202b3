"""Out-of-core confident learning, shard helpers and SimiFeat's per-shard votes, without Ray."""

from __future__ import annotations

import tracemalloc
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
from cleanlab.experimental.label_issues_batched import find_label_issues_batched

from robustlabels.audit.simifeat import _search, simifeat
from robustlabels.errors import InputError
from robustlabels.scale.confident import Thresholds, confident_learning_out_of_core, score_pass, threshold_pass
from robustlabels.scale.shards import RunningTop, list_shards, write_npy_blocks
from robustlabels.scale.simifeat import packed_masks, shard_votes, unpack
from tests.scale.conftest import clustered, probabilities


def test_out_of_core_flags_equal_cleanlab_batched_in_memory(tmp_path: Path) -> None:
    _, true, noisy = clustered(100_000, 2, 7, seed=1, rate=0.25)
    probs = probabilities(true, 7, seed=1)
    np.save(tmp_path / "p.npy", probs)
    np.save(tmp_path / "y.npy", noisy)
    expected = find_label_issues_batched(noisy, probs, return_mask=True, verbose=False, n_jobs=1)
    result = confident_learning_out_of_core(np.load(tmp_path / "y.npy", mmap_mode="r"),
                                            np.load(tmp_path / "p.npy", mmap_mode="r"))  # fmt: skip
    assert expected.sum() > 1000
    np.testing.assert_array_equal(result.flagged, expected)
    np.testing.assert_allclose(result.scores, 1 - probs[np.arange(len(noisy)), noisy])
    np.testing.assert_array_equal(result.suggested, probs.argmax(1))


def test_shard_thresholds_merge_to_the_single_pass() -> None:
    _, true, noisy = clustered(30_000, 2, 5, seed=2)
    probs = probabilities(true, 5, seed=2)
    whole = threshold_pass(noisy, probs, num_classes=5)
    cuts = [0, 7_000, 18_000, 30_000]
    parts = [threshold_pass(noisy[a:b], probs[a:b], num_classes=5) for a, b in pairwise(cuts)]
    merged = Thresholds.merge(parts)
    np.testing.assert_allclose(merged.values, whole.values, rtol=1e-12)
    counts = sum(score_pass(noisy[a:b], probs[a:b], merged).confident_issues for a, b in pairwise(cuts))
    assert counts == score_pass(noisy, probs, whole).confident_issues > 0


def test_out_of_core_peak_memory_is_a_fraction_of_the_probabilities(tmp_path: Path) -> None:
    n, c = 400_000, 100  # 160 MB of float32 probabilities
    rng = np.random.default_rng(0)
    true = rng.integers(0, c, n)
    labels = np.where(rng.random(n) < 0.2, (true + 1) % c, true)
    probs = np.lib.format.open_memmap(tmp_path / "p.npy", mode="w+", dtype=np.float32, shape=(n, c))
    for start in range(0, n, 100_000):  # written in blocks, so the test itself holds no (N, C) array
        block = rng.random((min(100_000, n - start), c), dtype=np.float32) + 0.1
        block[np.arange(len(block)), true[start : start + len(block)]] += 1.0
        probs[start : start + len(block)] = block / block.sum(1, keepdims=True)
    probs.flush()
    del probs
    mapped = np.load(tmp_path / "p.npy", mmap_mode="r")
    tracemalloc.start()  # numpy reports its buffers to tracemalloc; memory-mapped pages are not allocations
    result = confident_learning_out_of_core(labels, mapped)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert result.flagged.any()
    assert peak < 0.25 * mapped.nbytes, f"peak {peak / 2**20:.0f} MiB for {mapped.nbytes / 2**20:.0f} MiB of probs"


def test_running_top_equals_a_full_sort_with_ties() -> None:
    rng = np.random.default_rng(3)
    values = rng.integers(0, 50, 5_000).astype(float)  # many ties
    top = RunningTop(321)
    for start in range(0, 5_000, 700):
        top.add(np.arange(start, min(start + 700, 5_000)), values[start : start + 700])
    ids, got = top.result()
    expected = np.lexsort((np.arange(5_000), -values))[:321]
    np.testing.assert_array_equal(ids, expected)
    np.testing.assert_array_equal(got, values[expected])


def test_shards_of_a_folder_and_of_one_file(tmp_path: Path) -> None:
    x = np.arange(60, dtype=np.float32).reshape(20, 3)
    np.save(tmp_path / "one.npy", x)
    shards = list_shards(tmp_path / "one.npy", shard_rows=6)
    assert [(s.start, s.stop, s.first) for s in shards] == [(0, 6, 0), (6, 12, 6), (12, 18, 12), (18, 20, 18)]
    np.testing.assert_array_equal(np.concatenate([s.read() for s in shards]), x)
    folder = tmp_path / "parts"
    folder.mkdir()
    np.save(folder / "part-1.npy", x[7:])
    np.save(folder / "part-0.npy", x[:7])
    shards = list_shards(folder)
    assert [s.first for s in shards] == [0, 7]
    np.testing.assert_array_equal(np.concatenate([s.read() for s in shards]), x)
    np.save(folder / "part-2.npy", np.zeros((4, 5), dtype=np.float32))
    with pytest.raises(InputError, match=r"part-2\.npy' has 5 columns"):
        list_shards(folder)


def test_streamed_npy_is_the_array_and_refuses_a_wrong_count(tmp_path: Path) -> None:
    blocks = [np.arange(5), np.arange(5, 12)]
    write_npy_blocks(tmp_path / "a.npy", blocks, shape=(12,), dtype="<i8")
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), np.arange(12))
    with pytest.raises(ValueError, match="12 rows, expected 13"):
        write_npy_blocks(tmp_path / "b.npy", blocks, shape=(13,), dtype="<i8")
    assert not list(tmp_path.glob("*b.npy*"))  # the temporary file is gone


def test_shard_votes_equal_the_local_simifeat_row_for_row() -> None:
    x, _, noisy = clustered(6_000, 16, 6, seed=4, rate=0.3)
    local = simifeat(x, noisy, num_classes=6, rounds=7)
    width = local.params["search_k"]
    sims, idx, _ = _search(x, width, index="Flat", backend="faiss", threads=None, seed=0)
    masks = unpack(packed_masks(6_000, int(6_000 * 0.9), 7, 0), 6_000)
    parts = [shard_votes(sims[a:b], idx[a:b], a, noisy, masks, k=10, num_classes=6)
             for a, b in ((0, 1_000), (1_000, 4_500), (4_500, 6_000))]  # fmt: skip
    scores, flagged, suggested = (np.concatenate(column) for column in zip(*parts, strict=True))
    assert local.flagged.sum() > 1000
    np.testing.assert_array_equal(scores, local.scores)
    np.testing.assert_array_equal(flagged, local.flagged)
    np.testing.assert_array_equal(suggested, local.suggested)
