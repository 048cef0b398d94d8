"""A one-page, self-contained HTML report of one scan's prediction (print it to PDF).

It carries what a reader needs to judge the output: the image as the model saw it, the
saliency overlay, every class probability, and the run behind them with its test
figures and calibration. It never carries patient data: only the name it is given.
"""

from __future__ import annotations

import base64
import html
import io
from datetime import UTC, datetime

import numpy as np
from PIL import Image

from core.evaluation.external import external_entries
from core.intervals import format_interval
from core.registry import Run

NOT_A_DEVICE = (
    "Research and teaching demo. Not a diagnostic device: never use this output for a clinical decision."
)


def _png_data_uri(image: np.ndarray) -> str:
    out = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(out, format="PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()


def _figure(image: np.ndarray, caption: str) -> str:
    source = _png_data_uri(image)
    return f"<figure><img src='{source}'><figcaption>{html.escape(caption)}</figcaption></figure>"


def _figures_rows(run: Run) -> str:
    """The run's figures with their 95% intervals: official, clean, and each set from
    elsewhere it was scored on (its figures usually read lower: the point of showing them)."""
    metrics = run.metrics or {}
    sets = [("official Testing", metrics)]
    if metrics.get("clean"):
        sets.append(("clean test set (no copy in Training)", metrics["clean"]))
    sets += [(f"from elsewhere: {entry.get('name', '?')}", entry) for entry in external_entries(run)]
    return "".join(_figures_row(name, m) for name, m in sets if "accuracy" in m)


def _figures_row(name: str, m: dict) -> str:
    ci = m.get("intervals") or {}
    accuracy = format_interval(m["accuracy"], ci.get("accuracy"))
    macro_f1 = format_interval(m["macro_f1"], ci.get("macro_f1"), percent=False)
    return f"<tr><td>{html.escape(name)}</td><td>{m['n']}</td><td>{accuracy}</td><td>{macro_f1}</td></tr>"


def _calibration_text(run: Run, calibrated: bool) -> str:
    calibration = run.read("calibration.json") or {}
    if not calibration:
        return "No calibration was fitted for this run: probabilities are the raw softmax."
    test = calibration.get("test", {})
    before, after = test.get("ece_before", float("nan")), test.get("ece_after", float("nan"))
    used = "temperature-scaled" if calibrated else "raw softmax (temperature scaling off)"
    return (
        f"Probabilities shown: {used}. Temperature {calibration['temperature']:.3f}, fitted on "
        f"{calibration.get('fitted_on', 'validation')} images; expected calibration error on "
        f"Testing {before:.3f} before, {after:.3f} after."
    )


def _ood_block(ood_score: float | None, threshold: float | None, note: str, run: Run) -> str:
    """The out-of-distribution verdict: a warning above the prediction when the scan is
    unusual, a line of figures otherwise, the reason when the run has no check."""
    from core.model.ood import RULE, WARNING, unavailable_note

    if ood_score is None or threshold is None:
        return f"<p class='note'>{html.escape(note or unavailable_note(run.id))}</p>"
    figures = f"out-of-distribution score {ood_score:,.1f}, threshold {threshold:,.1f} ({RULE})"
    if ood_score > threshold:
        return f"<p class='warn'>{WARNING}: {html.escape(figures)}. The prediction below is unreliable.</p>"
    return f"<p class='note'>Within the training distribution: {html.escape(figures)}.</p>"


def scan_report_html(
    name: str,
    image: np.ndarray,
    overlay: np.ndarray | None,
    probabilities: dict[str, float],
    run: Run,
    method: str = "Grad-CAM",
    calibrated: bool = False,
    ood_score: float | None = None,
    ood_threshold: float | None = None,
    ood_note: str = "",
) -> str:
    """`ood_score` and `ood_threshold`: the scan's out-of-distribution score and the
    run's threshold (None: no check; `ood_note` says why, by default that the run has
    no fitted check)."""
    label = max(probabilities, key=probabilities.get)
    bars = "".join(
        f"<tr><td>{html.escape(c)}</td><td>{p:.1%}</td>"
        f"<td><div style='background:#4472c4;height:12px;width:{p * 200:.0f}px'></div></td></tr>"
        for c, p in sorted(probabilities.items(), key=lambda kv: -kv[1])
    )
    pictures = _figure(image, "as the model sees it")
    if overlay is not None:
        pictures += _figure(overlay, f"{method} for {label}")
    created = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    headline = f"Prediction: {html.escape(label)} ({probabilities[label]:.1%})"
    unusual = ood_score is not None and ood_threshold is not None and ood_score > ood_threshold
    # An unusual scan keeps its prediction, in grey text instead of a heading.
    headline = f"<p class='note'>{headline}, unreliable: see above</p>" if unusual else f"<h2>{headline}</h2>"
    return f"""<!doctype html><html><head><meta charset="utf-8">
<title>Scan report: {html.escape(name)}</title>
<style>body{{font-family:sans-serif;max-width:900px;margin:auto}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px}} figure{{display:inline-block;margin:8px}}
img{{width:299px;image-rendering:pixelated}}
.warn{{border:2px solid #c00;padding:8px;font-weight:bold}} .note{{color:#555}}</style>
</head><body>
<h1>Scan report</h1>
<p class="warn">{NOT_A_DEVICE}</p>
<p>File: <code>{html.escape(name)}</code> · created {created}</p>
{_ood_block(ood_score, ood_threshold, ood_note, run)}
{headline}
{pictures}
<table><tr><th>class</th><th>probability</th><th></th></tr>{bars}</table>
<h2>Model</h2>
<p>Run <code>{html.escape(run.id)}</code> · InceptionV3, input {run.config.get("input_size")} px ·
weights {html.escape(str(run.config.get("weights")))} ·
training mode {html.escape(str(run.config.get("mode")))}</p>
<table><tr><th>test set</th><th>images</th><th>accuracy (95% interval)</th>
<th>macro F1 (95% interval)</th></tr>{_figures_rows(run)}</table>
<p>{html.escape(_calibration_text(run, calibrated))}</p>
</body></html>"""
