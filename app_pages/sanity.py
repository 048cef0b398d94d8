"""The saliency sanity check on a page: the real map beside the maps of copies of the model
whose learned weights are destroyed (core.explanation.sanity), with their rank correlations.

TensorFlow is imported only once the check is switched on, so pages that merely offer the
toggle load without it.
"""

from __future__ import annotations

import math

import numpy as np
import streamlit as st

from app_pages.shared import dataset, explainer, model_stamp, registry
from core.errors import PipelineError
from core.registry import Run

TOGGLE = "Sanity check: randomise the model"
TOGGLE_HELP = (
    "Computes the same map on copies of the model with its learned weights re-initialised at "
    "random: first the dense head, then the head and the top blocks (Adebayo et al. 2018). "
    "It costs a few extra passes per image, and longer the first time."
)
EXPLANATION = (
    "Each map on the right comes from a copy of the model whose learned weights are destroyed. "
    "A map that barely changes (rank correlation near 1) does not show what the model learned: "
    "it shows the image, not the model's evidence."
)


@st.cache_resource(max_entries=1, show_spinner=False)
def _cascade(models_root: str, run_id: str, stamp: float):
    """The run's randomised copies, built on first use and kept for the next images."""
    from core.explanation.sanity import Cascade

    return Cascade(explainer(models_root, run_id, stamp))


def correlation_text(value: float) -> str:
    if math.isnan(value):
        return "undefined (a flat map has no ranking)"
    return f"{value:+.2f}"


def show(
    run: Run, image: np.ndarray, class_index: int, method: str, alpha: float = 0.45, colormap: str = "jet"
) -> None:
    """The real map and each randomised one side by side, with the rank correlations."""
    from core.explanation.explain import overlay

    cascade = _cascade(str(registry().root), run.id, model_stamp(run))
    with st.spinner(f"{method} on randomised copies of the model ..."):
        result = cascade.check(image, class_index, method)
    st.caption(EXPLANATION)
    columns = st.columns(1 + len(result.steps))
    columns[0].image(overlay(image, result.real, alpha, colormap), caption=f"{method}, trained model")
    for column, step in zip(columns[1:], result.steps):
        column.image(
            overlay(image, step.heatmap, alpha, colormap), caption=f"{method}, {step.randomised} randomised"
        )
        column.caption(f"Rank correlation with the trained model's map: {correlation_text(step.spearman)}")


def for_test_images(run: Run, interp, indices: list[int]) -> None:
    """The check on one of the listed test images, for its predicted class."""
    from core.config import framing_of
    from core.data.images import load_rgb
    from core.explanation.explain import METHODS

    if not indices:
        return
    c1, c2 = st.columns(2)
    names = {i: interp.files[i].split("/")[-1] for i in indices}
    pick = c1.selectbox("Image to check", indices, format_func=names.get, key="sanity-image")
    method = c2.selectbox("Saliency method", METHODS, key="sanity-method")
    try:
        root = dataset(run.config["data_dir"]).root
        image = load_rgb(root / interp.files[pick], int(run.config["input_size"]), framing_of(run.config))
    except PipelineError as exc:
        st.error(f"{names[pick]}: {exc}")
        return
    show(run, image, int(interp.y_pred[pick]), method)
