"""Compare page: two or more runs side by side: configuration, figures, confusion
matrices, and the test images one run gets right and the other wrong."""

import pandas as pd
import streamlit as st

from app_pages import charts
from app_pages.shared import figure_text, image_grid, registry, usable_runs
from core.config import as_ran
from core.errors import PipelineError
from core.evaluation.interpret import Interpretation, compare, config_diff, paired_test
from core.training.launcher import launch_ensemble

st.title("Compare runs")
runs = [r for r in usable_runs() if r.metrics]
if len(runs) < 2:
    st.info("Comparing needs at least two evaluated runs.")
    st.stop()
by_id = {r.id: r for r in runs}
picked = st.multiselect("Runs", list(by_id), default=list(by_id)[:2])
if len(picked) < 2:
    st.caption("Pick two or more runs.")
    st.stop()
chosen = [by_id[i] for i in picked]

st.subheader("Configuration differences")
diff = config_diff({r.id: as_ran(r.config) for r in chosen})
if diff:
    st.dataframe(pd.DataFrame(diff).T.astype(str), width="stretch")
else:
    st.caption("Same configuration.")

st.subheader("Figures")
rows = {}
for r in chosen:
    m, clean = r.metrics, r.metrics.get("clean") or {}
    rows[r.id] = {
        "accuracy": figure_text(m, "accuracy"),
        "macro F1": figure_text(m, "macro_f1", percent=False),
        "clean accuracy": figure_text(clean, "accuracy"),
        "clean macro F1": figure_text(clean, "macro_f1", percent=False),
        "test images": str(m["n"]),
        "clean images": str(clean.get("n", "")),
    }
    if tta := r.read("tta.json"):
        rows[r.id] |= {
            "TTA accuracy": figure_text(tta, "accuracy"),
            "TTA clean accuracy": figure_text(tta["clean"], "accuracy"),
        }
st.dataframe(pd.DataFrame(rows).T, width="stretch")
st.caption("In brackets: 95% intervals. Whether two runs differ is tested below, on the same images.")

with st.expander("Make an ensemble of these runs"):
    st.caption(
        "Averages the runs' probabilities (weighted) into a new run of its own: evaluated on the "
        "official and clean test sets and calibrated, then usable everywhere a run is."
    )
    weights = [
        col.number_input(f"Weight of {r.id}", 0.0, 10.0, 1.0, 0.5, key=f"w-{r.id}")
        for col, r in zip(st.columns(len(chosen)), chosen)
    ]
    if st.button("Create ensemble"):
        try:
            ensemble_id = launch_ensemble(registry(), picked, weights)
        except PipelineError as exc:
            st.error(str(exc))
        else:
            st.success(
                f"Building ensemble `{ensemble_id}` in the background; "
                "it joins the run picker once evaluated."
            )

st.subheader("Confusion matrices (official Testing)")
for col, r in zip(st.columns(len(chosen)), chosen):
    col.caption(r.id)
    col.plotly_chart(
        charts.confusion(r.metrics["confusion_matrix"], r.metrics["classes"]),
        width="stretch",
        key=f"cm-{r.id}",
    )

first, second = chosen[:2]
if first.classes != second.classes:
    st.warning("These runs have different classes; their images cannot be compared.")
    st.stop()
a = Interpretation.from_rows(first.predictions(), first.classes)
b = Interpretation.from_rows(second.predictions(), second.classes)

st.subheader(f"Do they differ? ({first.id} vs {second.id})")
tests = {}
for name, clean_only in (("official Testing", False), ("clean test set", True)):
    try:
        tests[name] = paired_test(a.subset(clean_only), b.subset(clean_only))
    except ValueError:
        continue
st.dataframe(
    pd.DataFrame(
        {
            name: {
                "images": t["n"],
                first.id: f"{t['accuracy_a']:.2%}",
                second.id: f"{t['accuracy_b']:.2%}",
                "difference (95% interval)": f"{100 * t['difference']:+.2f} points "
                f"({100 * t['interval'][0]:+.2f} to {100 * t['interval'][1]:+.2f})",
                f"right only in {first.id}": t["only_a_right"],
                f"right only in {second.id}": t["only_b_right"],
                "McNemar p": f"{t['mcnemar_p']:.3g}",
                "verdict": t["verdict"].replace("a is", f"{first.id} is").replace("b is", f"{second.id} is"),
            }
            for name, t in tests.items()
        }
    ).T,
    width="stretch",
)
st.caption(
    "Both runs on the same images: McNemar's exact test counts only the images where one is "
    "right and the other wrong. Below p = 0.05 the page names the more accurate run; otherwise "
    "the difference is within the noise of this test set, and it says so."
)
split = compare(a, b)
st.subheader(f"Right in one, wrong in the other ({first.id} vs {second.id})")
show_cam = st.toggle("Saliency overlays")
left, right = st.columns(2)
for col, key, winner, loser, interp in (
    (left, "only_first_right", first, second, b),
    (right, "only_second_right", second, first, a),
):
    with col:
        files = split[key]
        st.markdown(f"**{len(files)}** right only in `{winner.id}` (shown with `{loser.id}`'s prediction)")
        position = {f: i for i, f in enumerate(interp.files)}
        image_grid(loser, interp, [position[f] for f in files[:8]], show_cam, key=f"cmp-{key}", columns=2)
