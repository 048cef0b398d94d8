"""Results page: test figures (official and clean), curves, calibration, the images the
model gets wrong (by confusion cell and by loss), and exports."""

from functools import partial

import pandas as pd
import streamlit as st

from app_pages import charts, sanity
from app_pages.report import report_html
from app_pages.shared import active_run, figure_text, headline, image_grid, registry, usable_runs
from core.calibration import apply_temperature
from core.config import KEEP_WHEN_MISSING
from core.errors import PipelineError
from core.evaluation.card import card_html, card_markdown
from core.evaluation.interpret import Interpretation
from core.intervals import format_interval

CLEAN_SET_HELP = (
    "Testing minus every image with an exact, near or mirrored copy in Training, keeping one "
    "image of each group of twins within Testing. Copy-free, not patient-disjoint: other slices "
    "of one patient can still sit on both sides."
)

st.title("Results")
runs = usable_runs()
if not runs:
    st.info("No trained run yet: start one on the Train page.")
    st.stop()
ids = [r.id for r in runs]
current = active_run()
run_id = st.selectbox("Run", ids, index=ids.index(current.id) if current and current.id in ids else 0)
run = registry().get(run_id)
metrics = run.metrics
if not metrics:
    st.warning(
        f"Run {run.id} ({run.state}) has no test metrics yet: "
        f"`python -m core evaluate {run.id}` computes them."
    )
    st.stop()

clean = metrics.get("clean")
ci = metrics.get("intervals") or {}
c1, c2, c3, c4 = st.columns(4)
headline(c1, "Test accuracy", metrics["accuracy"], ci.get("accuracy"))
headline(c2, "Macro F1", metrics["macro_f1"], ci.get("macro_f1"), percent=False)
c3.metric("Test images", metrics["n"])
if clean:
    clean_interval = (clean.get("intervals") or {}).get("accuracy")
    headline(c4, "Clean-set accuracy", clean["accuracy"], clean_interval, help=CLEAN_SET_HELP)
st.caption(
    "Under each figure and in brackets: 95% intervals (stratified bootstrap, 1,000 resamples "
    "of the test images). "
    "Two figures whose intervals overlap widely may not differ at all: the Compare page tests "
    "two runs on the same images."
    if ci
    else f"This run's metrics have no intervals yet: `python -m core evaluate {run.id}` adds them."
)

if run.config.get("kind") == "ensemble":
    members = ", ".join(
        f"`{m}` ({w:.2f})" for m, w in zip(run.config["members"], run.config["member_weights"])
    )
    st.caption(f"Ensemble of {members}: the weighted mean of their probabilities.")
kept_epoch = run.read("meta.json", {}).get("kept_epoch")  # older runs lack it
if kept_epoch and run.history:
    rule = (
        "the lowest validation loss"
        if run.config.get("keep", KEEP_WHEN_MISSING) == "best"
        else "the last epoch with a finite validation loss"
    )
    st.caption(f"The model holds the weights of epoch {kept_epoch} of {len(run.history)}: {rule}.")


def per_class_rows(m: dict, text: bool = True) -> dict[str, dict]:
    """Per class: each figure with its interval, as text for the table or as numbers
    (figure, low, high) for the CSV export."""
    intervals = (m.get("intervals") or {}).get("per_class", {})
    rows = {}
    for name, row in m["per_class"].items():
        ci = intervals.get(name, {})
        out: dict = {}
        for figure in ("precision", "recall", "specificity", "f1"):
            if figure not in row:
                continue
            if text:
                out[figure] = format_interval(row[figure], ci.get(figure), percent=False)
            else:
                low, high = ci.get(figure) or (None, None)
                out |= {figure: row[figure], f"{figure}_low": low, f"{figure}_high": high}
        rows[name] = out | {"support": row["support"]}
    return rows


sets = {"official Testing": metrics}
if clean:
    sets["clean test set"] = clean
table = dict(sets)
if tta := run.read("tta.json"):  # python -m core evaluate RUN --tta
    views = ", ".join(tta["views"])
    table[f"official Testing, TTA ({views})"] = tta
    table[f"clean test set, TTA ({views})"] = tta["clean"]
if len(table) > 1:
    st.dataframe(
        pd.DataFrame(
            {
                name: {
                    "images": m["n"],
                    "accuracy (95% interval)": figure_text(m, "accuracy"),
                    "macro F1 (95% interval)": figure_text(m, "macro_f1", percent=False),
                }
                for name, m in table.items()
            }
        ).T,
        width="stretch",
    )
test_set = st.radio("Figures below for", list(sets), horizontal=True)
shown = sets[test_set]
interp = Interpretation.from_rows(run.predictions(), run.classes).subset(test_set == "clean test set")

overview, curves, calibration, images, export = st.tabs(
    ["Confusion matrix", "Curves", "Calibration", "Images", "Export"]
)

with overview:
    left, right = st.columns([3, 2])
    with left:
        event = st.plotly_chart(
            charts.confusion(shown["confusion_matrix"], shown["classes"]),
            width="stretch",
            on_select="rerun",
            selection_mode="points",
            key="cm",
        )
        st.caption("Click a cell to open its images in the Images tab.")
        points = (event or {}).get("selection", {}).get("points", []) if event else []
        if points:
            st.session_state["cell"] = (points[0]["y"], points[0]["x"])
    with right:
        st.dataframe(pd.DataFrame(per_class_rows(shown)).T, width="stretch")
        st.caption("Recall is sensitivity. In brackets: 95% intervals.")
        if metrics.get("skipped"):
            st.warning(f"{len(metrics['skipped'])} unreadable test file(s) left out.")

with curves:
    if run.history:
        left, right = st.columns(2)
        left.plotly_chart(charts.curves(run.history, "loss", kept_epoch), width="stretch")
        right.plotly_chart(charts.curves(run.history, "accuracy", kept_epoch), width="stretch")
    left, right = st.columns(2)
    left.plotly_chart(charts.class_curves(interp.roc(), "fpr", "tpr", "ROC, one vs rest"), width="stretch")
    right.plotly_chart(
        charts.class_curves(
            interp.precision_recall(), "recall", "precision", "Precision-recall, one vs rest"
        ),
        width="stretch",
    )

with calibration:
    cal = run.read("calibration.json")
    after = None
    if cal and len(interp.y_true):
        scaled = Interpretation(
            interp.files, interp.y_true, apply_temperature(interp.probs, cal["temperature"]), interp.classes
        )
        after = scaled.reliability()
        st.markdown(
            f"Temperature **T = {cal['temperature']:.3f}**, fitted on the "
            f"{cal['validation']['n']} validation images; the Classify page shows calibrated "
            "probabilities (the predicted class never changes)."
        )
        c1, c2 = st.columns(2)
        c1.metric("ECE before", f"{interp.ece():.4f}")
        c2.metric("ECE after temperature scaling", f"{scaled.ece():.4f}")
    else:
        st.metric("ECE", f"{interp.ece():.4f}" if len(interp.y_true) else "-")
        st.caption("No temperature fitted for this run (re-evaluate it to fit one).")
    st.plotly_chart(charts.reliability(interp.reliability(), after), width="stretch")

with images:
    classes = run.classes
    true_default, pred_default = st.session_state.get("cell", ("any", "any"))
    f1, f2, f3 = st.columns(3)
    true_pick = f1.selectbox("True class", ["any", *classes], index=(["any", *classes]).index(true_default))
    pred_pick = f2.selectbox(
        "Predicted class", ["any", *classes], index=(["any", *classes]).index(pred_default)
    )
    show_cam = f3.toggle("Saliency overlays", help="Grad-CAM of the predicted class, about a second an image")
    if true_pick != "any" and pred_pick != "any":
        chosen = interp.cell(true_pick, pred_pick)
        title = f"true {true_pick}, predicted {pred_pick}"
    else:
        chosen = [
            i
            for i in interp.top_losses(k=len(interp.files))
            if true_pick in ("any", classes[interp.y_true[i]])
            and pred_pick in ("any", classes[interp.y_pred[i]])
        ]
        title = "misclassified"
    st.caption(f"{len(chosen)} image(s), {title}; showing up to 12.")
    image_grid(run, interp, chosen[:12], show_cam, key="cell")
    if st.toggle(sanity.TOGGLE, help=sanity.TOGGLE_HELP, key="sanity"):
        sanity.for_test_images(run, interp, chosen[:12])
    st.subheader("Top losses")
    wrong_tab, unsure_tab = st.tabs(["Most confidently wrong", "Right but least sure"])
    with wrong_tab:
        image_grid(run, interp, interp.top_losses(8, wrong=True), show_cam, key="wrong")
    with unsure_tab:
        image_grid(run, interp, interp.top_losses(8, wrong=False), show_cam, key="unsure")

with export:
    per_class = pd.DataFrame(per_class_rows(shown, text=False)).T
    st.download_button("Metrics (CSV)", per_class.to_csv().encode(), f"{run.id}-metrics.csv", "text/csv")
    rows = pd.DataFrame(run.predictions())
    wrong_rows = rows[rows["correct"] == "0"] if not rows.empty else rows
    st.download_button(
        "Misclassified images (CSV)",
        wrong_rows.to_csv(index=False).encode(),
        f"{run.id}-misclassified.csv",
        "text/csv",
    )
    st.download_button(
        "One-page report (HTML)", report_html(run, interp).encode(), f"{run.id}-report.html", "text/html"
    )
    st.caption(
        "The report embeds its charts (plotly) and opens offline; use the browser's print "
        "for PDF or the chart's camera icon for a PNG of the confusion matrix."
    )
    # Callables: the card (audit, thumbnails) is assembled on click, not on every rerun.
    st.download_button(
        "Model card (Markdown)", partial(card_markdown, run), f"{run.id}-model-card.md", "text/markdown"
    )
    st.download_button("Model card (HTML)", partial(card_html, run), f"{run.id}-model-card.html", "text/html")
    st.caption(
        "The model card: intended use (not a diagnostic device), data and audit, recipe, figures "
        "with 95% intervals, calibration, the most confused pairs and the limits; "
        f"also `python -m core card {run.id}`."
    )

with st.expander("Delete this run"):
    st.caption(
        "Removes the run's folder (model, metrics, history, log) from the registry; this cannot "
        "be undone. Sessions viewing it move to another run; a training run cannot be deleted."
    )
    confirmed = st.checkbox(f"Yes, delete run {run.id}")
    if st.button("Delete run", disabled=not confirmed, type="primary"):
        try:
            registry().delete(run.id)
        except PipelineError as exc:
            st.error(str(exc))
        else:
            st.session_state.pop("active_run", None)
            st.toast(f"Run {run.id} deleted")
            st.rerun()

from app_pages.beyond import beyond_this_dataset  # noqa: E402  (the section ends the page)

beyond_this_dataset(run)
