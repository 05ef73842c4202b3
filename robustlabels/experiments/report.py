"""The report of a suite's finished cells: ``results.csv``, ``report.md`` and ``curves.png``.

Everything is read back from the cell folders (``metrics.json``, ``noise.json``, ``failed.json``), so the
report can be rebuilt at any time (``--report-only``) and always matches what is on disk. Files are written
atomically. Accuracies are fractions in ``results.csv`` and percentages in ``report.md``.

Each dataset reports the number its suite entry declares (``metric`` and ``selection``, see
:attr:`~robustlabels.experiments.suite.DatasetSpec.result_key`): the final test accuracy by default; e.g. the test
F1 of class 1 at the best validation-F1 epoch for STORM's SMS task. A suite whose datasets all keep the default
writes exactly the report it always did.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from robustlabels.experiments.runner import failed_path, metrics_path, read_config
from robustlabels.experiments.suite import Cell, DatasetSpec, Suite, missing_data, repo_root
from robustlabels.io import atomic_write_bytes, atomic_write_text

COLUMNS = ("dataset", "noise", "rate", "realized_rate", "strategy", "seed", "best_test_acc", "final_test_acc",
           "train_seconds")  # fmt: skip
CELL_FILES = (
    "Each cell's folder under `cells/` holds its merged `config.yaml`, `log.txt` (whose first line is the exact fit "
    "command) and `run/version_0/` with `metrics.json`, `noise.json` and the last checkpoint."
)
METRICS = {"final_test_acc": "Final test accuracy", "best_test_acc": "Best test accuracy (max over epochs)"}
PROTOCOL_COLUMNS = ("metric", "selection", "value")  # results.csv, when a dataset declares metric or selection
METRIC_NAMES = {"accuracy": "test accuracy", "f1": "test F1 of class 1"}
VALIDATION_NAMES = {"accuracy": "validation-accuracy", "f1": "validation-F1"}
CURVE_KEYS = {"accuracy": "test/acc", "f1": "test/f1"}


@dataclass(frozen=True)
class CellResult:
    """A finished cell as read from disk."""

    cell: Cell
    summary: dict[str, Any]
    history: list[dict[str, float]]
    realized_rate: float | None  # fraction of wrong training labels
    fake_data: bool


@dataclass(frozen=True)
class Collected:
    """The state of every cell of a suite: finished, failed (with the reason) and not run yet."""

    results: list[CellResult]
    failed: list[tuple[Cell, str]]
    missing: list[Cell]


def read_result(out: Path, cell: Cell) -> CellResult | None:
    """The cell's results, or None if it has not finished."""
    path = metrics_path(out, cell)
    if not path.is_file():
        return None
    payload = json.loads(path.read_text(encoding="utf-8"))
    summary = payload.get("summary", {})
    noise_file = path.with_name("noise.json")
    noise = json.loads(noise_file.read_text(encoding="utf-8")) if noise_file.is_file() else {}
    realized = noise.get("realized_rate_train", summary.get("final_noise_rate"))
    config = read_config(out, cell) or {}
    fake = bool((config.get("data") or {}).get("init_args", {}).get("fake", False))
    return CellResult(cell, summary, payload.get("history", []), realized, fake)


def collect(cells: Sequence[Cell], out: Path) -> Collected:
    """Sort the cells into finished, failed and not run."""
    results, failed, missing = [], [], []
    for cell in cells:
        result = read_result(out, cell)
        failure = failed_path(out, cell)
        if result is not None:
            results.append(result)
        elif failure.is_file():
            failed.append((cell, json.loads(failure.read_text(encoding="utf-8")).get("error", "")))
        else:
            missing.append(cell)
    return Collected(results, failed, missing)


# ---- results.csv ----------------------------------------------------------------------------------------
def _round(value: Any, digits: int) -> Any:
    return round(value, digits) if isinstance(value, (int, float)) else ""


def _declares_protocols(suite: Suite) -> bool:
    """Whether some dataset of the suite reports another number than the final test accuracy."""
    return not all(spec.default_protocol for spec in suite.datasets.values())


def results_csv(suite: Suite, results: Sequence[CellResult]) -> str:
    """One row per finished cell, columns :data:`COLUMNS` (accuracies and rates as fractions), then
    :data:`PROTOCOL_COLUMNS` (each dataset's metric, selection and reported value) when a dataset declares them."""
    protocols = _declares_protocols(suite)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS + (PROTOCOL_COLUMNS if protocols else ()))
    for r in results:
        spec = suite.datasets[r.cell.dataset]
        setting = spec.setting(r.cell.setting)
        row = [r.cell.dataset, setting.noise, f"{setting.rate:g}", _round(r.realized_rate, 6),
               r.cell.strategy, r.cell.seed, _round(r.summary.get("best_test_acc"), 6),
               _round(r.summary.get("final_test_acc"), 6), _round(r.summary.get("train_seconds"), 3)]  # fmt: skip
        if protocols:
            row += [spec.metric, spec.selection, _round(r.summary.get(spec.result_key), 6)]
        writer.writerow(row)
    return buffer.getvalue()


# ---- report.md ------------------------------------------------------------------------------------------
def mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (n − 1); the deviation is None for a single value."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def format_accuracy(values: Sequence[float], *, expected: int, paper: float | None = None,
                    tolerance: float | None = None) -> str:  # fmt: skip
    """``"58.2 ± 1.3"`` in % from fractions, ``(n=k)`` when fewer seeds than expected, ``(paper X)``; with the
    paper's ``tolerance`` (points) also our mean's gap to it and whether it is within: ``(paper X; Δ -1.2 ≤ 2)``."""
    if not values:
        return "—" + (f" (paper {paper:g})" if paper is not None else "")
    mean, std = mean_std([100.0 * v for v in values])
    text = f"{mean:.1f}" + (f" ± {std:.1f}" if std is not None else "")
    text += f" (n={len(values)})" if len(values) < expected else ""
    if paper is None:
        return text
    gap = mean - paper
    within = f"; Δ {gap:+.1f} {'≤' if abs(gap) <= tolerance else '>'} {tolerance:g}" if tolerance is not None else ""
    return f"{text} (paper {paper:g}{within})"


def _values(results: Sequence[CellResult], cell_filter: dict[str, Any], key: str) -> list[float]:
    return [
        float(r.summary[key])
        for r in results
        if all(getattr(r.cell, k) == v for k, v in cell_filter.items()) and isinstance(r.summary.get(key), (int, float))
    ]


def realized_text(results: Sequence[CellResult], dataset: str, setting: str) -> str:
    """Mean realized noise rate (wrong training labels) of a setting, in %."""
    mine = [r for r in results if (r.cell.dataset, r.cell.setting) == (dataset, setting)]
    rates = [r.realized_rate for r in mine if r.realized_rate is not None]
    return f"{100.0 * statistics.fmean(rates):.1f}" if rates else "—"


def accuracy_table(suite: Suite, dataset: str, results: Sequence[CellResult], key: str) -> list[str]:
    """Markdown rows: one per setting, one column per strategy (mean ± std over seeds, in %)."""
    strategies = list(suite.strategies)
    lines = ["| setting | realized noise (%) | " + " | ".join(strategies) + " |",
             "|---|---|" + "---|" * len(strategies)]  # fmt: skip
    for setting in suite.datasets[dataset].settings:
        row = [f"{setting.noise} {setting.rate:g}", realized_text(results, dataset, setting.label)]
        for strategy in strategies:
            values = _values(results, {"dataset": dataset, "setting": setting.label, "strategy": strategy}, key)
            reported = key == suite.datasets[dataset].result_key  # the paper's number goes beside ours there
            paper = suite.paper_number(dataset, setting, strategy) if reported else None
            row.append(format_accuracy(values, expected=len(suite.seeds), paper=paper.value if paper else None,
                                       tolerance=paper.tolerance if paper else None))  # fmt: skip
        lines.append("| " + " | ".join(row) + " |")
    return lines


def table_captions(spec: DatasetSpec) -> dict[str, str]:
    """Summary key -> markdown caption of a dataset's two tables: its reported number (beside the paper's), then
    the test metric's maximum over epochs. Datasets on the defaults keep the captions of :data:`METRICS`."""
    if spec.default_protocol:
        return {key: f"**{title} (%)**" for key, title in METRICS.items()}
    name = METRIC_NAMES[spec.metric]
    reported = (f"Final {name}" if spec.selection == "final"
                else f"{name[0].upper()}{name[1:]} at the best {VALIDATION_NAMES[spec.metric]} epoch")  # fmt: skip
    protocol = f" (metric `{spec.metric}`, selection `{spec.selection}`)"
    return {spec.result_key: f"**{reported} (%)**{protocol}", spec.best_key: f"**Best {name} (max over epochs) (%)**"}


def dataset_section(suite: Suite, dataset: str, results: Sequence[CellResult]) -> list[str]:
    """The report section of one dataset: its base config, epochs, and the two tables of :func:`table_captions`."""
    mine = [r for r in results if r.cell.dataset == dataset]
    epochs = sorted({int(r.summary["epochs"]) for r in mine if "epochs" in r.summary})
    lines = [f"## {dataset}", "", f"Base config `{suite.datasets[dataset].config}`; "
             f"{len(mine)} finished cell(s); epochs run: {', '.join(map(str, epochs)) or '—'}.", ""]  # fmt: skip
    missing = missing_data(suite.datasets[dataset])
    if missing and not mine:
        return [*lines, f"**Not run here**: {missing}.", ""]
    for key, caption in table_captions(suite.datasets[dataset]).items():
        lines += [caption, "", *accuracy_table(suite, dataset, results, key), ""]
    return lines


def status_section(collected: Collected) -> list[str]:
    """Failed cells (with the reason and the log) and how many cells have not run yet."""
    lines = []
    if collected.failed:
        lines += ["## Failed cells", ""]
        lines += [f"- `{cell.name}`: {error} (log: `{cell.path / 'log.txt'}`)" for cell, error in collected.failed]
        lines.append("")
    if collected.missing:
        names = ", ".join(f"`{c.name}`" for c in collected.missing[:20])
        more = f" and {len(collected.missing) - 20} more" if len(collected.missing) > 20 else ""
        lines += ["## Not run yet", "", f"{len(collected.missing)} cell(s): {names}{more}.", ""]
    return lines


def notes_section(suite: Suite) -> list[str]:
    """How the numbers were made: seeds, statistics, paper numbers."""
    seeds = ", ".join(map(str, suite.seeds))
    noise = ("`data.init_args.noise_seed: k` (which labels are flipped), so seeds are independent replicates of noise "
             "and training" if suite.noise_seed is None else f"every seed trains on the same noisy labels (noise seed "
             f"{suite.noise_seed}, as the paper's one noise file), so seeds replicate training only")  # fmt: skip
    lines = [
        "## Notes", "",
        f"- Seeds {seeds}. Seed k sets `seed_everything: k` (initialisation, augmentation) and "
        f"{noise}. " + ("Seed k also sets `data.init_args.split_seed: k`: the batch order, the clean meta pool "
                        "and a validation split the data does not ship differ between seeds."
                        if suite.seed_sets_split else "The validation split, the training subset and the batch "
                        "order follow `split_seed`, which the suite does not vary."),
        "- Cells show mean ± sample standard deviation (n − 1) over the finished seeds, in %; `(n=k)` marks a "
        "setting with fewer finished seeds than the suite lists. Final = last epoch; best = maximum over epochs "
        "of the clean test accuracy (an oracle choice, shown only to measure memorization).",
        "- Realized noise: the fraction of training labels that differ from the true ones, averaged over cells.",
    ]  # fmt: skip
    for spec in suite.datasets.values() if _declares_protocols(suite) else ():
        lines.append(f"- `{spec.name}` reports {_protocol_text(spec)}.")
    sources = sorted({n.source for n in suite.paper if n.source})
    if suite.paper:
        what = ("the published final test accuracy" if not _declares_protocols(suite)
                else "the published number, in the dataset's metric and selection,")  # fmt: skip
        lines.append(f"- `(paper X)`: {what} for that setting" + (f" ({'; '.join(sources)})." if sources else "."))
    if any(n.tolerance is not None for n in suite.paper):
        lines.append("- `Δ d ≤ t` (or `> t`): our mean minus the paper's number, in points, within (or beyond) the "
                     "gap t the suite still counts as a reproduction.")  # fmt: skip
    return [*lines, ""]


def _protocol_text(spec: DatasetSpec) -> str:
    """How a dataset's reported number is taken, in words, for the report's notes."""
    name = METRIC_NAMES[spec.metric]
    if spec.selection == "final":
        return f"the {name} of the last epoch (metric `{spec.metric}`, selection `final`)"
    return (f"the {name} at the epoch of the best validation score by the same metric, the first of equal ones "
            f"(metric `{spec.metric}`, selection `best_val`)")


def _shown(path: Path) -> str:
    """``path`` relative to the checkout (or the working directory) when it lies inside it."""
    try:
        return str(path.resolve().relative_to(repo_root().resolve()))
    except ValueError:
        return str(path)


def render_report(suite: Suite, collected: Collected, *, command: str, curves: bool) -> str:
    """The whole ``report.md``."""
    done, total = len(collected.results), len(collected.results) + len(collected.failed) + len(collected.missing)
    lines = [f"# Suite `{suite.name}`", "",
             f"Suite file `{_shown(suite.path)}`: {done} of {total} cells finished, {len(collected.failed)} failed.",
             ""]  # fmt: skip
    if any(r.fake_data for r in collected.results):
        lines += ["> **Fake data** (`--data-fake`): some cells trained on random inputs; their numbers mean nothing.",
                  ""]  # fmt: skip
    for dataset in suite.datasets:
        lines += dataset_section(suite, dataset, collected.results)
    if curves:
        what = "accuracy" if all(s.metric == "accuracy" for s in suite.datasets.values()) else "metric"
        lines += [f"## Test {what} per epoch", "", f"![test {what} per epoch, mean over seeds](curves.png)", ""]
    lines += status_section(collected)
    lines += notes_section(suite)
    lines += ["## Command", "", "```bash", command, "```", "", CELL_FILES, ""]
    return "\n".join(lines)


# ---- curves.png -----------------------------------------------------------------------------------------
def mean_curve(histories: Sequence[Sequence[dict[str, float]]], key: str = "test/acc") -> tuple[list[int], list[float]]:
    """Epochs (1-based) and the mean of ``key`` over the runs that logged it at that epoch."""
    per_epoch: dict[int, list[float]] = {}
    for history in histories:
        for row in history:
            if isinstance(row.get(key), (int, float)):
                per_epoch.setdefault(int(row.get("epoch", 0)) + 1, []).append(float(row[key]))
    epochs = sorted(per_epoch)
    return epochs, [statistics.fmean(per_epoch[e]) for e in epochs]


def plot_curves(suite: Suite, results: Sequence[CellResult], path: Path) -> bool:
    """One panel per (dataset, setting): test accuracy per epoch, mean over seeds, one line per strategy.

    A dotted line marks a paper's final accuracy. Returns False (and writes nothing) without results.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = list(dict.fromkeys((r.cell.dataset, r.cell.setting) for r in results))
    if not panels:
        return False
    ncols = min(3, len(panels))
    nrows = -(-len(panels) // ncols)
    figure = Figure(figsize=(max(6.0, 4.6 * ncols), 3.6 * nrows), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, (dataset, label) in zip(axes, panels, strict=False):
        _draw_panel(ax, suite, results, dataset, label)
    for ax in axes[len(panels) :]:
        ax.set_axis_off()
    what = "accuracy" if all(s.metric == "accuracy" for s in suite.datasets.values()) else "metric"
    figure.suptitle(f"suite {suite.name}: clean test {what} per epoch, mean over seeds", fontsize=11)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    atomic_write_bytes(path, buffer.getvalue())
    return True


def _draw_panel(ax: Any, suite: Suite, results: Sequence[CellResult], dataset: str, label: str) -> None:
    from matplotlib import colormaps
    from matplotlib.ticker import MaxNLocator

    colors = colormaps["tab10"]
    spec = suite.datasets[dataset]
    setting = spec.setting(label)
    for index, strategy in enumerate(suite.strategies):
        mine = [r for r in results if (r.cell.dataset, r.cell.setting, r.cell.strategy) == (dataset, label, strategy)]
        epochs, accuracy = mean_curve([r.history for r in mine], CURVE_KEYS[spec.metric])
        if epochs:
            ax.plot(epochs, [100.0 * a for a in accuracy], color=colors(index % 10), marker="." if len(epochs) < 20
                    else None, label=f"{strategy} (n={len(mine)})")  # fmt: skip
        paper = suite.paper_number(dataset, setting, strategy)
        if paper is not None:
            ax.axhline(paper.value, color=colors(index % 10), linestyle=":", label=f"{strategy} (paper)")
    realized = realized_text(results, dataset, label)
    ax.set_title(f"{dataset}: {setting.noise} {setting.rate:g} (realized {realized}%)", fontsize=10)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(f"{METRIC_NAMES[spec.metric]} (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")


# ---- everything -----------------------------------------------------------------------------------------
def write_report(
    suite: Suite, cells: Sequence[Cell], out: str | Path, *, command: str, curves: bool = True
) -> Collected:
    """Write ``results.csv``, ``report.md`` and (if ``curves``) ``curves.png`` for ``cells`` under ``out``.

    ``curves.png`` needs matplotlib (the ``experiments`` extra); without it the report says so.
    """
    out = Path(out)
    collected = collect(cells, out)
    atomic_write_text(out / "results.csv", results_csv(suite, collected.results))
    drawn = (out / "curves.png").is_file()
    if curves:
        try:
            drawn = plot_curves(suite, collected.results, out / "curves.png")
        except ImportError:
            drawn = False
    text = render_report(suite, collected, command=command, curves=drawn)
    if curves and not drawn and collected.results:
        text += "\n(curves.png not drawn: install matplotlib, `pip install 'robustlabels[experiments]'`.)\n"
    atomic_write_text(out / "report.md", text)
    return collected
