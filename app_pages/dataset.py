"""Dataset page: the ways to get the data while there is none, then class balance per
split (the active run's own split), sample images, the duplicate audit, and image
properties by class."""

import random
import threading
from pathlib import Path

import pandas as pd
import streamlit as st

from app_pages import charts
from app_pages.shared import (
    active_run,
    data_roots,
    dataset_audit,
    default_data_dir,
    image_properties,
    inside_data_roots,
    require_dataset,
    shortcut_score,
    thumbnail,
)
from core.data import fetch
from core.data.audit import describe_left_out
from core.data.shortcut import describe as describe_shortcut
from core.errors import PipelineError
from core.intervals import format_interval


@st.cache_resource
def download_lock() -> threading.Lock:
    """One download at a time for the whole server: every session shares the target."""
    return threading.Lock()


def download_target() -> Path:
    """The default dataset folder, or a folder in the data area when that lies outside it."""
    target = Path(default_data_dir()).expanduser().absolute()
    try:
        inside_data_roots(str(target))
        return target
    except PipelineError:
        return data_roots()[0].expanduser().absolute() / "brain-tumor-mri"


def use(fetched: fetch.Fetched) -> None:
    """Make a fetched dataset the session's, and show it."""
    st.session_state["data_dir"] = str(fetched.root)
    st.session_state["fetched"] = fetched.describe()
    st.rerun()


def kaggle_download() -> None:
    target = download_target()
    st.markdown("**1. Download it from Kaggle**")
    st.caption(
        f"[{fetch.KAGGLE_HANDLE}]({fetch.KAGGLE_URL}), about 150 MB, into `{target}` with kagglehub. "
        "Needs internet access to kaggle.com from the server."
    )
    if not st.button("Download from Kaggle", type="primary"):
        return
    lock = download_lock()
    if not lock.acquire(blocking=False):
        st.warning("A download is already running in another session: wait for it, then reload.")
        return
    try:
        # kagglehub offers no progress hook: its progress bar goes to the server's terminal.
        with st.spinner(f"Downloading to `{target}` (progress in the server's terminal) ..."):
            fetched = fetch.download(target, report=st.caption)
    except PipelineError as exc:
        st.error(str(exc))
        return
    finally:
        lock.release()
    use(fetched)


def local_path() -> None:
    where = ", ".join(f"`{r}`" for r in data_roots())
    st.markdown("**2. A folder or zip you already have**")
    st.caption(
        f"It must lie in the data area ({where}). Type its folder into the sidebar's *Dataset folder* "
        "box, or here: a folder is used where it is, a .zip is unpacked next to it."
    )
    typed = st.text_input("Folder or .zip on the server", key="local-data").strip()
    if not typed:
        return
    try:
        source = inside_data_roots(typed)
        with st.spinner(f"Checking `{source}` ..."):
            fetched = fetch.from_local(source, source.with_suffix(""), report=st.caption)
    except PipelineError as exc:
        st.error(str(exc))
        return
    use(fetched)


def by_hand() -> None:
    st.markdown("**3. Unpack it by hand**")
    st.caption(
        f"Download the zip from [Kaggle]({fetch.KAGGLE_URL}) and unpack it so that the folders read as "
        "below (class names are the folder names; Training and Testing need the same ones), then "
        "type `<root>` into the sidebar. On the command line: `python -m core fetch-data --archive FILE`."
    )
    st.code(fetch.LAYOUT_TREE, language=None)


st.title("Dataset")
index = require_dataset()
if index is None:
    st.subheader("Get the data")
    kaggle_download()
    local_path()
    by_hand()
    st.stop()

if note := st.session_state.pop("fetched", None):
    st.success(note)
st.caption(f"`{index.root}` · classes: {', '.join(index.classes)}")

st.subheader("Class distribution")
run = active_run()
data = (run.read("data.json") or {}) if run else {}
if data.get("root") == str(index.root) and "validation" in data.get("counts", {}):
    # The split the active run really used, as its data.json recorded it.
    parts = (("Training (train part)", "train"), ("validation", "validation"), ("Testing", "test"))
    rows = [
        {"split": label, "class": name, "images": n}
        for label, key in parts
        for name, n in data["counts"][key].items()
    ]
    split = data.get("split") or {}
    how = (
        f"grouped by copy group ({split['copy_groups_in_training']} groups of copies kept on one side), "
        f"{split['validation_share']:.1%} of Training"
        if split
        else "drawn per file (this run predates grouped validation: its validation images can have "
        "copies in its train part)"
    )
    note = f"The split of the active run `{run.id}`: validation {how}, seed {run.config.get('seed')}."
else:
    rows = [
        {"split": split, "class": name, "images": n}
        for split, samples in (("Training", index.training), ("Testing", index.testing))
        for name, n in index.counts(samples).items()
    ]
    note = (
        "No run on this dataset is active. Training carves its validation images out of Training, "
        "keeping every group of copies (see the audit below) on one side."
    )
st.plotly_chart(charts.distribution(pd.DataFrame(rows)), width="stretch")
st.caption(note)

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
                picture, (width, height) = thumbnail(str(sample.path), sample.path.stat().st_mtime_ns)
                col.image(picture, caption=f"{sample.path.name} ({width}x{height})")
            except (PipelineError, OSError) as exc:  # a broken file is shown, not fatal
                col.error(f"{sample.path.name}: {exc}")

st.subheader("Duplicates and train/test leakage")
audit = dataset_audit(index)
summary = audit.summary()
st.markdown(
    "Two images count as copies when their bytes are identical, or when their grayscale "
    f"thumbnails correlate at r ≥ {summary['thresholds']['r32']} (32×32) and "
    f"r ≥ {summary['thresholds']['r128']} (128×128) after z-normalisation: this survives "
    "re-encoding, rescaling and brightness/contrast changes, while neighbouring slices of one "
    "patient (r ≈ 0.91-0.94) stay apart. Each image is also compared with the mirror image of "
    "every other, so a left-right flipped copy counts as a copy. The **clean test set** is "
    "Testing minus every image with a copy in Training, keeping one image of each group of twins "
    "within Testing: it is copy-free, not patient-disjoint (other slices of one patient can "
    "still sit on both sides)."
)
m1, m2, m3, m4 = st.columns(4)
m1.metric("Testing images with a copy in Training", summary["testing_with_copy_in_training"])
m2.metric(
    "Clean test set",
    f"{summary['clean_test_size']} of {len(index.testing)}",
    help=f"Left out: {describe_left_out(summary['clean_test_left_out'])}.",
)
m3.metric("Redundant images in Training", summary["redundant_within_training"])
m4.metric("Label conflicts", summary["label_conflict_groups"])
st.caption(
    f"Left out of the clean test set: {describe_left_out(summary['clean_test_left_out'])}. "
    f"{summary['mirrored_near_pairs']} of the {summary['near_duplicate_pairs']} near-copy pairs "
    "are mirror images."
)
per_class = pd.DataFrame(summary["per_class"]).T.rename(
    columns={"testing": "Testing", "leaked": "with a copy in Training", "clean": "clean test set"}
)
st.dataframe(per_class, width="stretch")

groups = sorted(audit.groups, key=lambda g: (-len({audit.splits[m] for m in g}), -len(g)))
conflicts = audit.label_conflicts()
if groups:
    kind = st.radio(
        "Show", ["copies across Training and Testing", "label conflicts", "all copy groups"], horizontal=True
    )
    shown = {
        "copies across Training and Testing": [g for g in groups if len({audit.splits[m] for m in g}) > 1],
        "label conflicts": conflicts,
        "all copy groups": groups,
    }[kind]
    if not shown:
        st.success(f"No {kind}.")
    else:
        pick = st.number_input(f"Group (of {len(shown)})", 1, len(shown), 1) - 1
        members = shown[pick][:8]
        similarity = {
            frozenset(p[:2]): f"{'mirrored, ' if p[4] else ''}r32 {p[2]:.3f}, r128 {p[3]:.3f}"
            for p in audit.near_pairs
        }
        exact = {frozenset(p) for p in audit.exact_pairs}
        cols = st.columns(len(members))
        for col, m in zip(cols, members):
            first = members[0]
            if m == first:
                note = "reference"
            elif frozenset((first, m)) in exact:
                note = "identical bytes"
            else:
                note = similarity.get(frozenset((first, m)), "same group")
            path = index.root / audit.files[m]
            try:
                col.image(thumbnail(str(path), path.stat().st_mtime_ns)[0])
            except (PipelineError, OSError) as exc:
                col.error(str(exc))
            col.caption(
                f"**{audit.splits[m]} / {audit.labels[m]}** · {audit.files[m].split('/')[-1]} · {note}"
            )
else:
    st.success("No exact or near duplicates found.")

st.subheader("Image properties by class")
st.markdown(
    "If image size, colour mode or file format differ between classes, a model can learn "
    "those instead of anatomy. Everything is converted to RGB and resized before training, "
    "but borders and resolution can still give the class away."
)
shortcut = shortcut_score(index)
cv = shortcut["cross_validated"]
s1, s2 = st.columns([1, 3])
s1.metric(
    "Without looking at the brain",
    format_interval(cv["accuracy"], cv["interval"]),
    help="Accuracy of a random forest given only image size, colour mode, format, file size and "
    "border/background statistics, cross-validated over Training with copy groups kept together.",
)
s2.markdown(describe_shortcut(shortcut))
s2.caption(
    "The properties it leans on most: "
    + ", ".join(f"{f['feature']} ({f['importance']:.2f})" for f in shortcut["top_features"])
    + ". A model that reaches 98% on this dataset may partly recognise where an image came from; "
    "the Results page's *Beyond this dataset* shows how it does on scans from elsewhere."
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
