"""The three files an audit writes: ``issues.csv``, ``summary.json`` and ``report.html``.

- ``issues.csv``: every example, most suspicious first (by the final method's scores; ties by index).
- ``summary.json``: counts, the estimated noise (joint and transition), each method's parameters and timing,
  input hashes, and, when the true labels are known, how well each method found the wrong labels.
- ``report.html``: one self-contained page (inline CSS, base64 PNG thumbnails, SVG charts drawn here; no
  scripts, no external references) that opens offline.

Orientation, as everywhere in the audit: ``joint[i, j] = P(true = i, given = j)`` and
``transition[i, j] = P(given = j | true = i)``. The three files are written as one set
(:class:`robustlabels.output_set.OutputSet`, sealed by ``summary.json``): they appear together or not at all, even
if the run is killed; nothing but them is ever replaced.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from robustlabels.audit.scoring import flag_metrics, precision_at_k, ranking_order
from robustlabels.audit.types import AuditData, MethodResult
from robustlabels.errors import InputError
from robustlabels.io import atomic_open, atomic_write_text
from robustlabels.output_set import OutputSet

OUTPUT_FILES = ("issues.csv", "summary.json", "report.html")
ISSUE_COLUMNS = ("index", "given_label", "given_name", "suggested_label", "suggested_name", "score", "flagged",
                 "method")  # fmt: skip
"""Columns of ``issues.csv``; with several methods, ``flagged_by`` and ``<method>_score`` per method follow, then
``true_label`` when the true labels are known."""
JOINT_NOTE = "joint[i][j] = P(true = i, given = j): rows are the (estimated) true label, columns the given label"
TRANSITION_NOTE = "transition[i][j] = P(given = j | true = i): each row of the joint divided by its sum (0 if empty)"
JOINT_SOURCES = {
    "method": "the final method's estimated joint",
    "flags": "the flags: a flagged example's suggested label is taken as its true label, others keep theirs",
}
CSV_CHUNK = 100_000
THUMB_PX = 84
SNIPPET_CHARS = 300


def write_audit(out_dir: str | Path, data: AuditData, results: list[MethodResult], final: MethodResult, *,
                extra: Mapping[str, Any], force: bool = False, top: int = 240) -> dict[str, Any]:  # fmt: skip
    """Write ``issues.csv``, ``summary.json`` and ``report.html`` into ``out_dir`` as one set; return the summary.

    Args:
        out_dir: the output folder, created if missing. Other files in it are left alone. The three files appear
            together or not at all (:class:`robustlabels.output_set.OutputSet`).
        data: the audited dataset (N examples, C classes).
        results: every method's result, each with ``(N,)`` scores, flags and suggestions.
        final: the result that ranks ``issues.csv`` and the report (often also in ``results``).
        extra: merged into the top level of ``summary.json`` (timings, command line); keys must not clash.
        force: replace the three files if they exist.
        top: how many of the most suspicious examples the report shows.

    Raises:
        InputError: a shape or label range does not match the data, the files exist and not ``force``, or
            another run is writing into ``out_dir``.
    """
    _validate(data, [*results, final])
    with OutputSet(out_dir, OUTPUT_FILES, seal="summary.json", force=force) as files:
        return write_audit_files(files, data, results, final, extra=extra, top=top)


def write_audit_files(files: OutputSet, data: AuditData, results: list[MethodResult], final: MethodResult, *,
                      extra: Mapping[str, Any], top: int = 48) -> dict[str, Any]:  # fmt: skip
    """Write the three files into an open :class:`OutputSet` (published when it closes); return the summary."""
    _validate(data, [*results, final])
    order = ranking_order(final.scores)
    summary = build_summary(data, results, final, extra)
    members = [] if any(r is final for r in results) else results  # final: an ensemble of ``results``
    write_issues(files.path("issues.csv"), data, final, order, members=members)
    atomic_write_text(files.path("summary.json"), json.dumps(summary, indent=2, allow_nan=False) + "\n")
    atomic_write_text(files.path("report.html"), render_html(data, results, final, summary, order[: max(0, top)]))
    return summary


def _validate(data: AuditData, results: list[MethodResult]) -> None:
    n, c = len(data.labels), data.num_classes
    if n == 0:
        raise InputError("the dataset has no examples; nothing to audit")
    if len(data.class_names) != c:
        raise InputError(f"{len(data.class_names)} class names given for {c} classes")
    _check_labels("given labels", data.labels, n, c)
    if data.clean_labels is not None:
        _check_labels("true labels", data.clean_labels, n, c)
    if data.images is not None and (len(data.images) != n or np.ndim(data.images) not in (3, 4)):
        raise InputError(f"images have shape {np.shape(data.images)}; expected ({n}, H, W) or ({n}, H, W, 3)")
    if data.texts is not None and len(data.texts) != n:
        raise InputError(f"{len(data.texts)} texts given for {n} labels")
    for result in results:
        for field in ("scores", "flagged", "suggested"):
            shape = np.shape(getattr(result, field))
            if shape != (n,):
                raise InputError(f"method {result.method!r}: {field} has shape {shape}; expected ({n},)")
        _check_labels(f"method {result.method!r}: suggested labels", result.suggested, n, c)
        if result.joint is not None and np.shape(result.joint) != (c, c):
            raise InputError(f"method {result.method!r}: joint has shape {np.shape(result.joint)}; expected ({c}, {c})")


def _check_labels(what: str, labels: np.ndarray, n: int, c: int) -> None:
    array = np.asarray(labels)
    if array.shape != (n,):
        raise InputError(f"{what} have shape {array.shape}; expected ({n},)")
    if array.size and (array.min() < 0 or array.max() >= c):
        raise InputError(f"{what} must lie in [0, {c - 1}]; found {array.min()}..{array.max()}")


# ---------------------------------------------------------------------------------------------- issues.csv


def write_issues(path: Path, data: AuditData, final: MethodResult, order: np.ndarray, *,
                 members: Sequence[MethodResult] = ()) -> None:  # fmt: skip
    """Stream one CSV row per example, in ``order``, to ``path`` atomically (columns: :data:`ISSUE_COLUMNS`).

    ``members``: the methods an ensemble combined; each example then also gets ``flagged_by`` (the members that
    flagged it, ``;``-separated) and each member's own score, so a reader sees which methods agree.
    """
    member_columns = ["flagged_by", *(f"{r.method}_score" for r in members)] if members else []
    header = [*ISSUE_COLUMNS, *member_columns, *(["true_label"] if data.clean_labels is not None else [])]
    with atomic_open(path, "w", newline="", encoding="utf-8", buffering=1 << 20) as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for rows in _issue_rows(data, final, order, members):
            writer.writerows(rows)


def _score_text(score: np.ndarray) -> list[Any]:
    """float32 scores in their own shortest form (0.1, not 0.10000000149011612), others as float64."""
    return (score.astype(str) if score.dtype in (np.float16, np.float32) else score.astype(np.float64)).tolist()


def _issue_rows(data: AuditData, final: MethodResult, order: np.ndarray,
                members: Sequence[MethodResult]) -> Iterator[Iterator[tuple[Any, ...]]]:  # fmt: skip
    """Rows in chunks: numpy gathers and ``tolist`` per chunk keep 1M rows at a few seconds."""
    names = np.asarray(data.class_names, dtype=object)
    labels, suggested = np.asarray(data.labels), np.asarray(final.suggested)
    scores, flagged = np.asarray(final.scores), np.asarray(final.flagged, dtype=bool)
    for start in range(0, len(order), CSV_CHUNK):
        index = order[start : start + CSV_CHUNK]
        given, suggestion = labels[index], suggested[index]
        columns = [index.tolist(), given.tolist(), names[given].tolist(), suggestion.tolist(),
                   names[suggestion].tolist(), _score_text(scores[index]), flagged[index].tolist(),
                   [final.method] * len(index)]  # fmt: skip
        if members:
            votes = [np.asarray(r.flagged, dtype=bool)[index] for r in members]
            columns.append([";".join(r.method for r, v in zip(members, row, strict=True) if v)
                            for row in zip(*votes, strict=True)])  # fmt: skip
            columns.extend(_score_text(np.asarray(r.scores)[index]) for r in members)
        if data.clean_labels is not None:
            columns.append(np.asarray(data.clean_labels)[index].tolist())
        yield zip(*columns, strict=True)


# -------------------------------------------------------------------------------------------- summary.json


def estimated_joint(data: AuditData, final: MethodResult) -> tuple[np.ndarray, str]:
    """The ``(C, C)`` joint (rows true, columns given) and its source, a key of :data:`JOINT_SOURCES`."""
    if final.joint is not None:
        return np.asarray(final.joint, dtype=np.float64), "method"
    c, labels = data.num_classes, np.asarray(data.labels, dtype=np.int64)
    true = np.where(np.asarray(final.flagged, dtype=bool), np.asarray(final.suggested, dtype=np.int64), labels)
    counts = np.bincount(true * c + labels, minlength=c * c).reshape(c, c)
    return counts / max(1, len(labels)), "flags"


def transition_matrix(joint: np.ndarray) -> np.ndarray:
    """``(C, C)`` ``T[i, j] = P(given = j | true = i)``: the joint's rows normalised (empty rows stay 0)."""
    rows = joint.sum(axis=1, keepdims=True)
    transition: np.ndarray = np.divide(joint, rows, out=np.zeros_like(joint, dtype=np.float64), where=rows > 0)
    return transition


def build_summary(data: AuditData, results: list[MethodResult], final: MethodResult,
                  extra: Mapping[str, Any]) -> dict[str, Any]:  # fmt: skip
    """The contents of ``summary.json`` (JSON-ready: plain types, no NaN)."""
    joint, source = estimated_joint(data, final)
    is_error = None if data.clean_labels is None else np.asarray(data.clean_labels) != np.asarray(data.labels)
    summary: dict[str, Any] = {
        "source": data.source, "num_examples": len(data.labels), "num_classes": data.num_classes,
        "class_names": list(data.class_names), "method": final.method,
        "num_flagged": int(np.count_nonzero(final.flagged)), "noise_rate": final.noise_rate,
        "joint_source": JOINT_SOURCES[source], "joint_note": JOINT_NOTE, "joint": joint,
        "transition_note": TRANSITION_NOTE, "transition": transition_matrix(joint),
        "methods": [_method_entry(result, is_error) for result in results],
        "final": _method_entry(final, is_error), "input_hashes": dict(data.hashes), "files": list(OUTPUT_FILES),
    }  # fmt: skip
    if is_error is not None:
        summary["true_noise_rate"] = float(is_error.mean())
    clashes = sorted(set(summary) & set(extra))
    if clashes:
        raise ValueError(f"`extra` would overwrite summary keys: {', '.join(clashes)}")
    jsonable: dict[str, Any] = _jsonable({**summary, **extra})
    return jsonable


def _method_entry(result: MethodResult, is_error: np.ndarray | None) -> dict[str, Any]:
    entry = {"name": result.method, "params": result.params, "seconds": result.seconds,
             "num_flagged": int(np.count_nonzero(result.flagged)), "noise_rate": result.noise_rate}  # fmt: skip
    if is_error is not None:
        entry["flag_metrics"] = flag_metrics(result.flagged, is_error)
        entry["precision_at_k"] = precision_at_k(result.scores, is_error)
    return entry


def _jsonable(value: Any) -> Any:
    """Plain JSON types: numpy to Python, dict keys to str, non-finite floats to None, other objects to str."""
    if isinstance(value, Mapping):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_jsonable(item) for item in (value.tolist() if isinstance(value, np.ndarray) else value)]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return str(value)


# --------------------------------------------------------------------------------------------- report.html

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:22px;margin:0 0 8px}h2{font-size:17px;margin:28px 0 8px}
dl{display:grid;grid-template-columns:max-content auto;gap:2px 16px;margin:0}dt{color:#666}dd{margin:0}
table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}
th:first-child,td:first-child{text-align:left}
.grid{display:flex;flex-wrap:wrap;gap:8px}
.card{width:150px;border:1px solid #ccc;border-radius:4px;padding:6px;margin:0;font-size:12px;background:#fafafa}
.card.flagged{border-color:#b22222}.card.txt{width:220px}
.card img{display:block;margin:0 auto 4px;image-rendering:pixelated}
.text{display:-webkit-box;-webkit-line-clamp:6;-webkit-box-orient:vertical;overflow:hidden;
overflow-wrap:anywhere;margin:0 0 4px;color:#333}
.idx{font-size:20px;text-align:center;color:#888;padding:20px 0}.nm{font-weight:600}
figure.chart{margin:0}figcaption{color:#555;font-size:12px;max-width:760px}
"""


def render_html(data: AuditData, results: list[MethodResult], final: MethodResult, summary: dict[str, Any],
                suspects: np.ndarray) -> str:  # fmt: skip
    """The whole report page; ``suspects`` are the indices shown as cards, most suspicious first."""
    e = html.escape
    methods = ", ".join(e(r.method) for r in results) or e(final.method)
    facts = [("Source", e(data.source or "(not given)")), ("Examples (N)", f"{len(data.labels):,}"),
             ("Classes (C)", str(data.num_classes)), ("Methods", methods), ("Ranking by", e(final.method)),
             ("Flagged", f"{summary['num_flagged']:,}"),
             ("Estimated noise rate", f"{final.noise_rate:.2%}")]  # fmt: skip
    if summary.get("model_inputs"):
        facts.insert(4, ("Models and votes on", e(summary["model_inputs"])))
    if "true_noise_rate" in summary:
        facts.append(("True noise rate", f"{summary['true_noise_rate']:.2%}"))
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>Label audit: {e(data.source)}</title><style>{CSS}</style></head><body>",
             "<h1>Label audit</h1><dl>", *(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in facts), "</dl>"]  # fmt: skip
    if "true_noise_rate" in summary:
        parts.append(_metrics_table(summary))
    parts += [f"<h2>Top {len(suspects)} suspects</h2>", '<div class="grid">',
              *(_card(data, final, int(i)) for i in suspects), "</div>"]  # fmt: skip
    matrix = np.asarray(summary["transition"], dtype=np.float64)
    caption = (f"Estimated noise P(given = column | true = row), from {e(summary['joint_source'])}. Off-diagonal "
               "cells are shaded relative to the largest off-diagonal value; the diagonal (kept labels) is grey.")
    parts += ["<h2>Class-to-class noise</h2>", _figure(heatmap_svg(matrix, data.class_names), caption)]
    caption = "Scores of every example (higher = more suspicious); counts on a log scale."
    parts += ["<h2>Score distribution</h2>", _figure(histogram_svg(final.scores, final.flagged), caption)]
    parts.append("<p>Every example, most suspicious first: <code>issues.csv</code>. Details: "
                 "<code>summary.json</code>.</p></body></html>\n")
    return "\n".join(parts)


def _figure(svg: str, caption: str) -> str:
    return f'<figure class="chart">{svg}<figcaption>{caption}</figcaption></figure>'


def _metrics_table(summary: dict[str, Any]) -> str:
    entries = [*summary["methods"], {**summary["final"], "name": f"final ranking ({summary['final']['name']})"}]
    ks = sorted({int(k) for entry in entries for k in entry["precision_at_k"]})
    head = "".join(f"<th>P@{k}</th>" for k in ks)
    rows = [f"<tr><th>method</th><th>flagged</th><th>precision</th><th>recall</th><th>F1</th>{head}</tr>"]
    for entry in entries:
        m, at = entry["flag_metrics"], entry["precision_at_k"]
        cells = [f"{m[key]:.3f}" for key in ("precision", "recall", "f1")]
        cells += [f"{at[str(k)]:.3f}" if str(k) in at else "" for k in ks]
        rows.append(f"<tr><td>{html.escape(entry['name'])}</td><td>{entry['num_flagged']:,}</td>"
                    + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")  # fmt: skip
    return "<h2>Against the true labels</h2><table>" + "".join(rows) + "</table>"


def _card(data: AuditData, final: MethodResult, i: int) -> str:
    names, e = data.class_names, html.escape
    if data.images is not None:
        body = _img_tag(np.asarray(data.images[i]))
    elif data.texts is not None:
        text = str(data.texts[i])
        body = f'<p class="text">{e(text[:SNIPPET_CHARS])}{"…" if len(text) > SNIPPET_CHARS else ""}</p>'
    else:
        body = f'<div class="idx">#{i}</div>'
    lines = [f"<b>#{i}</b> · score {float(final.scores[i]):.3g}",
             f'given <span class="nm">{e(names[int(data.labels[i])])}</span>',
             f'suggested <span class="nm">{e(names[int(final.suggested[i])])}</span>']  # fmt: skip
    if data.clean_labels is not None:
        lines.append(f'true <span class="nm">{e(names[int(data.clean_labels[i])])}</span>')
    kind = (" flagged" if bool(final.flagged[i]) else "") + (" txt" if data.images is None and data.texts else "")
    return f'<figure class="card{kind}">{body}<figcaption>{"<br>".join(lines)}</figcaption></figure>'


def _img_tag(image: np.ndarray) -> str:
    """A base64 PNG ``<img>``: small images at their own size, shown ~84 px wide by the browser (pixelated, so
    CIFAR's 32 px cost ~3 KB each, not 4.6 KB upscaled); large ones scaled down to 84 px."""
    from PIL import Image

    if image.dtype != np.uint8:
        image = np.clip(image, 0, 255).astype(np.uint8)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    picture = Image.fromarray(image)
    side = max(picture.size)
    factor = max(1, round(THUMB_PX / side)) if side <= THUMB_PX else 1
    if side > THUMB_PX:
        picture.thumbnail((THUMB_PX, THUMB_PX), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", optimize=True)
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    width, height = picture.width * factor, picture.height * factor
    return f'<img alt="" width="{width}" height="{height}" src="data:image/png;base64,{encoded}">'


def _shade(value: float, rgb: tuple[int, int, int]) -> str:
    """A colour between white (0) and ``rgb`` (1)."""
    t = min(1.0, max(0.0, value))
    return "#" + "".join(f"{round(255 + (c - 255) * t):02x}" for c in rgb)


def heatmap_svg(matrix: np.ndarray, names: list[str]) -> str:
    """An inline SVG heatmap of a ``(C, C)`` matrix (rows true, columns given) with names and values."""
    c, e = len(names), html.escape
    cell = max(12, min(44, 520 // max(1, c)))
    short = [n if len(n) <= 14 else n[:13] + "…" for n in map(str, names)]
    label = [e(n) for n in short]
    margin = 24 + 7 * max(map(len, short), default=1)
    left, top = margin + 18, margin + 18
    off = matrix[~np.eye(c, dtype=bool)]
    scale = float(off.max()) if off.size and off.max() > 0 else 1.0
    size = (left + c * cell + margin // 2 + 8, top + c * cell + 8)  # rotated column names lean right
    out = [f'<svg width="{size[0]}" height="{size[1]}" viewBox="0 0 {size[0]} {size[1]}" font-size="11" '
           'role="img" aria-label="class-to-class noise">',
           f'<text x="{left + c * cell / 2}" y="12" text-anchor="middle">given label</text>',
           f'<text transform="translate(12 {top + c * cell / 2}) rotate(-90)" text-anchor="middle">'
           "true label</text>"]  # fmt: skip
    for k, name in enumerate(label):
        mid = k * cell + cell / 2
        out.append(f'<text x="{left - 4}" y="{top + mid + 4}" text-anchor="end">{name}</text>')
        out.append(f'<text transform="translate({left + mid + 4} {top - 4}) rotate(-60)">{name}</text>')
    for i in range(c):
        for j in range(c):
            v = float(matrix[i, j])
            if v <= 0 and c > 40:
                continue  # large C: leave zero cells out to keep the file small
            strength = v if i == j else v / scale
            fill = _shade(strength * 0.6, (60, 60, 60)) if i == j else _shade(strength, (178, 34, 34))
            x, y = left + j * cell, top + i * cell
            out.append(f'<rect x="{x}" y="{y}" width="{cell}" height="{cell}" fill="{fill}" stroke="#eee">'
                       f"<title>true {label[i]}, given {label[j]}: {v:.4f}</title></rect>")  # fmt: skip
            if cell >= 28 and v > 0:
                ink = "#fff" if strength > 0.55 else "#222"
                out.append(f'<text x="{x + cell / 2}" y="{y + cell / 2 + 4}" text-anchor="middle" '
                           f'fill="{ink}">{v:.2f}</text>')  # fmt: skip
    out.append("</svg>")
    return "".join(out)


def histogram_svg(scores: np.ndarray, flagged: np.ndarray, *, bins: int = 40) -> str:
    """An inline SVG histogram of ``(N,)`` scores, flagged and not flagged side by side, log-scaled counts."""
    values, flags = np.asarray(scores, dtype=np.float64), np.asarray(flagged, dtype=bool)
    finite = np.isfinite(values)
    lo, hi = (float(values[finite].min()), float(values[finite].max())) if finite.any() else (0.0, 1.0)
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, bins + 1)
    kept = np.histogram(values[finite & ~flags], edges)[0]
    marked = np.histogram(values[finite & flags], edges)[0]
    width, height, left, bottom = 680, 220, 48, 30
    plot_w, plot_h = width - left - 10, height - bottom - 24
    top_log = math.log10(1 + max(1, int(kept.max()), int(marked.max())))
    bar = plot_w / bins / 2
    out = [f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-size="11" role="img" '
           'aria-label="score histogram">']  # fmt: skip
    for power in range(0, int(top_log) + 1):
        y = 24 + plot_h - plot_h * math.log10(1 + 10**power) / top_log
        out.append(f'<line x1="{left}" x2="{width - 10}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>'
                   f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end">{10**power:,}</text>')  # fmt: skip
    for b in range(bins):
        for offset, count, colour in ((0, kept[b], "#5b7fa6"), (1, marked[b], "#b22222")):
            h = plot_h * math.log10(1 + int(count)) / top_log
            x = left + (2 * b + offset) * bar
            out.append(f'<rect x="{x:.1f}" y="{24 + plot_h - h:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                       f'fill="{colour}"><title>{int(count):,}</title></rect>')  # fmt: skip
    axis_y = 24 + plot_h
    out.append(f'<line x1="{left}" x2="{width - 10}" y1="{axis_y}" y2="{axis_y}" stroke="#888"/>')
    for fraction in (0.0, 0.5, 1.0):
        x = left + fraction * plot_w
        out.append(f'<text x="{x:.1f}" y="{axis_y + 16}" text-anchor="middle">{lo + fraction * (hi - lo):.3g}</text>')
    out.append(f'<rect x="{left + 8}" y="6" width="10" height="10" fill="#5b7fa6"/><text x="{left + 22}" y="15">'
               f'not flagged ({int(kept.sum()):,})</text><rect x="{left + 168}" y="6" width="10" height="10" '
               f'fill="#b22222"/><text x="{left + 182}" y="15">flagged ({int(marked.sum()):,})</text>'
               "</svg>")  # fmt: skip
    return "".join(out)
