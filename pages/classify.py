"""Classify page: scans one by one (overlay, DICOM window, report) or a whole batch as a table."""

from __future__ import annotations

import zlib

import numpy as np
import pandas as pd
import streamlit as st

from core import batch
from core.config import FLAG_BELOW
from core.dicom import Window, is_dicom, read_dicom
from core.errors import ImageDecodeError, PipelineError
from core.explain import METHODS, overlay
from core.images import fit_square
from core.scan_report import scan_report_html
from pages import charts
from pages.shared import (
    ACCEPTED_UPLOADS,
    BATCH_UPLOADS,
    DISCLAIMER,
    active_run,
    classifier,
    explainer,
    inside_data_roots,
    model_stamp,
    registry,
)

MAX_THUMBNAILS = 24


def loaded(run):
    """The run's classifier and saliency visualisers, loaded once per process."""
    stamp = model_stamp(run)
    return classifier(str(registry().root), run.id, stamp), explainer(str(registry().root), run.id, stamp)


def dicom_view(upload, size: int) -> np.ndarray:
    """A DICOM upload's slice, with frame and window controls seeded from the file."""
    scan = read_dicom(upload.getvalue())
    key = upload.file_id
    frame = 0
    if scan.n_frames > 1:
        frame = st.slider(f"Frame of {upload.name}", 1, scan.n_frames, 1, key=f"frame-{key}") - 1
    window = None
    if not scan.is_colour:
        source = "from the file" if scan.window_from_file else "from the pixel range (the file has none)"
        c1, c2 = st.columns(2)
        center = c1.number_input("Window centre", value=scan.window.center, key=f"wc-{key}", help=source)
        width = c2.number_input("Window width", value=scan.window.width, min_value=1.0, key=f"ww-{key}")
        window = Window(center, width)
    tags = " · ".join(f"{k}: {v}" for k, v in scan.info.items() if v)
    st.caption(f"{tags} · identifying tags are not read")
    return np.asarray(fit_square(scan.image(frame, window), size), dtype=np.uint8)


def one_by_one(run, method: str, alpha: float, colormap: str, calibrated: bool) -> None:
    files = st.file_uploader("MRI slices", type=ACCEPTED_UPLOADS, accept_multiple_files=True)
    if not files:
        return
    model, cam = loaded(run)
    for upload in files:
        st.divider()
        try:
            if is_dicom(upload.getvalue()):
                image = dicom_view(upload, model.input_size)
            else:
                image = model.prepare(upload.getvalue())
        except ImageDecodeError as exc:
            st.error(f"**{upload.name}**: {exc}")
            continue
        probs = dict(zip(model.classes, model.probabilities(image, calibrated=calibrated)[0].tolist()))
        label = max(probs, key=probs.get)
        note = f" · calibrated, T = {model.temperature:.2f}" if calibrated else ""
        st.markdown(f"**{upload.name}** — prediction: **{label}** ({probs[label]:.1%}{note})")
        left, middle, right = st.columns(3)
        left.image(image, caption="as the model sees it")
        with st.spinner(f"{method} ..."):
            heat = overlay(image, cam.heatmap(image, model.classes.index(label), method), alpha, colormap)
        middle.image(heat, caption=f"{method} for {label}")
        right.plotly_chart(charts.probabilities(probs), width="stretch", key=f"p-{upload.file_id}")
        report = scan_report_html(upload.name, image, heat, probs, run, method, calibrated)
        st.download_button(
            "Report (HTML, prints to PDF)",
            report,
            file_name=f"report-{upload.name.rsplit('.', 1)[0][:80]}.html",
            mime="text/html",
            key=f"r-{upload.file_id}",
        )


def batch_sources() -> list[batch.Source]:
    """Uploaded files and zips, or every file of a folder in the data area."""
    uploads = st.file_uploader(
        "Scans or zip archives", type=BATCH_UPLOADS, accept_multiple_files=True, key="batch-files"
    )
    folder = st.text_input("…or a folder on the server (inside the data area)", key="batch-folder").strip()
    sources: list[batch.Source] = []
    for upload in uploads or []:
        if upload.name.lower().endswith(".zip"):
            try:
                sources += [(f"{upload.name}/{n}", d) for n, d in batch.zip_sources(upload.getvalue())]
            except PipelineError as exc:
                st.error(f"**{upload.name}**: {exc}")
        else:
            sources.append((upload.name, upload.getvalue()))
    if folder:
        try:
            sources += batch.folder_sources(inside_data_roots(folder))
        except PipelineError as exc:
            st.error(str(exc))
    return sources


def _identity(source) -> tuple:
    return (len(source), zlib.crc32(source)) if isinstance(source, bytes) else (str(source),)


def batch_table(run, method: str, alpha: float, colormap: str, calibrated: bool) -> None:
    sources = batch_sources()
    if not sources:
        return
    model, cam = loaded(run)
    # Classify once per input set; sorting, the flag threshold and selecting rows only rerun.
    key = (run.id, model_stamp(run), calibrated, tuple((n, *_identity(s)) for n, s in sources))
    if st.session_state.get("batch-key") != key:
        bar = st.progress(0.0, text="Classifying ...")
        results = batch.classify(
            model, sources, calibrated, progress=lambda d, t: bar.progress(d / t, text=f"Classifying {d}/{t}")
        )
        bar.empty()
        st.session_state["batch-key"], st.session_state["batch-results"] = key, results
    results = st.session_state["batch-results"]
    flag_below = st.slider("Flag when the top probability is below", 0.0, 1.0, FLAG_BELOW, 0.05)
    rows = pd.DataFrame(batch.table(results, model.classes, flag_below))
    flagged = int(rows["flagged"].sum())
    st.markdown(f"**{len(rows)}** slices from {len(sources)} files · **{flagged}** flagged")
    probability = st.column_config.ProgressColumn(format="percent", min_value=0.0, max_value=1.0)
    selection = st.dataframe(
        rows,
        hide_index=True,
        width="stretch",
        on_select="rerun",
        selection_mode="multi-row",
        column_config={"confidence": probability} | {f"p_{c}": probability for c in model.classes},
        key="batch-table",
    )
    st.download_button("Download CSV", batch.to_csv(rows.to_dict("records")), "predictions.csv", "text/csv")
    chosen = selection.selection.rows[:MAX_THUMBNAILS]
    st.caption(f"Select rows (up to {MAX_THUMBNAILS}) to see their {method} overlays.")
    columns = st.columns(4)
    for n, i in enumerate(chosen):
        row = rows.iloc[i]
        with columns[n % 4]:
            if row["error"]:
                st.error(f"{row['file']}: {row['error']}")
                continue
            image = batch.slice_image(sources, results[i], model.input_size)
            heat = cam.heatmap(image, model.classes.index(row["predicted"]), method)
            st.image(overlay(image, heat, alpha, colormap), caption=f"{row['file']}: {row['predicted']}")


st.title("Classify")
st.warning(DISCLAIMER)
run = active_run()
if run is None:
    st.info("No trained run yet: train one on the Train page, then pick it in the sidebar.")
    st.stop()
limit = st.get_option("server.maxUploadSize")
st.caption(
    f"Model: run `{run.id}`. Accepted: {', '.join(ACCEPTED_UPLOADS).upper()} files up to "
    f"{limit} MB each (batch: also ZIP; DICOM files without an extension go in a zip or a folder); "
    "other files are refused with the reason."
)
c1, c2, c3 = st.columns(3)
method = c1.selectbox("Saliency method", METHODS)
alpha = c2.slider("Overlay opacity", 0.0, 1.0, 0.45)
colormap = c3.selectbox("Colour map", ["jet", "inferno", "viridis", "turbo", "magma"])
calibrated = False
if run.file("calibration.json").is_file():
    calibrated = st.toggle(
        "Calibrated probabilities",
        True,
        help="Temperature scaling fitted on the run's validation set; "
        "it changes the probabilities, never the predicted class.",
    )
scans, table = st.tabs(["One by one", "Batch"])
with scans:
    one_by_one(run, method, alpha, colormap, calibrated)
with table:
    batch_table(run, method, alpha, colormap, calibrated)
