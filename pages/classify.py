"""Classify page: upload scans, get the prediction and a saliency overlay for each."""

import streamlit as st

from core.errors import ImageDecodeError
from core.explain import METHODS, overlay
from pages import charts
from pages.shared import (
    ACCEPTED_UPLOADS,
    DISCLAIMER,
    active_run,
    classifier,
    explainer,
    model_stamp,
    registry,
)

st.title("Classify")
st.warning(DISCLAIMER)
run = active_run()
if run is None:
    st.info("No trained run yet: train one on the Train page, then pick it in the sidebar.")
    st.stop()
limit = st.get_option("server.maxUploadSize")
st.caption(
    f"Model: run `{run.id}`. Accepted: {', '.join(ACCEPTED_UPLOADS).upper()} files up to "
    f"{limit} MB each; other files are refused with the reason."
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
files = st.file_uploader("MRI slices", type=ACCEPTED_UPLOADS, accept_multiple_files=True)
if not files:
    st.stop()

stamp = model_stamp(run)
model = classifier(str(registry().root), run.id, stamp)
cam = explainer(str(registry().root), run.id, stamp)
for upload in files:
    st.divider()
    try:
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
        heat = cam.heatmap(image, model.classes.index(label), method)
    middle.image(overlay(image, heat, alpha, colormap), caption=f"{method} for {label}")
    right.plotly_chart(charts.probabilities(probs), width="stretch", key=f"p-{upload.file_id}")
