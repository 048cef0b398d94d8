"""What every page shares: settings, cached scans and models, and the sidebar.

Pages stay thin: they call core/ through the cached helpers here, so a rerun never
rescans the dataset or reloads a model.
"""

from __future__ import annotations

import gc
import os
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from core.data.dataset import LAYOUT_HELP, DatasetIndex, resolve_inside, scan_dataset
from core.data.images import read_header
from core.errors import PipelineError
from core.intervals import format_interval
from core.registry import DEFAULT_MODELS_DIR, Registry, Run

DISCLAIMER = (
    "Research and teaching demo. **Not a diagnostic device**: never use its output for a clinical decision."
)
ACCEPTED_UPLOADS = ["jpg", "jpeg", "png", "dcm"]
BATCH_UPLOADS = [*ACCEPTED_UPLOADS, "zip"]


def figure_text(metrics: dict, key: str, percent: bool = True) -> str | None:
    """A figure of metrics.json with its 95% interval, '98.3% (97.6-99.0)'; None when
    the metrics lack it."""
    if key not in metrics:
        return None
    return format_interval(metrics[key], (metrics.get("intervals") or {}).get(key), percent)


def headline(
    container, label: str, value: float, interval: list[float] | None, percent: bool = True, **kw
) -> None:
    """A headline figure with its 95% interval on a line of its own under it: st.metric
    shows its value in a large font that cuts a long text such as '98.3% (97.6-99.0)'."""
    container.metric(label, format_interval(value, None, percent), **kw)
    if interval:
        low, high = (format_interval(bound, None, percent) for bound in interval)
        container.caption(f"95% interval {low} to {high}")
    else:
        container.caption("no interval: `python -m core evaluate` adds it")


def default_data_dir() -> str:
    return os.environ.get("BTMRI_DATA", "data/brain-tumor-mri")


def data_roots() -> list[Path]:
    """The data area: folders the app may read datasets and scans from. BTMRI_DATA_ROOTS
    (separated by os.pathsep), else the folder that holds the default dataset."""
    configured = os.environ.get("BTMRI_DATA_ROOTS")
    if configured:
        return [Path(p) for p in configured.split(os.pathsep) if p]
    return [Path(default_data_dir()).expanduser().absolute().parent]


def inside_data_roots(path: str) -> Path:
    """A typed folder, resolved; raises PipelineError when it lies outside the data area."""
    return resolve_inside(path, data_roots())


def registry() -> Registry:
    return Registry(os.environ.get("BTMRI_MODELS", str(DEFAULT_MODELS_DIR)))


def _folder_stamp(root: str) -> tuple:
    """Changes when files are added or removed in a class folder (cheap: a few stats)."""
    base = Path(root).expanduser()
    stamps = []
    for split in ("Training", "Testing"):
        folder = base / split
        if folder.is_dir():
            stamps += [(p.name, p.stat().st_mtime_ns) for p in sorted(folder.iterdir()) if p.is_dir()]
    return tuple(stamps)


@st.cache_data(show_spinner="Scanning the dataset ...", max_entries=4)
def _scan(root: str, stamp: tuple) -> DatasetIndex:
    return scan_dataset(root)


def dataset(root: str) -> DatasetIndex:
    """The scanned dataset (cached), or raises PipelineError (also for a folder outside
    the data area)."""
    root = str(inside_data_roots(root))
    return _scan(root, _folder_stamp(root))


@st.cache_data(show_spinner="Reading image headers ...", max_entries=4)
def _properties(root: str, stamp: tuple) -> pd.DataFrame:
    index = scan_dataset(root)
    rows = []
    for split, samples in (("Training", index.training), ("Testing", index.testing)):
        for sample in samples:
            try:
                header = read_header(sample.path)
                fmt, mode, w, h = header.format, header.mode, header.width, header.height
            except PipelineError:
                fmt, mode, w, h = "unreadable", "-", 0, 0
            rows.append(
                {
                    "split": split,
                    "class": index.classes[sample.label],
                    "file": sample.path.name,
                    "extension": sample.path.suffix.lower(),
                    "format": fmt,
                    "mode": mode,
                    "width": w,
                    "height": h,
                    "kB": sample.path.stat().st_size / 1024,
                }
            )
    return pd.DataFrame(rows)


def image_properties(root: str) -> pd.DataFrame:
    """One row per file from its header only (no pixel decoding), cached."""
    return _properties(root, _folder_stamp(root))


@st.cache_data(max_entries=1024, show_spinner=False)
def thumbnail(path: str, mtime_ns: int) -> tuple[np.ndarray, tuple[int, int]]:
    """A 192 px preview of a file and its original size, decoded once per file version."""
    from core.data.images import decode

    image = decode(Path(path))
    size = image.size
    image.thumbnail((192, 192))
    return np.asarray(image), size


@st.cache_data(max_entries=4, show_spinner=False)
def _stored_audit(root: str, stamp: tuple, cache_root: str):
    from core.data.audit import cached_audit

    return cached_audit(scan_dataset(root), Path(cache_root))


def dataset_audit(index: DatasetIndex):
    """The duplicate/leakage audit, with a progress bar the first time it is computed."""
    from core.data.audit import audit_file, cached_audit

    cache_root = registry().cache_dir
    if not audit_file(index, cache_root).is_file():
        bar = st.progress(0.0, text="Auditing the dataset for duplicates (once per dataset) ...")
        cached_audit(
            index,
            cache_root,
            lambda done, total: bar.progress(done / total, text=f"Reading images {done}/{total}"),
        )
        bar.empty()
    return _stored_audit(str(index.root), _folder_stamp(str(index.root)), str(cache_root))


@st.cache_data(max_entries=4, show_spinner="Measuring what the image properties alone give away ...")
def _shortcut(root: str, stamp: tuple, cache_root: str) -> dict:
    from core.data.audit import cached_audit
    from core.data.shortcut import cached_shortcut_score

    index = scan_dataset(root)
    return cached_shortcut_score(index, cached_audit(index, Path(cache_root)), Path(cache_root))


def shortcut_score(index: DatasetIndex) -> dict:
    """The shortcut score (core.data.shortcut) of this dataset, computed once per dataset."""
    return _shortcut(str(index.root), _folder_stamp(str(index.root)), str(registry().cache_dir))


@st.cache_resource(show_spinner=False)
def settle_tensorflow() -> bool:
    """Import TensorFlow once per process and keep its objects out of garbage collection.

    Once Keras is imported, Streamlit calls keras.backend.clear_session() after every
    script run, which runs a full gc.collect(): with TensorFlow's ~320,000 module objects
    tracked that adds ~0.2 s to every rerun of every page. Those objects live as long as
    the process, so they go to the collector's permanent generation (gc.freeze) right
    after the import. Models are loaded later and stay collectable when evicted.
    """
    import tensorflow  # noqa: F401

    gc.collect()
    gc.freeze()
    return True


@st.cache_resource(max_entries=3, show_spinner="Loading the model ...")
def classifier(models_root: str, run_id: str, stamp: float):
    settle_tensorflow()
    from core.serving.inference import Classifier

    return Classifier(Registry(models_root).get(run_id))


@st.cache_resource(max_entries=3, show_spinner=False)
def explainer(models_root: str, run_id: str, stamp: float):
    from core.explanation.explain import Explainer

    return Explainer(classifier(models_root, run_id, stamp).model)


def model_stamp(run: Run) -> float:
    """Changes when the model or its out-of-distribution check (fitted later by
    `python -m core evaluate`) does: the cached classifier is then loaded again."""
    files = (run.model_path, run.file("ood.json"))
    return max((f.stat().st_mtime for f in files if f.is_file()), default=0.0)


def usable_runs() -> list[Run]:
    """Runs with a saved model, newest first (completed and stopped ones)."""
    return [r for r in registry().list() if r.model_path.is_file() and r.state in ("completed", "stopped")]


def run_label(run: Run) -> str:
    metrics = run.metrics or {}
    accuracy = f"acc {metrics['accuracy']:.1%}" if "accuracy" in metrics else run.state
    return f"{run.id} ({accuracy})"


def active_run() -> Run | None:
    """The run picked in the sidebar, if it still exists."""
    run_id = st.session_state.get("active_run")
    if not run_id:
        return None
    try:
        run = registry().get(run_id)
    except PipelineError:
        return None
    return run if run.model_path.is_file() else None


def sidebar() -> None:
    """Dataset folder and active run, shown on every page."""
    with st.sidebar:
        # Plain session keys (not widget keys) so the choice survives page switches.
        st.session_state.setdefault("data_dir", default_data_dir())
        st.session_state["data_dir"] = st.text_input(
            "Dataset folder", st.session_state["data_dir"], help=LAYOUT_HELP
        ).strip()
        try:
            index = dataset(st.session_state["data_dir"])
            st.caption(
                f"{len(index.classes)} classes · {len(index.training)} Training · "
                f"{len(index.testing)} Testing images"
            )
        except PipelineError as exc:
            st.error(f"{exc}")
            st.caption(
                f"Layout: `{LAYOUT_HELP}`. Get the data from Kaggle: "
                "*Brain Tumor MRI Dataset* (masoudnickparvar)."
            )
        runs = usable_runs()
        ids = [r.id for r in runs]
        if st.session_state.get("active_run") not in ids:
            st.session_state["active_run"] = ids[0] if ids else None
        if runs:
            labels = {r.id: run_label(r) for r in runs}
            st.session_state["active_run"] = st.selectbox(
                "Active run", ids, ids.index(st.session_state["active_run"]), format_func=labels.get
            )
            run = active_run()
            if run and run.metrics:
                left, right = st.columns(2)
                ci = run.metrics.get("intervals") or {}
                headline(left, "Test accuracy", run.metrics["accuracy"], ci.get("accuracy"))
                headline(right, "Macro F1", run.metrics["macro_f1"], ci.get("macro_f1"), percent=False)
        else:
            st.info("No trained run yet: start one on the Train page.")
        st.caption(DISCLAIMER)


def require_dataset() -> DatasetIndex | None:
    try:
        return dataset(st.session_state.get("data_dir", default_data_dir()))
    except PipelineError as exc:
        st.warning(f"Pick a dataset folder in the sidebar. {exc}")
        return None


def image_grid(
    run: Run,
    interp,
    indices: list[int],
    show_cam: bool,
    key: str,
    columns: int = 4,
    root: Path | None = None,
    notes: list[str] | None = None,
) -> None:
    """Test images of a run with their probabilities (and a saliency overlay on demand).
    `root`: the folder interp's files are named from, the run's dataset unless given;
    `notes`: one more line per file of interp (an external set's MR sequence)."""
    from core.config import framing_of
    from core.data.images import load_rgb

    if not indices:
        st.caption("None.")
        return
    if root is None:
        try:
            root = dataset(run.config["data_dir"]).root
        except PipelineError as exc:
            st.error(f"The run's dataset is not available: {exc}")
            return
    size = int(run.config["input_size"])
    cols = st.columns(columns)
    for n, i in enumerate(indices):
        with cols[n % columns]:
            try:
                image = load_rgb(root / interp.files[i], size, framing_of(run.config))
            except PipelineError as exc:
                st.error(f"{interp.files[i]}: {exc}")
                continue
            predicted = int(interp.y_pred[i])
            if show_cam:
                from core.explanation.explain import overlay

                cam = explainer(str(registry().root), run.id, model_stamp(run))
                image = overlay(image, cam.heatmap(image, predicted))
            true = interp.classes[interp.y_true[i]]
            st.image(
                image,
                caption=f"{interp.files[i].split('/')[-1]}: true {true}, predicted "
                f"{interp.classes[predicted]} ({interp.probs[i, predicted]:.0%})",
            )
            st.caption(
                " · ".join(f"{c} {p:.0%}" for c, p in zip(interp.classes, interp.probs[i]))
                + f" · loss {interp.losses[i]:.2f}"
                + (f" · {notes[i]}" if notes else "")
            )
