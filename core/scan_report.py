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
    metrics = run.metrics or {}
    sets = [("official Testing", metrics)]
    if metrics.get("clean"):
        sets.append(("clean test set (no copy in Training)", metrics["clean"]))
    return "".join(
        f"<tr><td>{html.escape(name)}</td><td>{m['n']}</td><td>{m['accuracy']:.2%}</td>"
        f"<td>{m['macro_f1']:.3f}</td></tr>"
        for name, m in sets
        if "accuracy" in m
    )


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


def scan_report_html(
    name: str,
    image: np.ndarray,
    overlay: np.ndarray | None,
    probabilities: dict[str, float],
    run: Run,
    method: str = "Grad-CAM",
    calibrated: bool = False,
) -> str:
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
    return f"""<!doctype html><html><head><meta charset="utf-8">
<title>Scan report: {html.escape(name)}</title>
<style>body{{font-family:sans-serif;max-width:900px;margin:auto}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px}} figure{{display:inline-block;margin:8px}}
img{{width:299px;image-rendering:pixelated}}
.warn{{border:2px solid #c00;padding:8px;font-weight:bold}}</style>
</head><body>
<h1>Scan report</h1>
<p class="warn">{NOT_A_DEVICE}</p>
<p>File: <code>{html.escape(name)}</code> · created {created}</p>
<h2>Prediction: {html.escape(label)} ({probabilities[label]:.1%})</h2>
{pictures}
<table><tr><th>class</th><th>probability</th><th></th></tr>{bars}</table>
<h2>Model</h2>
<p>Run <code>{html.escape(run.id)}</code> · InceptionV3, input {run.config.get("input_size")} px ·
weights {html.escape(str(run.config.get("weights")))} ·
training mode {html.escape(str(run.config.get("mode")))}</p>
<table><tr><th>test set</th><th>images</th><th>accuracy</th><th>macro F1</th></tr>{_figures_rows(run)}</table>
<p>{html.escape(_calibration_text(run, calibrated))}</p>
</body></html>"""
