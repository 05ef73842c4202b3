"""``python -m robustlabels.demo`` (what ``make demo`` runs): three steps, one table, the outputs named."""

from __future__ import annotations

import json

from robustlabels.demo import main


def test_demo_trains_both_runs_audits_and_prints_the_table(tmp_path, capsys) -> None:
    assert main(["--out", str(tmp_path / "demo"), "--epochs", "3"]) == 0
    out = capsys.readouterr().out
    for row in ("plain cross-entropy", "cross-entropy + ELR", "audit (dynamics, confident_learning, knn)"):
        assert row in out
    for config in ("quickstart", "quickstart_elr"):
        summary = json.loads((tmp_path / "demo" / config / "version_0" / "metrics.json").read_text())["summary"]
        assert f"{summary['final_test_acc']:.1%}" in out  # the table shows what the run wrote
    audit = json.loads((tmp_path / "demo" / "audit" / "summary.json").read_text())
    m = audit["final"]["flag_metrics"]
    assert f"precision {m['precision']:.1%}" in out and str(audit["num_examples"]) == "1438"
    assert m["num_errors"] > 500  # 40 % of the digits' 1,438 training labels are wrong: the same noisy labels
    assert str(tmp_path / "demo" / "audit" / "report.html") in out


def test_demo_refuses_zero_epochs(tmp_path, capsys) -> None:
    assert main(["--out", str(tmp_path / "d"), "--epochs", "0"]) == 2
    assert capsys.readouterr().err.strip() == "error: --epochs must be at least 1, got 0"
    assert not (tmp_path / "d").exists()
