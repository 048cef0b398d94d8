"""Results page section "Beyond this dataset": a run's figures on datasets from elsewhere
beside its official ones, its most confused images there with Grad-CAM, and a form to
score it on another folder. core.evaluation.external does the work; this only shows it."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app_pages import charts
from app_pages.shared import (
    classifier,
    figure_text,
    image_grid,
    inside_data_roots,
    model_stamp,
    registry,
)
from core.errors import PipelineError
from core.evaluation.external import (
    LAYOUT,
    entry_interpretation,
    evaluate_external,
    external_entries,
    leave_one_source_out,
)
from core.intervals import format_interval
from core.registry import Run

CAPTION = (
    "A figure on the dataset's own Testing split is not the whole truth: those images come "
    "from the same sources, scanners and preparation as the training images. A set from "
    "elsewhere shows how far the model's skill carries. Read every figure with its 95% "
    "interval (the range it would likely fall in on another set of the same kind), and "
    "against chance: guessing at random among the model's {k} classes is right 1 time in "
    "{k} ({chance:.0%}). When a set has no images of a class, the model's answers in that "
    "class are all errors."
)
NO_IMAGES = "–"
TOP_LOSSES = 8  # Grad-CAM costs a pass per image: a handful is enough to see the pattern
CONFUSED_CAPTION = (
    "The {n} images the model got wrong most confidently (highest loss first), with Grad-CAM "
    "of the class it answered: where in the image its answer came from. A map on the skull, "
    "the border or the background, rather than the lesion, points to a shortcut learned from "
    "the training set's sources."
)


LOSO_CAPTION = (
    "Runs trained without one of the collections the Kaggle set merges, scored on that "
    "collection's slices (none with a copy on their training side): whether a recipe learned "
    "the disease or the look of a source, with no outside data. "
    "`bench/loso.py --models <this registry>` trains one."
)


def beyond_this_dataset(run: Run) -> None:
    """The whole section: caption, the evaluation form, then one block per external set."""
    st.header("Beyond this dataset")
    k = len(run.classes)
    st.caption(CAPTION.format(k=k, chance=1 / k))
    entries = external_entries(run)
    with st.expander("Evaluate on another dataset", expanded=not entries):
        if _evaluate_form(run):
            entries = external_entries(run)
    if not entries:
        st.caption("No other dataset evaluated for this run yet.")
    else:
        labels = _labels(entries)
        st.dataframe(comparison_table(run.metrics or {}, entries, labels), width="stretch")
        for entry, label in zip(entries, labels):
            _entry(run, entry, label)
    _leave_one_source_out(run)


def _leave_one_source_out(run: Run) -> None:
    st.subheader("Leave one source out")
    found = leave_one_source_out(registry().list(), like=run)
    st.caption(LOSO_CAPTION)
    if not found:
        st.caption("No leave-one-source-out run in this registry.")
        return
    st.dataframe(loso_table(found), width="stretch")


def loso_table(found: list[dict]) -> pd.DataFrame:
    """One row per leave-one-source-out run: its recipe against this run's, the source it
    never saw, and its accuracy and per-class recall there with intervals."""
    rows = {}
    for f in found:
        entry, config = f["entry"], f["run"].config
        row = {
            "recipe": "this run's" if f["same_recipe"] else f"another (preset {config.get('preset')})",
            "held out": f["record"].get("held_out", "?"),
            "images": str(entry["n"]),
            "accuracy (95% interval)": figure_text(entry, "accuracy"),
        }
        row |= {f"recall {c}": _recall(entry, c) for c in entry["classes"]}
        rows[f["run"].id] = row
    return pd.DataFrame(rows).T


def _evaluate_form(run: Run) -> bool:
    """The form; True once a set has been evaluated in this script run."""
    with st.form("external-evaluate"):
        folder = st.text_input("Folder of the other dataset", help=LAYOUT).strip()
        submitted = st.form_submit_button("Evaluate on this dataset")
    st.caption(
        f"Layout: {LAYOUT}; an optional sequences.csv (columns file, sequence) gives per-sequence figures."
    )
    if not submitted:
        return False
    if not folder:
        st.error("Type the folder of the dataset to evaluate on.")
        return False
    try:
        root = inside_data_roots(folder)
        model = classifier(str(registry().root), run.id, model_stamp(run)).model
        with st.spinner(f"Classifying the images of {root.name} ..."):
            metrics = evaluate_external(run, root, model=model)
    except PipelineError as exc:
        st.error(str(exc))
        return False
    st.success(f"Evaluated on {metrics['name']}: {metrics['n']} images.")
    return True


def _labels(entries: list[dict]) -> list[str]:
    # The folder name, unless two sets share it: then the entry's slug tells them apart.
    names = [e["name"] for e in entries]
    return [e["name"] if names.count(e["name"]) == 1 else e["slug"] for e in entries]


def comparison_table(official: dict, entries: list[dict], labels: list[str]) -> pd.DataFrame:
    """One row per test set (official Testing and its clean subset first): images,
    accuracy and macro-F1 with their intervals, and the classes it has images of."""
    own = [("official Testing", official), ("clean test set", official.get("clean"))] if official else []
    sets = [(label, m) for label, m in own if m] + list(zip(labels, entries))
    return pd.DataFrame(
        {
            label: {
                "images": str(m["n"]),
                "accuracy (95% interval)": figure_text(m, "accuracy"),
                "macro F1 (95% interval)": figure_text(m, "macro_f1", percent=False),
                "classes with images": ", ".join(c for c in m["classes"] if m["per_class"][c]["support"]),
            }
            for label, m in sets
        }
    ).T


def _recall(metrics: dict, name: str) -> str:
    row = metrics["per_class"][name]
    if not row["support"]:
        return NO_IMAGES
    interval = (metrics.get("intervals") or {}).get("per_class", {}).get(name, {}).get("recall")
    return format_interval(row["recall"], interval)


def recall_table(official: dict, entry: dict) -> pd.DataFrame:
    """Per class: images and recall with its interval, on this set and on official Testing."""
    rows = {
        name: {
            "images here": str(entry["per_class"][name]["support"]),
            "recall here": _recall(entry, name),
            "recall on official Testing": _recall(official, name) if official else NO_IMAGES,
        }
        for name in entry["classes"]
    }
    return pd.DataFrame(rows).T


def sequence_table(entry: dict) -> pd.DataFrame | None:
    """Per MR sequence: images, accuracy and each class's recall, with intervals."""
    groups = (entry.get("sequences") or {}).get("groups") or {}
    if not groups:
        return None
    rows = {}
    for name, group in groups.items():
        row = {
            "images": str(group["n"]),
            "accuracy": format_interval(group["accuracy"], group["accuracy_interval"]),
        }
        for cls in entry["classes"]:
            recall = group["recall"].get(cls)
            row[f"recall {cls}"] = (
                format_interval(recall["value"], recall["interval"]) if recall else NO_IMAGES
            )
        rows[name] = row
    return pd.DataFrame(rows).T


def _entry(run: Run, entry: dict, label: str) -> None:
    with st.container(border=True):
        st.subheader(f"{label}: accuracy {figure_text(entry, 'accuracy')} on {entry['n']} images")
        digest = entry["fingerprint"]["sha256"][:12]
        st.caption(f"`{entry['root']}` · evaluated {entry['evaluated']} · fingerprint {digest}")
        if entry.get("missing_classes"):
            st.caption(
                f"No images of {', '.join(entry['missing_classes'])} here: the model's answers in "
                f"{'that class' if len(entry['missing_classes']) == 1 else 'those classes'} are errors."
            )
        left, right = st.columns([3, 2])
        left.plotly_chart(
            charts.confusion(entry["confusion_matrix"], entry["classes"]),
            width="stretch",
            key=f"ext-{entry['slug']}",
        )
        right.dataframe(recall_table(run.metrics or {}, entry), width="stretch")
        sequences = sequence_table(entry)
        if sequences is not None:
            st.markdown("**Per MR sequence**")
            st.dataframe(sequences, width="stretch")
            unmatched = entry["sequences"].get("unmatched")
            if unmatched:
                st.caption(f"{unmatched} image(s) have no row in sequences.csv (counted as 'unknown').")
        if entry.get("skipped"):
            st.warning(f"{len(entry['skipped'])} unreadable file(s) left out: {', '.join(entry['skipped'])}")
        _most_confused(run, entry)


def _most_confused(run: Run, entry: dict) -> None:
    """The set's most confused class pairs and its most confidently wrong images with
    Grad-CAM; run only while the expander is open (each map costs a model pass)."""
    box = st.expander("Most confused images", key=f"confused-{entry['slug']}", on_change="rerun")
    if not box.open:
        return
    with box:
        try:
            review = entry_interpretation(run, entry)
        except PipelineError as exc:
            st.error(str(exc))
            return
        interp = review.interpretation
        pairs = interp.most_confused()
        if not pairs:
            st.caption("The model gets every image of this set right.")
            return
        st.markdown("\n".join(f"- {true} called {predicted}: {count}" for true, predicted, count in pairs))
        problem = review.folder_problem()
        if problem:
            st.warning(problem)
            return
        show_cam = st.toggle("Grad-CAM overlays", value=True, key=f"cam-{entry['slug']}")
        wrong = interp.top_losses(TOP_LOSSES)
        st.caption(CONFUSED_CAPTION.format(n=len(wrong)))
        notes = [f"sequence {s}" for s in review.sequences] if review.sequences else None
        image_grid(run, interp, wrong, show_cam, key=f"ext-{entry['slug']}", root=review.root, notes=notes)
