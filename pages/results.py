"""Results page: test metrics, confusion matrix, training curves, and the mistakes."""

import pandas as pd
import streamlit as st

from core.images import load_rgb
from pages import charts
from pages.shared import active_run, dataset, explainer, model_stamp, registry, usable_runs

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
c1, c2, c3, c4, c5 = st.columns(5)
c1.metric("Test accuracy", f"{metrics['accuracy']:.2%}")
c2.metric("Macro F1", f"{metrics['macro_f1']:.4f}")
c3.metric("Weighted F1", f"{metrics['weighted_f1']:.4f}")
c4.metric("Test images", metrics["n"])
if clean:
    c5.metric(
        "Clean-set accuracy",
        f"{clean['accuracy']:.2%}",
        f"{clean['accuracy'] - metrics['accuracy']:+.2%}",
        help="Testing minus every image with an exact or near copy in Training",
    )

sets = {"official Testing": metrics}
if clean:
    sets["clean test set"] = clean
    st.dataframe(
        pd.DataFrame(
            {
                name: {
                    "images": m["n"],
                    "accuracy": m["accuracy"],
                    "macro F1": m["macro_f1"],
                    "weighted F1": m["weighted_f1"],
                }
                for name, m in sets.items()
            }
        ).T.style.format(
            {"images": "{:.0f}", "accuracy": "{:.2%}", "macro F1": "{:.4f}", "weighted F1": "{:.4f}"}
        ),
        width="stretch",
    )
test_set = st.radio("Figures below for", list(sets), horizontal=True)
shown = sets[test_set]

left, right = st.columns([3, 2])
with left:
    st.subheader("Confusion matrix")
    st.plotly_chart(charts.confusion(shown["confusion_matrix"], shown["classes"]), width="stretch")
with right:
    st.subheader("Per class")
    table = pd.DataFrame(shown["per_class"]).T[["precision", "recall", "f1", "support"]]
    st.dataframe(
        table.style.format({"precision": "{:.3f}", "recall": "{:.3f}", "f1": "{:.3f}", "support": "{:.0f}"}),
        width="stretch",
    )
    if metrics.get("skipped"):
        st.warning(f"{len(metrics['skipped'])} unreadable test file(s) left out.")

if run.history:
    st.subheader("Training curves")
    left, right = st.columns(2)
    left.plotly_chart(charts.curves(run.history, "loss"), width="stretch")
    right.plotly_chart(charts.curves(run.history, "accuracy"), width="stretch")

st.subheader("Misclassified test images")
rows = pd.DataFrame(run.predictions())
if test_set == "clean test set" and "clean" in rows:
    rows = rows[rows["clean"] == "1"]
wrong = rows[rows["correct"] == "0"] if not rows.empty else rows
if wrong.empty:
    st.success("No misclassified test images.")
    st.stop()
classes = run.classes
f1, f2, f3 = st.columns(3)
true_pick = f1.selectbox("True class", ["any", *classes])
pred_pick = f2.selectbox("Predicted class", ["any", *classes])
show_cam = f3.toggle("Grad-CAM overlays", help="Computed on demand (about a second an image)")
if true_pick != "any":
    wrong = wrong[wrong["true"] == true_pick]
if pred_pick != "any":
    wrong = wrong[wrong["predicted"] == pred_pick]
st.caption(f"{len(wrong)} image(s); showing up to 12.")
try:
    root = dataset(run.config["data_dir"]).root
except Exception as exc:
    st.error(f"The run's dataset is not available: {exc}")
    st.stop()
size = int(run.config["input_size"])
cols = st.columns(4)
for i, (_, row) in enumerate(wrong.head(12).iterrows()):
    with cols[i % 4]:
        probs = {c: float(row[f"p_{c}"]) for c in classes}
        try:
            image = load_rgb(root / row["file"], size)
        except Exception as exc:
            st.error(f"{row['file']}: {exc}")
            continue
        if show_cam:
            from core.explain import overlay

            cam = explainer(str(registry().root), run.id, model_stamp(run))
            image = overlay(image, cam.heatmap(image, classes.index(row["predicted"])))
        st.image(
            image,
            caption=f"{row['file'].split('/')[-1]}: true {row['true']}, "
            f"predicted {row['predicted']} ({probs[row['predicted']]:.0%})",
        )
        st.caption(" · ".join(f"{c} {p:.0%}" for c, p in probs.items()))
