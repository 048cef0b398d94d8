"""Classify page: scans one by one (overlay, DICOM window, report) or a whole batch as a table."""

from __future__ import annotations

import time
import zlib
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from app_pages import charts, sanity
from app_pages.shared import (
    ACCEPTED_UPLOADS,
    BATCH_UPLOADS,
    DISCLAIMER,
    active_run,
    classifier,
    explainer,
    inside_data_roots,
    model_stamp,
    registry,
    settle_tensorflow,
)
from core.config import FLAG_BELOW
from core.data.dicom import Window, is_dicom, read_dicom
from core.data.images import model_view
from core.errors import ImageDecodeError, PipelineError
from core.explanation.explain import METHODS, overlay
from core.model.ood import QUANTILE, WARNING
from core.model.tta import DEFAULT_VIEWS, VIEWS, View, tta_heatmap, views
from core.serving import batch
from core.serving.console import log_answer
from core.serving.scan_report import scan_report_html

MAX_THUMBNAILS = 24
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"  # see examples/README.md
settle_tensorflow()  # this page imports TensorFlow (core.serving.batch), with or without a model


def loaded(run):
    """The run's classifier and saliency visualisers, loaded once per process."""
    stamp = model_stamp(run)
    return classifier(str(registry().root), run.id, stamp), explainer(str(registry().root), run.id, stamp)


def dicom_view(upload, size: int, framing: str) -> tuple[np.ndarray, str]:
    """A DICOM upload's slice, with frame and window controls seeded from the file, and
    the file's Modality tag ("" when it has none)."""
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
    image = model_view(scan.image(frame, window), size, framing)
    return image, scan.info.get("Modality") or ""


@dataclass
class Settings:
    method: str
    alpha: float
    colormap: str
    calibrated: bool
    tta: list[View]
    side_by_side: bool
    sanity: bool = False


def saliency(
    cam, image: np.ndarray, class_index: int, s: Settings, activations: np.ndarray | None = None
) -> list[tuple[str, np.ndarray]]:
    """(caption, overlay) pairs: one map, or one per ensemble member side by side; with
    TTA, each map is the mean of its views' maps mapped back to the scan. `activations`:
    the scan's last block's from the prediction's pass (Grad-CAM then needs no pass)."""
    if s.side_by_side:
        maps = [
            (name, partial(cam.member_heatmap, class_index=class_index, method=s.method, member=i))
            for i, (name, _, _) in enumerate(cam.members)
        ]
    else:
        heat = partial(cam.heatmap, class_index=class_index, method=s.method)
        maps = [("", partial(heat, activations=activations) if not s.tta else heat)]
    suffix = " with TTA" if s.tta else ""
    return [
        (
            f"{s.method}{suffix} {name}".strip(),
            overlay(image, tta_heatmap(heat, image, s.tta) if s.tta else heat(image), s.alpha, s.colormap),
        )
        for name, heat in maps
    ]


def ood_warning(score: float | None, threshold: float | None, modality: str) -> str | None:
    """The warning above a prediction: an unusual score, or a DICOM of another modality
    than MR (a file that says what it is needs no score to be out of place); else None."""
    reasons = []
    if score is not None and threshold is not None and score > threshold:
        reasons.append(
            f"out-of-distribution score {score:,.1f} is above the run's threshold {threshold:,.1f}, "
            f"which {QUANTILE:.0%} of its validation images stay under"
        )
    if modality and modality.upper() != "MR":
        reasons.append(f"the DICOM file's Modality is {modality}, not MR")
    return f"{WARNING}: {'; '.join(reasons)}." if reasons else None


def show_prediction(name: str, label: str, p: float, note: str, out, model, modality: str) -> None:
    """The prediction, under a warning (and in grey) when the scan is out of place."""
    score = None if out.ood_scores is None else float(out.ood_scores[0])
    warning = ood_warning(score, None if model.ood is None else model.ood.threshold, modality)
    if warning:
        st.warning(warning)
        st.markdown(f":gray[{name} — prediction: {label} ({p:.1%}{note}), unreliable for such an image]")
    else:
        st.markdown(f"**{name}** — prediction: **{label}** ({p:.1%}{note})")
    if score is None:
        st.caption(model.ood_note)
    elif score <= model.ood.threshold:  # an unusual score is in the warning already
        extra = f"; {model.ood_note}" if model.ood_note else ""
        st.caption(f"Out-of-distribution score {score:,.1f} (threshold {model.ood.threshold:,.1f}){extra}")


@dataclass(frozen=True)
class Example:
    """An example scan from examples/, shaped like an upload so it takes the same path."""

    name: str
    data: bytes

    def getvalue(self) -> bytes:
        return self.data

    @property
    def file_id(self) -> str:
        return f"example-{self.name}"


def try_an_example() -> list[Example]:
    """The example scan picked (none, or one), read from examples/."""
    names = sorted(p.name for p in EXAMPLES.glob("*.jpg"))
    name = st.selectbox(
        "Try an example",
        names,
        index=None,
        placeholder="an example scan (Testing images with no copy in Training)",
        format_func=lambda n: f"{n.split('_', 1)[1]} ({n.split('_', 1)[0]})",
    )
    return [Example(name, (EXAMPLES / name).read_bytes())] if name else []


def one_by_one(run, s: Settings) -> None:
    files = st.file_uploader("MRI slices", type=ACCEPTED_UPLOADS, accept_multiple_files=True)
    files = [*(files or []), *try_an_example()]
    if not files:
        return
    model, cam = loaded(run)
    for upload in files:
        started = time.monotonic()
        st.divider()
        modality = ""
        try:
            if is_dicom(upload.getvalue()):
                image, modality = dicom_view(upload, model.input_size, model.framing)
            else:
                image = model.prepare(upload.getvalue())
        except ImageDecodeError as exc:
            st.error(f"**{upload.name}**: {exc}")
            continue
        # One pass: probabilities, the out-of-distribution score, Grad-CAM's activations.
        out = model.outputs(image, calibrated=s.calibrated, tta=s.tta, activations=not s.tta)
        probs = dict(zip(model.classes, out.probabilities[0].tolist()))
        label = max(probs, key=probs.get)
        note = f" · calibrated, T = {model.temperature:.2f}" if s.calibrated else ""
        note += f" · TTA over {len(s.tta)} views" if s.tta else ""
        show_prediction(upload.name, label, probs[label], note, out, model, modality)
        with st.spinner(f"{s.method} ..."):
            maps = None if out.activations is None else out.activations[0]
            overlays = saliency(cam, image, model.classes.index(label), s, maps)
        columns = st.columns(len(overlays) + 2)
        columns[0].image(image, caption="as the model sees it")
        for column, (caption, picture) in zip(columns[1:], overlays):
            column.image(picture, caption=f"{caption} for {label}")
        columns[-1].plotly_chart(charts.probabilities(probs), width="stretch", key=f"p-{upload.file_id}")
        log_answer(time.monotonic() - started)
        if s.sanity:
            sanity.show(run, image, model.classes.index(label), s.method, s.alpha, s.colormap)
        caption, picture = overlays[0]  # side by side: the first member's map
        report = scan_report_html(
            upload.name,
            image,
            picture,
            probs,
            run,
            caption,
            s.calibrated,
            ood_score=None if out.ood_scores is None else float(out.ood_scores[0]),
            ood_threshold=None if model.ood is None else model.ood.threshold,
            ood_note=model.ood_note,
        )
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


def batch_table(run, s: Settings) -> None:
    sources = batch_sources()
    if not sources:
        return
    model, cam = loaded(run)
    # Classify once per input set; sorting, the flag threshold and selecting rows only rerun.
    settings = (run.id, model_stamp(run), s.calibrated, tuple(v.name for v in s.tta))
    key = (*settings, tuple((n, *_identity(source)) for n, source in sources))
    if st.session_state.get("batch-key") != key:
        bar = st.progress(0.0, text="Classifying ...")
        results = batch.classify(
            model,
            sources,
            s.calibrated,
            progress=lambda d, t: bar.progress(d / t, text=f"Classifying {d}/{t}"),
            tta=s.tta,
        )
        bar.empty()
        st.session_state["batch-key"], st.session_state["batch-results"] = key, results
    results = st.session_state["batch-results"]
    flag_below = st.slider("Flag when the top probability is below", 0.0, 1.0, FLAG_BELOW, 0.05)
    rows = pd.DataFrame(batch.table(results, model.classes, flag_below))
    flagged = int(rows["flagged"].sum())
    unusual = int((rows["unusual"] == True).sum())  # noqa: E712 (None: no check)
    st.markdown(
        f"**{len(rows)}** slices from {len(sources)} files · **{flagged}** flagged "
        f"(low confidence, unreadable, or **{unusual}** unusual: not like the training MRI slices)"
    )
    if model.ood is None:
        st.caption(model.ood_note)
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
    st.caption(f"Select rows (up to {MAX_THUMBNAILS}) to see their {s.method} overlays.")
    columns = st.columns(4)
    for n, i in enumerate(chosen):
        row = rows.iloc[i]
        with columns[n % 4]:
            if row["error"]:
                st.error(f"{row['file']}: {row['error']}")
                continue
            image = batch.slice_image(sources, results[i], model.input_size, model.framing)
            for caption, picture in saliency(cam, image, model.classes.index(row["predicted"]), s):
                st.image(picture, caption=f"{row['file']}: {row['predicted']} ({caption})")


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
tta: list = []
if st.toggle("Test-time augmentation", help="Average the prediction (and the saliency map) over views"):
    names = st.multiselect("Views", list(VIEWS), list(DEFAULT_VIEWS), help="Maps are mapped back to the scan")
    tta = views(names) if names else []
side_by_side = False
if run.config.get("kind") == "ensemble":
    side_by_side = st.toggle("Members' maps side by side", help="Otherwise their weighted mean")
sanity_check = st.toggle(sanity.TOGGLE, help=sanity.TOGGLE_HELP)
settings = Settings(method, alpha, colormap, calibrated, tta, side_by_side, sanity_check)
scans, table = st.tabs(["One by one", "Batch"])
with scans:
    one_by_one(run, settings)
with table:
    batch_table(run, settings)
