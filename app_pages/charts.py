"""Plotly figures used by the pages (pure functions: data in, figure out)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go


def distribution(counts: pd.DataFrame) -> go.Figure:
    """Grouped bars of images per class and split; counts: columns split, class, images."""
    counts = counts.copy()
    counts["percent"] = 100 * counts["images"] / counts.groupby("split")["images"].transform("sum")
    counts["label"] = counts.apply(lambda r: f"{r['images']} ({r['percent']:.0f}%)", axis=1)
    fig = px.bar(
        counts,
        x="class",
        y="images",
        color="split",
        barmode="group",
        text="label",
        hover_data={"percent": ":.1f"},
    )
    fig.update_layout(margin=dict(t=30, b=10), legend_title_text="")
    return fig


def confusion(matrix: list[list[int]], classes: list[str]) -> go.Figure:
    """Counts with row-normalised percentages (recall per true class) in each cell."""
    m = np.asarray(matrix, dtype=float)
    rows = m.sum(axis=1, keepdims=True)
    pct = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0) * 100
    text = [[f"{int(m[i, j])}<br>{pct[i, j]:.1f}%" for j in range(len(classes))] for i in range(len(classes))]
    fig = go.Figure(
        go.Heatmap(
            z=pct,
            x=classes,
            y=classes,
            text=text,
            texttemplate="%{text}",
            colorscale="Blues",
            zmin=0,
            zmax=100,
            colorbar=dict(title="% of true"),
            hovertemplate="true %{y}<br>predicted %{x}<br>%{text}<extra></extra>",
        )
    )
    fig.update_layout(
        xaxis_title="predicted",
        yaxis_title="true",
        yaxis_autorange="reversed",
        margin=dict(t=30, b=10),
        height=420,
    )
    return fig


def curves(history: list[dict], metric: str, kept_epoch: int | None = None) -> go.Figure:
    """Training and validation `metric` per epoch, over both phases; a line at the epoch
    whose weights the model holds."""
    frame = pd.DataFrame(history)
    fig = go.Figure()
    for key, name in ((metric, "training"), (f"val_{metric}", "validation")):
        if key in frame:
            fig.add_trace(go.Scatter(x=frame["epoch"], y=frame[key], mode="lines+markers", name=name))
    if "phase" in frame and frame["phase"].nunique() > 1:
        first_finetune = frame.loc[frame["phase"] == "finetune", "epoch"].min()
        fig.add_vline(x=first_finetune - 0.5, line_dash="dot", annotation_text="fine-tuning")
    if kept_epoch:
        fig.add_vline(
            x=kept_epoch, line_color="green", annotation_text="model", annotation_position="bottom left"
        )
    fig.update_layout(title=metric, xaxis_title="epoch", margin=dict(t=40, b=10), height=300)
    return fig


def probabilities(probs: dict[str, float]) -> go.Figure:
    names = list(probs)
    fig = go.Figure(
        go.Bar(
            x=[probs[n] for n in names],
            y=names,
            orientation="h",
            text=[f"{probs[n]:.1%}" for n in names],
            textposition="auto",
        )
    )
    fig.update_layout(xaxis_range=[0, 1], height=60 + 32 * len(names), margin=dict(t=10, b=10, l=10))
    return fig


def sizes(properties: pd.DataFrame) -> go.Figure:
    """One marker per class, split and image size, its area growing with the number of
    images: one marker per image (7,000 on the full dataset) made the page slow to draw."""
    groups = (
        properties.groupby(["class", "split", "width", "height"])
        .agg(images=("file", "size"), example=("file", "first"), mode=("mode", "first"))
        .reset_index()
    )
    fig = px.scatter(
        groups,
        x="width",
        y="height",
        color="class",
        symbol="split",
        size="images",
        size_max=28,
        opacity=0.6,
        hover_data=["images", "example", "mode"],
    )
    fig.update_layout(margin=dict(t=30, b=10), height=420)
    return fig


def reliability(rows_before: list[dict], rows_after: list[dict] | None = None) -> go.Figure:
    """Accuracy per confidence bin against the diagonal of perfect calibration."""
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect", line=dict(dash="dot")))
    for rows, name in ((rows_before, "model"), (rows_after, "temperature-scaled")):
        if rows:
            used = [r for r in rows if r["count"]]
            fig.add_trace(
                go.Scatter(
                    x=[r["confidence"] for r in used],
                    y=[r["accuracy"] for r in used],
                    mode="lines+markers",
                    name=name,
                    text=[f"{r['count']} images" for r in used],
                )
            )
    fig.update_layout(
        xaxis_title="confidence",
        yaxis_title="accuracy",
        height=360,
        xaxis_range=[0, 1],
        yaxis_range=[0, 1.02],
        margin=dict(t=30, b=10),
    )
    return fig


def class_curves(curves: dict[str, dict], x: str, y: str, title: str) -> go.Figure:
    fig = go.Figure()
    for name, c in curves.items():
        fig.add_trace(go.Scatter(x=c[x], y=c[y], mode="lines", name=f"{name} (AUC {c['auc']:.3f})"))
    fig.update_layout(title=title, xaxis_title=x, yaxis_title=y, height=360, margin=dict(t=40, b=10))
    return fig
