"""Dataset page: class balance per split, sample images, and image properties by class."""

import random

import pandas as pd
import streamlit as st

from core.config import TrainConfig
from core.dataset import split_validation
from core.images import decode
from pages import charts
from pages.shared import image_properties, require_dataset

st.title("Dataset")
index = require_dataset()
if index is None:
    st.stop()

st.caption(f"`{index.root}` · classes: {', '.join(index.classes)}")

st.subheader("Class distribution")
defaults = TrainConfig(data_dir=str(index.root))
train, val = split_validation(index.training, defaults.val_fraction, defaults.seed)
counts = pd.DataFrame(
    [
        {"split": split, "class": name, "images": n}
        for split, samples in (
            ("Training (train part)", train),
            ("validation", val),
            ("Testing", index.testing),
        )
        for name, n in index.counts(samples).items()
    ]
)
st.plotly_chart(charts.distribution(counts), width="stretch")
st.caption(
    f"Validation is carved out of Training: {defaults.val_fraction:.0%}, stratified, "
    f"seed {defaults.seed} (the Train page's defaults)."
)

st.subheader("Samples")
left, right = st.columns([1, 4])
split = left.radio("Split", ["Training", "Testing"], horizontal=True)
per_class = left.slider("Per class", 2, 8, 4)
if left.button("Reshuffle"):
    st.session_state["sample_seed"] = random.randrange(1 << 30)
rng = random.Random(st.session_state.get("sample_seed", 0))
samples = index.training if split == "Training" else index.testing
with right:
    for label, name in enumerate(index.classes):
        group = [s for s in samples if s.label == label]
        chosen = rng.sample(group, min(per_class, len(group)))
        st.markdown(f"**{name}**")
        cols = st.columns(per_class)
        for col, sample in zip(cols, chosen):
            try:
                image = decode(sample.path)
                image.thumbnail((192, 192))
                col.image(image, caption=f"{sample.path.name} ({image.width}x{image.height})")
            except Exception as exc:  # a broken file is shown, not fatal
                col.error(f"{sample.path.name}: {exc}")

st.subheader("Image properties by class")
st.markdown(
    "If image size, colour mode or file format differ between classes, a model can learn "
    "those instead of anatomy. Everything is converted to RGB and resized before training, "
    "but borders and resolution can still give the class away."
)
props = image_properties(str(index.root))
summary = props.groupby("class").agg(
    images=("file", "size"),
    distinct_sizes=("width", lambda s: props.loc[s.index, ["width", "height"]].drop_duplicates().shape[0]),
    median_width=("width", "median"),
    median_height=("height", "median"),
    share_512x512=(
        "width",
        lambda s: ((props.loc[s.index, "width"] == 512) & (props.loc[s.index, "height"] == 512)).mean(),
    ),
    median_kB=("kB", "median"),
)
st.dataframe(summary.style.format({"share_512x512": "{:.0%}", "median_kB": "{:.0f}"}), width="stretch")
modes = pd.crosstab(props["class"], props["mode"])
formats = pd.crosstab(props["class"], props["format"] + " as " + props["extension"])
left, right = st.columns(2)
left.markdown("**Colour modes**")
left.dataframe(modes, width="stretch")
right.markdown("**File formats (by content) and extensions**")
right.dataframe(formats, width="stretch")
st.plotly_chart(charts.sizes(props), width="stretch")
