"""``python -m robustlabels.demo``: the first run, in about two minutes on 2 CPU cores.

The bundled 8×8 digits with 40 % of the training labels flipped (exactly, per class, seed 0), three steps:

1. plain cross-entropy (``configs/quickstart.yaml``): learns, then memorises the wrong labels;
2. the same data, noise and network with the ELR regularizer (``configs/quickstart_elr.yaml``);
3. ``python -m robustlabels.audit`` on the noisy labels run 1 trained on, scored against the true labels.

Then one table: what the noise costs plain training, what ELR wins back, and how many of the flipped labels the
audit finds. Every step is a normal command (printed), so each can be rerun or changed on its own.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

RUNS = (("plain cross-entropy", "quickstart"), ("cross-entropy + ELR", "quickstart_elr"))


def latest_version(folder: Path) -> Path:
    """The newest ``version_N`` folder Lightning's CSV logger made under ``folder``."""
    versions = [p for p in folder.glob("version_*") if p.name.split("_")[-1].isdigit()]
    return max(versions, key=lambda p: int(p.name.split("_")[-1]))


def step(title: str, module: str, argv: list[str], quiet: bool) -> None:
    """Run one command's ``main(argv)`` in-process, printing the equivalent command line first."""
    import importlib

    print(f"\n[{title}] python -m {module.removesuffix('.cli')} {shlex.join(argv)}", flush=True)
    sink = io.StringIO()
    with contextlib.ExitStack() as stack:
        if quiet:  # Lightning's chatter and progress bars; shown if the step fails
            stack.enter_context(contextlib.redirect_stdout(sink))
            stack.enter_context(contextlib.redirect_stderr(sink))
        code = importlib.import_module(module).main(argv)
    if code != 0:
        print(sink.getvalue()[-4000:], file=sys.stderr)
        raise SystemExit(code)


def table(fits: list[tuple[str, dict[str, Any]]], audit: dict[str, Any]) -> str:
    """The demo's result: test accuracy of each training run, then the audit's flags against the truth."""
    lines = ["", f"{'training on 40 % wrong labels':<34}{'best test acc':>14}{'final test acc':>16}"
             f"{'wrong labels memorised':>24}"]  # fmt: skip
    for name, s in fits:
        lines.append(f"{name:<34}{s['best_test_acc']:>14.1%}{s['final_test_acc']:>16.1%}{s['final_mem_noisy']:>24.1%}")
    m = audit["final"]["flag_metrics"]
    lines += ["", f"audit ({', '.join(x['name'] for x in audit['methods'])}): flagged {m['num_flagged']} of "
              f"{audit['num_examples']} training labels; {m['num_errors']} are truly wrong",
              f"  precision {m['precision']:.1%} (flags that are wrong labels), recall {m['recall']:.1%} "
              f"(wrong labels found), F1 {m['f1']:.3f}"]  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m robustlabels.demo", description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/demo", help="folder for the three runs (default runs/demo)")
    p.add_argument("--epochs", type=int, default=60, help="training epochs of each run (default 60)")
    p.add_argument("--verbose", action="store_true", help="show each run's progress and tables")
    args = p.parse_args(argv)
    if args.epochs < 1:
        print(f"error: --epochs must be at least 1, got {args.epochs}", file=sys.stderr)
        return 2
    out, start = Path(args.out), time.perf_counter()
    quiet = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"] if not args.verbose else []
    fits = []
    for name, config in RUNS:
        step(name, "robustlabels.fit", ["--config", config, f"--trainer.max_epochs={args.epochs}",
             f"--trainer.logger.init_args.save_dir={out}", *quiet], quiet=not args.verbose)  # fmt: skip
        run = latest_version(out / config)
        fits.append((name, json.loads((run / "metrics.json").read_text())["summary"]))
        print(f"  -> {run}", flush=True)
    labels = latest_version(out / "quickstart") / "noisy_labels.npy"
    audit_out = out / "audit"
    step("audit", "robustlabels.audit.cli", ["--dataset", "digits", "--labels", str(labels), "--clean-labels",
         "original", "--method", "all", "--out", str(audit_out), "--force"], quiet=not args.verbose)  # fmt: skip
    print(f"  -> {audit_out / 'report.html'}", flush=True)
    print(table(fits, json.loads((audit_out / "summary.json").read_text())))
    print(f"\n{time.perf_counter() - start:.0f} s in all. Runs, checkpoints and metrics.json: {out}; "
          f"the audit's report: {audit_out / 'report.html'} (issues.csv: every label, most suspicious first)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
