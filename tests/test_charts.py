"""Chart builders of the pages: what a figure draws, without a browser."""

from __future__ import annotations

import pandas as pd

from app_pages import charts


def test_size_chart_draws_one_marker_per_class_split_and_size():
    rows = [("glioma", "Training", 512, 512)] * 5 + [("glioma", "Testing", 512, 512)] * 2
    rows += [("notumor", "Training", 225, 225), ("notumor", "Training", 512, 512)]
    props = pd.DataFrame(
        [
            {"class": c, "split": s, "width": w, "height": h, "file": f"{i}.jpg", "mode": "L"}
            for i, (c, s, w, h) in enumerate(rows)
        ]
    )
    fig = charts.sizes(props)
    markers = [
        (trace.name, int(x), int(y), int(n))
        for trace in fig.data
        for x, y, n in zip(trace.x, trace.y, trace.marker.size)
    ]
    assert sorted(markers) == sorted(
        [
            ("glioma, Training", 512, 512, 5),
            ("glioma, Testing", 512, 512, 2),
            ("notumor, Training", 225, 225, 1),
            ("notumor, Training", 512, 512, 1),
        ]
    )
