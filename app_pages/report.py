"""A one-page, self-contained HTML report of a run (for sharing or printing to PDF)."""

from __future__ import annotations

import html

import pandas as pd

from app_pages import charts
from core.evaluation.interpret import Interpretation
from core.model.ood import describe_check
from core.registry import Run

DISCLAIMER = "Research and teaching demo. Not a diagnostic device."


def report_html(run: Run, interp: Interpretation) -> str:
    metrics = run.metrics or {}
    sets = {"official Testing": metrics}
    if metrics.get("clean"):
        sets["clean test set"] = metrics["clean"]
    summary = pd.DataFrame(
        {
            name: {"images": m["n"], "accuracy": f"{m['accuracy']:.2%}", "macro F1": f"{m['macro_f1']:.4f}"}
            for name, m in sets.items()
        }
    ).T
    per_class = pd.DataFrame(metrics.get("per_class", {})).T.round(4)
    figures = [charts.confusion(metrics["confusion_matrix"], metrics["classes"])]
    if run.history:
        figures += [charts.curves(run.history, "loss"), charts.curves(run.history, "accuracy")]
    figures.append(charts.class_curves(interp.roc(), "fpr", "tpr", "ROC, one vs rest"))
    parts = [fig.to_html(full_html=False, include_plotlyjs=(i == 0)) for i, fig in enumerate(figures)]
    config = html.escape(pd.Series(run.config).to_string())
    return f"""<!doctype html><html><head><meta charset="utf-8">
<title>Run {html.escape(run.id)}</title>
<style>body{{font-family:sans-serif;max-width:1000px;margin:auto}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px}}</style></head><body>
<h1>Run {html.escape(run.id)}</h1><p><b>{DISCLAIMER}</b></p>
<h2>Test figures</h2>{summary.to_html()}
<h2>Per class (official Testing)</h2>{per_class.to_html()}
<p>{html.escape(describe_check(run))}</p>
{"".join(parts)}
<h2>Configuration</h2><pre>{config}</pre></body></html>"""
