"""The audit's output files: issues.csv, summary.json and report.html, on small synthetic data."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from robustlabels.audit import report
from robustlabels.audit.report import OUTPUT_FILES, estimated_joint, write_audit
from robustlabels.audit.scoring import flag_metrics, precision_at_k, ranking_order
from robustlabels.audit.types import AuditData, MethodResult
from robustlabels.errors import InputError

N, C = 60, 3
EVIL = "<script>alert(1)</script>"
# rows true, columns given: 10% of true class 0 is labelled 1; nothing is labelled 0 wrongly.
JOINT = np.array([[0.30, 0.10, 0.00], [0.00, 0.30, 0.00], [0.00, 0.05, 0.25]])


def make_data(kind: str = "grey", *, clean: bool = True) -> AuditData:
    rng = np.random.default_rng(0)
    true = np.arange(N) % C
    labels = true.copy()
    labels[::5] = (labels[::5] + 1) % C  # 12 wrong labels
    data = AuditData(labels=labels, num_classes=C, class_names=["cat", "dog & co", EVIL],
                     clean_labels=true if clean else None, source="synthetic <test>",
                     hashes={"labels.npy": "ab" * 32})  # fmt: skip
    if kind == "grey":
        data.images = rng.integers(0, 256, (N, 28, 28), dtype=np.uint8)
    elif kind == "rgb":
        data.images = rng.integers(0, 256, (N, 32, 32, 3), dtype=np.uint8)
    elif kind == "text":
        data.texts = [f"<b>sample {i}</b> & \"quoted\" " + "x" * (400 if i % 2 else 5) for i in range(N)]
    return data


def make_results(data: AuditData) -> tuple[list[MethodResult], MethodResult]:
    rng = np.random.default_rng(1)
    is_error = data.labels != (np.arange(N) % C)
    scores = is_error + rng.random(N) * 0.8
    scores[[3, 7, 11]] = 5.0  # a three-way tie at the top: must come out as 3, 7, 11
    suggested = (data.labels + 2) % C
    knn = MethodResult("knn", scores.astype(np.float32), scores > 0.9, suggested, params={"k": 10}, seconds=0.5)
    cl = MethodResult("confident_learning", scores, scores > 1.0, suggested, joint=JOINT,
                      params={"folds": np.int64(5), "frac": np.float32(0.5)}, seconds=1.25)  # fmt: skip
    return [knn, cl], cl


def run(tmp_path: Path, kind: str = "grey", **kwargs: object) -> tuple[Path, AuditData, MethodResult, dict]:
    data = make_data(kind, clean=bool(kwargs.pop("clean", True)))
    results, final = make_results(data)
    out = tmp_path / "nested" / "out"
    summary = write_audit(out, data, results, final, extra={"command": "audit --x", "timings": {"load": 0.1}},
                          **kwargs)  # type: ignore[arg-type]
    return out, data, final, summary


def read_issues(out: Path) -> list[dict[str, str]]:
    with open(out / "issues.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_issues_csv_order_columns_rows(tmp_path: Path) -> None:
    out, data, final, _ = run(tmp_path)
    rows = read_issues(out)
    assert len(rows) == N
    assert list(rows[0]) == ["index", "given_label", "given_name", "suggested_label", "suggested_name", "score",
                             "flagged", "method", "true_label"]  # fmt: skip
    order = [int(row["index"]) for row in rows]
    assert order == ranking_order(final.scores).tolist()
    assert order[:3] == [3, 7, 11]  # the tie, by index
    scores = [float(row["score"]) for row in rows]
    assert scores == sorted(scores, reverse=True)
    first = rows[0]
    assert first["given_name"] == data.class_names[int(first["given_label"])]
    assert first["suggested_name"] == data.class_names[int(first["suggested_label"])]
    assert {row["method"] for row in rows} == {"confident_learning"}
    assert sum(row["flagged"] == "True" for row in rows) == int(final.flagged.sum())
    assert [int(row["true_label"]) for row in rows] == (np.arange(N) % C)[order].tolist()
    assert any(row["given_name"] == EVIL for row in rows)  # csv keeps names verbatim


def test_issues_csv_without_clean_labels_and_float32_scores(tmp_path: Path) -> None:
    data = make_data("none", clean=False)
    results, _ = make_results(data)
    write_audit(tmp_path, data, results, results[0], extra={})
    rows = read_issues(tmp_path)
    assert "true_label" not in rows[0]
    assert rows[0]["score"] == "5.0"  # float32 written in its shortest form


def test_issues_csv_shows_each_member_of_an_ensemble(tmp_path: Path) -> None:
    from robustlabels.audit.ensemble import ensemble

    data = make_data("none")
    results, _ = make_results(data)
    results[0].flagged[:] = results[0].scores > 0.5  # knn flags more than confident learning
    final = ensemble(results, data.labels, C)
    write_audit(tmp_path, data, results, final, extra={})
    rows = read_issues(tmp_path)
    assert list(rows[0])[8:] == ["flagged_by", "knn_score", "confident_learning_score", "true_label"]
    for row in rows:
        i = int(row["index"])
        expected = [r.method for r in results if r.flagged[i]]
        assert row["flagged_by"] == ";".join(expected)
        assert float(row["confident_learning_score"]) == pytest.approx(results[1].scores[i])
        assert float(row["knn_score"]) == pytest.approx(float(results[0].scores[i]))
    assert {row["flagged_by"] for row in rows} == {"", "knn", "knn;confident_learning"}


def test_summary_fields_and_orientation(tmp_path: Path) -> None:
    out, data, final, summary = run(tmp_path)
    assert json.loads((out / "summary.json").read_text(encoding="utf-8")) == summary
    assert (summary["num_examples"], summary["num_classes"], summary["class_names"]) == (N, C, data.class_names)
    assert summary["source"] == "synthetic <test>" and summary["input_hashes"] == data.hashes
    assert summary["num_flagged"] == int(final.flagged.sum())
    assert summary["noise_rate"] == pytest.approx(0.15)  # 1 - trace(JOINT)
    assert summary["joint"] == JOINT.tolist() and "rows are the (estimated) true label" in summary["joint_note"]
    transition = np.array(summary["transition"])
    assert transition[0] == pytest.approx([0.75, 0.25, 0.0])  # P(given = 1 | true = 0) = 0.1 / 0.4
    assert transition[2] == pytest.approx([0.0, 1 / 6, 5 / 6])
    assert transition[1, 0] == 0.0
    assert (summary["command"], summary["timings"]) == ("audit --x", {"load": 0.1})
    assert summary["true_noise_rate"] == pytest.approx(12 / N)


def test_summary_methods_and_metrics(tmp_path: Path) -> None:
    _, data, final, summary = run(tmp_path)
    is_error = data.labels != data.clean_labels
    knn, cl = summary["methods"]
    assert (knn["name"], knn["params"], knn["seconds"]) == ("knn", {"k": 10}, 0.5)
    assert cl["params"] == {"folds": 5, "frac": 0.5} and cl["noise_rate"] == pytest.approx(0.15)
    assert knn["noise_rate"] == pytest.approx(knn["num_flagged"] / N)  # no joint: the flagged fraction
    assert cl["flag_metrics"] == pytest.approx(flag_metrics(final.flagged, is_error))
    expected = {str(k): v for k, v in precision_at_k(final.scores, is_error).items()}
    assert summary["final"]["precision_at_k"] == pytest.approx(expected)
    assert set(expected) == {"12", "60"}


def test_summary_without_clean_labels_has_no_metrics(tmp_path: Path) -> None:
    _, _, _, summary = run(tmp_path, clean=False)
    assert "true_noise_rate" not in summary
    assert all("flag_metrics" not in entry for entry in [*summary["methods"], summary["final"]])


def test_joint_from_flags_when_method_has_none() -> None:
    data = AuditData(labels=np.array([0, 0, 1, 1]), num_classes=2, class_names=["a", "b"])
    result = MethodResult("knn", np.zeros(4), np.array([True, False, False, True]), np.array([1, 0, 0, 0]))
    joint, source = estimated_joint(data, result)
    # example 0: true 1 (suggested), given 0; example 3: true 0, given 1; others kept
    assert joint.tolist() == [[0.25, 0.25], [0.25, 0.25]] and source == "flags"
    assert 1 - np.trace(joint) == pytest.approx(result.noise_rate)


@pytest.mark.parametrize(("kind", "side"), [("grey", 84), ("rgb", 96)])
def test_html_images(tmp_path: Path, kind: str, side: int) -> None:
    out, _, _, _ = run(tmp_path, kind, top=10)
    page = (out / "report.html").read_text(encoding="utf-8")
    assert page.count("<img ") == 10
    assert page.count('src="data:image/png;base64,') == 10
    assert f'width="{side}" height="{side}"' in page
    assert "http://" not in page and "https://" not in page and "<script" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "dog &amp; co" in page
    assert "synthetic &lt;test&gt;" in page
    assert page.count("<svg") == 2 and "Against the true labels" in page
    assert len(page) < 150_000


def test_html_default_top_and_text_escaped(tmp_path: Path) -> None:
    out, _, _, _ = run(tmp_path, "text")
    page = (out / "report.html").read_text(encoding="utf-8")
    assert page.count('class="card') == N and "<img " not in page  # all 60: fewer than the default 240
    assert "&lt;b&gt;sample" in page and "&amp; &quot;quoted&quot;" in page and "<b>sample" not in page
    assert "x" * 301 not in page and "…" in page  # snippets cut at 300 characters
    assert "<script" not in page and "https://" not in page


def test_html_index_only_when_no_images_or_texts(tmp_path: Path) -> None:
    out, _, _, _ = run(tmp_path, "none", top=5)
    page = (out / "report.html").read_text(encoding="utf-8")
    assert page.count('<div class="idx">') == 5 and '<div class="idx">#3</div>' in page


def test_refuses_overwrite_keeps_other_files(tmp_path: Path) -> None:
    out, _, _, _ = run(tmp_path)
    (out / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(InputError, match=r"already holds issues.csv, summary.json, report.html; use --force") as info:
        run(tmp_path)
    assert str(out) in str(info.value) and "\n" not in str(info.value)
    (out / "summary.json").unlink()
    with pytest.raises(InputError, match=r"already holds issues\.csv, report\.html"):
        run(tmp_path)
    run(tmp_path, force=True)
    assert sorted(p.name for p in out.iterdir()) == sorted([*OUTPUT_FILES, "notes.txt"])
    assert (out / "notes.txt").read_text(encoding="utf-8") == "mine"


def test_output_path_is_a_file(tmp_path: Path) -> None:
    data = make_data("none")
    results, final = make_results(data)
    (tmp_path / "out").write_text("", encoding="utf-8")
    with pytest.raises(InputError, match="is a file"):
        write_audit(tmp_path / "out", data, results, final, extra={})


def test_shapes_validated(tmp_path: Path) -> None:
    data = make_data("none")
    results, final = make_results(data)
    results[0].scores = results[0].scores[:-1]
    with pytest.raises(InputError, match=r"method 'knn': scores has shape \(59,\); expected \(60,\)"):
        write_audit(tmp_path, data, results, final, extra={})
    _, final = make_results(data)
    final.joint = np.eye(2)
    with pytest.raises(InputError, match="joint has shape"):
        write_audit(tmp_path, data, [], final, extra={})
    _, final = make_results(data)
    final.suggested = final.suggested + 1
    with pytest.raises(InputError, match=r"suggested labels must lie in \[0, 2\]"):
        write_audit(tmp_path, data, [], final, extra={})
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_no_temporary_files_left_even_on_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out, _, _, _ = run(tmp_path)
    assert sorted(p.name for p in out.iterdir()) == sorted(OUTPUT_FILES)

    def broken(*args: object) -> object:
        raise RuntimeError("disk full")

    monkeypatch.setattr(report, "_issue_rows", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        run(tmp_path, force=True)
    assert sorted(p.name for p in out.iterdir()) == sorted(OUTPUT_FILES)


def test_extra_must_not_overwrite_summary_keys(tmp_path: Path) -> None:
    data = make_data("none")
    results, final = make_results(data)
    with pytest.raises(ValueError, match="num_flagged"):
        write_audit(tmp_path, data, results, final, extra={"num_flagged": 3})
