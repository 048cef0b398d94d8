"""Train page: pick a preset (or change any setting) and launch a run in its own process,
watch it live, stop it."""

from pathlib import Path

import streamlit as st

from app_pages import charts, config_form
from app_pages.shared import inside_data_roots, registry
from core.config import PRESETS, TrainConfig, preset_config, settings
from core.errors import PipelineError
from core.registry import Run
from core.training.cache_usage import (
    CLEARING,
    CacheFolder,
    cache_folders,
    clear_cache,
    human_size,
    spec_summary,
)
from core.training.launcher import launch, stop

st.title("Train")
reg = registry()


@st.fragment(run_every=2)
def live(run_id: str) -> None:
    """Follows a run through its progress and history files (any process, any session)."""
    run = reg.get(run_id)
    status, progress, history = run.status, run.progress or {}, run.history
    st.subheader(f"Run `{run.id}` — {status['state']}")
    if progress.get("stage") == "caching":
        done, total = progress.get("batch") or 0, progress.get("batches") or 1
        st.progress(
            min(1.0, done / total),
            text=f"Building the activation cache: {done}/{total} image views · "
            f"{progress['elapsed_s'] / 60:.1f} min elapsed (reused by later runs)",
        )
    elif "phase_index" in progress:
        phase_no = progress["phase_index"] + 1
        batches = progress.get("batches") or 1
        within = min(1.0, (progress.get("batch") or 0) / batches)
        fraction = (progress["epoch"] - 1 + within) / max(progress["epochs"], 1)
        eta = progress.get("eta_s")
        eta_text = f" · about {eta / 60:.1f} min left" if eta is not None else ""
        st.progress(
            min(1.0, fraction),
            text=f"{progress['stage']}: phase {phase_no}/{len(progress['phases'])} "
            f"({progress['phase']}), epoch {progress['epoch']}/{progress['epochs']}, "
            f"batch {progress.get('batch') or 0}/{batches} · "
            f"{progress['elapsed_s'] / 60:.1f} min elapsed{eta_text}",
        )
        if progress.get("metrics"):
            st.caption(" · ".join(f"{k} {v:.4f}" for k, v in progress["metrics"].items()))
    elif progress.get("stage") == "auditing":
        st.info("Finding the copies to drop in Training (the audit, kept for later runs) ...")
    else:
        st.info("Starting: loading TensorFlow and building the model ...")
    if history:
        left, right = st.columns(2)
        left.plotly_chart(charts.curves(history, "loss"), width="stretch", key=f"loss-{run.id}")
        right.plotly_chart(charts.curves(history, "accuracy"), width="stretch", key=f"acc-{run.id}")
    if status["state"] == "running":
        if st.button("Stop training", type="primary", key=f"stop-{run.id}"):
            stop(run)
            st.toast("Stop requested: the run ends after the current batch and keeps its checkpoint.")
    else:
        show_outcome(run)


def show_outcome(run: Run) -> None:
    status = run.status
    if status["state"] == "completed" and run.metrics:
        st.success(
            f"Completed: Testing accuracy {run.metrics['accuracy']:.1%}, "
            f"macro F1 {run.metrics['macro_f1']:.3f}. See the Results page."
        )
    elif status["state"] == "stopped":
        st.warning(f"Stopped. {status.get('note', '')}")
    elif status["state"] == "failed":
        st.error(f"Failed: {status.get('error')}")
        st.code(run.log_tail() or "(empty log)", language="text")


def start_label(preset: str, start: TrainConfig, config: TrainConfig) -> str:
    """The Start button's text: what the run will cost, or that the settings changed."""
    changed = [x.label for x in settings() if config.value(x.path) != start.value(x.path)]
    if not changed:
        return f"Start: {preset} preset, {PRESETS[preset].cost}"
    return f"Start: {preset} preset with {len(changed)} changed setting{'s' * (len(changed) > 1)}"


def start_run(config: TrainConfig) -> None:
    """Check the dataset folder, launch the run and follow it; errors are shown, not raised."""
    try:
        from core.data.dataset import scan_dataset

        config.data_dir = str(inside_data_roots(config.data_dir))
        scan_dataset(config.data_dir)
        with st.spinner("Starting the training process ..."):
            run = launch(reg, config)
        st.session_state["watch_run"] = run.id
        st.rerun()
    except PipelineError as exc:
        st.error(str(exc))


holder = reg.lock_holder()
if holder == CLEARING:
    st.info("The activation cache is being cleared; training can start in a moment.")
elif holder:
    st.info(f"A training is running on this machine: **{holder}**. One at a time.")
    live(holder)
elif st.session_state.get("watch_run"):
    try:
        live(st.session_state["watch_run"])
    except PipelineError:
        st.session_state.pop("watch_run")


st.subheader("New run")
# Plain widgets, no st.form: Enter in a field only applies its value, and a run starts
# from the Start button alone.
preset = st.radio(
    "Preset",
    tuple(PRESETS),
    captions=[f"{p.purpose}; {p.cost}" for p in PRESETS.values()],
    key="train_preset",
)
start = preset_config(st.session_state.get("data_dir", ""), preset)
with st.expander("Advanced settings"):
    st.caption(f"Starting from the {preset} preset's values.")
    config = start.changed(config_form.render(start, key=f"{preset}:"))
if st.button(start_label(preset, start, config), type="primary", key="start"):
    start_run(config)

st.subheader("Runs")
runs = reg.list()
if not runs:
    st.caption("No runs yet.")
for run in runs[:20]:
    metrics = run.metrics or {}
    figure = f" · accuracy {metrics['accuracy']:.1%}" if metrics else ""
    with st.expander(f"{run.id} — {run.state}{figure}"):
        show_outcome(run)
        st.json(run.config, expanded=False)


@st.cache_data(ttl=30, show_spinner=False)
def cache_listing(root: str) -> list[CacheFolder]:
    """Tens of thousands of files to stat (a third of a second): not on every rerun."""
    return cache_folders(Path(root))


st.subheader("Activation cache")
folders = cache_listing(str(reg.cache_dir))
if not folders:
    st.caption("Empty: the first cached run builds it.")
else:
    total = sum(f.bytes for f in folders)
    st.caption(
        f"{human_size(total)} in {len(folders)} folder(s) under `{reg.cache_dir}`. Runs with the "
        "same backbone, input size and cut reuse it; clearing it loses no run, only the "
        "minutes the next run spends rebuilding it."
    )
    st.dataframe(
        [{"folder": f.key, "size": human_size(f.bytes), "holds": spec_summary(f)} for f in folders],
        hide_index=True,
        width="stretch",
    )
    if st.button("Clear the activation cache", disabled=bool(holder), help="Not while a training runs"):
        try:
            cleared = clear_cache(reg)
            cache_listing.clear()
            st.toast(f"Cleared {len(cleared)} folder(s), {human_size(sum(f.bytes for f in cleared))} freed.")
            st.rerun()
        except PipelineError as exc:
            st.error(str(exc))
