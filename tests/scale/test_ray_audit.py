"""The sharded audit on a Ray local cluster (2 CPUs): neighbours, SimiFeat, confident learning, a killed worker.

Ray is in the ``dev`` extra (``pip install -e '.[dev]'``), so these run in ``make test``; they start one local
cluster per module (about 5 s). The killed-worker test is ``slow`` (``pytest -m slow tests/scale``).
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
import ray

from robustlabels.audit.cli import main as audit_main
from robustlabels.audit.simifeat import simifeat
from robustlabels.neighbors import build
from robustlabels.scale import executor
from robustlabels.scale.confident import confident_learning_out_of_core
from robustlabels.scale.knn import recall_at
from robustlabels.scale.shards import list_shards
from tests.scale.conftest import DiesOnce, probabilities

pytestmark = pytest.mark.ray  # a pytest process of its own (Makefile: Ray's threads outlive ray.shutdown)

CUTS = (0, 4_000, 9_000, 15_000, 20_000)  # four shards of unequal size


@pytest.fixture(scope="module", autouse=True)
def cluster() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def shards(blobs: tuple[np.ndarray, ...], tmp_path_factory: pytest.TempPathFactory) -> list:
    folder = tmp_path_factory.mktemp("features")
    for i, (a, b) in enumerate(pairwise(CUTS)):
        np.save(folder / f"part-{i:05d}.npy", blobs[0][a:b])
    return list_shards(folder)


@pytest.fixture(scope="module")
def exact(blobs: tuple[np.ndarray, ...]) -> np.ndarray:
    return build(blobs[0], metric="cosine", index="Flat").search(None, 10, exclude_self=True)[1]


def _column(lists: list[dict[str, str]], name: str) -> np.ndarray:
    return np.concatenate([np.load(part[name]) for part in lists])


def test_flat_shards_give_exactly_the_exact_neighbours(
    blobs: tuple[np.ndarray, ...], shards: list, exact: np.ndarray, tmp_path: Path
) -> None:
    graph = executor.knn_graph(shards, tmp_path, 10, index="flat")
    got, points = _column(graph.lists, "idx"), blobs[0] / np.linalg.norm(blobs[0], axis=1, keepdims=True)
    # exact up to float ties: BLAS sums in another order for other query blocks, so two neighbours whose cosines
    # agree to ~1e-7 may trade places (6 of 200,000 entries when the search ran with other threads first)
    query_cosine = lambda idx: np.einsum("nd,nkd->nk", points, points[idx])  # noqa: E731
    np.testing.assert_allclose(query_cosine(got), query_cosine(exact), atol=1e-5)
    assert (got == exact).mean() > 0.999


def test_ivf_shards_merged_on_disk_reach_recall_95(shards: list, exact: np.ndarray, tmp_path: Path) -> None:
    graph = executor.knn_graph(shards, tmp_path, 10, index="ivf", nlist=64, nprobe=4)
    assert graph.index.startswith("IVF64")
    found = _column(graph.lists, "idx")
    assert found.shape == exact.shape and recall_at(found, exact) >= 0.95
    assert not (found == np.arange(len(found))[:, None]).any()  # own row excluded


def test_sharded_simifeat_equals_the_local_one(blobs: tuple[np.ndarray, ...], shards: list, tmp_path: Path) -> None:
    x, true, noisy = blobs
    local = simifeat(x, noisy, num_classes=10)
    sharded = executor.simifeat_on_ray(shards, noisy, tmp_path, num_classes=10, index="flat")
    flagged = np.concatenate(list(sharded.column("flagged")))
    assert flagged.sum() > 3000 and (flagged == (true != noisy)).mean() > 0.99
    np.testing.assert_array_equal(flagged, local.flagged)
    np.testing.assert_array_equal(np.concatenate(list(sharded.column("suggested"))), local.suggested)
    np.testing.assert_allclose(np.concatenate(list(sharded.column("scores"))), local.scores, atol=1e-5)
    np.testing.assert_allclose(sharded.joint, local.joint, atol=1e-4)
    assert set(sharded.peak_rss_mb) >= {"driver"} and len(sharded.peak_rss_mb) >= 2


def test_sharded_confident_learning_equals_the_local_one(blobs: tuple[np.ndarray, ...], tmp_path: Path) -> None:
    _, true, noisy = blobs
    probs = probabilities(true, 10)
    folder = tmp_path / "probs"
    folder.mkdir()
    for i, (a, b) in enumerate(pairwise(CUTS)):
        np.save(folder / f"part-{i:05d}.npy", probs[a:b])
    local = confident_learning_out_of_core(noisy, probs)
    sharded = executor.confident_on_ray(list_shards(folder), noisy, tmp_path / "work", num_classes=10)
    assert sharded.params["num_issues"] == local.num_issues > 1000
    np.testing.assert_array_equal(np.concatenate(list(sharded.column("flagged"))), local.flagged)
    np.testing.assert_array_equal(np.concatenate(list(sharded.column("scores"))), local.scores)


@pytest.mark.slow  # 11 s: an actor dies and Ray Data restarts it (run with -m slow)
def test_a_killed_worker_is_retried_without_a_lost_or_duplicated_row(tmp_path: Path) -> None:
    x = np.arange(9_000, dtype=np.float32).reshape(3_000, 3)
    np.save(tmp_path / "x.npy", x)
    marker = tmp_path / "killed"
    victim = float(x[1_200, 0])  # first row of the third of five shards
    out = executor.embed_shards(list_shards(tmp_path / "x.npy", shard_rows=600), tmp_path / "out",
                                partial(DiesOnce, str(marker), victim))  # fmt: skip
    assert marker.exists()  # a worker did die
    assert [s.first for s in out] == [0, 600, 1_200, 1_800, 2_400]
    np.testing.assert_array_equal(np.concatenate([s.read() for s in out]), 2.0 * x)


def test_the_audit_cli_runs_on_ray(blobs: tuple[np.ndarray, ...], tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    x, true, noisy = blobs
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", noisy)
    np.save(tmp_path / "clean.npy", true)
    out = tmp_path / "audit"
    code = audit_main(["--executor", "ray", "--data", str(tmp_path / "x.npy"), "--labels", str(tmp_path / "y.npy"),
                       "--clean-labels", str(tmp_path / "clean.npy"), "--method", "knn", "--shard-rows", "6000",
                       "--top", "50", "--out", str(out)])  # fmt: skip
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == ["flagged.npy", "issues.csv", "scores.npy", "suggested.npy",
                                                     "summary.json"]  # fmt: skip
    scores = np.load(out / "scores.npy")
    rows = np.loadtxt(out / "issues.csv", delimiter=",", skiprows=1)
    assert len(rows) == 50 and np.array_equal(rows[:, 1].astype(int), np.argsort(-scores, kind="stable")[:50])
    assert "F1 0.99" in capsys.readouterr().out or "F1 1.000" in capsys.readouterr().out


def test_the_ray_path_refuses_what_it_cannot_do(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = audit_main(["--executor", "ray", "--dataset", "digits", "--labels", "y.npy", "--out", str(tmp_path)])
    assert code == 2
    assert capsys.readouterr().err.strip() == ("error: --executor ray reads --data FILE.npy or a folder of .npy "
                                               "shards, not --dataset")  # fmt: skip
    np.save(tmp_path / "y.npy", np.zeros(5, dtype=np.int64))
    code = audit_main(["--executor", "ray", "--data", "x.npy", "--labels", str(tmp_path / "y.npy"), "--method", "knn",
                       "--rule", "rank", "--out", str(tmp_path / "o")])  # fmt: skip
    assert code == 2 and "--rule rank" in capsys.readouterr().err
