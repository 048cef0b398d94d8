"""Train page: configure and launch a run in its own process, watch it live, stop it."""

from pathlib import Path

import streamlit as st

from app_pages import charts
from app_pages.shared import inside_data_roots, registry
from core.cache_usage import CLEARING, CacheFolder, cache_folders, clear_cache, human_size, spec_summary
from core.config import (
    KEEPS,
    MODES,
    ONE_MACHINE_STRATEGIES,
    PRECISIONS,
    SCHEDULES,
    SIZE_IN_BFLOAT16,
    SIZE_IN_FLOAT32,
    UNFREEZE_CHOICES,
    AugmentConfig,
    TrainConfig,
)
from core.errors import PipelineError
from core.launcher import launch, stop
from core.registry import Run

st.title("Train")
reg = registry()
defaults = TrainConfig(data_dir="")


def choose(column, label: str, options: tuple[str, ...], default: str, help: str | None = None) -> str:
    """A select box that starts at TrainConfig's default."""
    return column.selectbox(label, options, index=options.index(default), help=help)


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

with st.form("train"):
    st.subheader("New run")
    c1, c2, c3 = st.columns(3)
    weights_kind = c1.selectbox(
        "Pre-trained weights",
        ["imagenet", "local file", "none"],
        help="imagenet: Keras downloads them once into ~/.keras/models",
    )
    weights_file = c1.text_input("Local weights file", placeholder="/path/inception_v3_notop.weights.h5")
    input_size = c1.number_input(
        "Input size (px)",
        75,
        599,
        defaults.input_size,
        step=1,
        placeholder=f"auto: {SIZE_IN_BFLOAT16} in bfloat16, {SIZE_IN_FLOAT32} in float32",
        help=f"Empty: the size the run's arithmetic affords ({SIZE_IN_BFLOAT16}, the reference's, "
        f"in mixed bfloat16; {SIZE_IN_FLOAT32} in float32, where {SIZE_IN_BFLOAT16} takes about 1.5x "
        "as long a fine-tuning epoch).",
    )
    batch_size = c1.number_input("Batch size", 1, 256, defaults.batch_size)
    head_epochs = c2.number_input("Head epochs (frozen backbone)", 0, 200, defaults.head_epochs)
    head_lr = c2.number_input("Head learning rate", 1e-6, 1.0, defaults.head_lr, format="%.5f")
    finetune_epochs = c2.number_input("Fine-tuning epochs", 0, 200, defaults.finetune_epochs)
    finetune_lr = c2.number_input("Fine-tuning learning rate", 1e-7, 1.0, defaults.finetune_lr, format="%.6f")
    schedule = choose(
        c2,
        "Fine-tuning schedule",
        SCHEDULES,
        defaults.finetune_schedule,
        help="cosine: the learning rate falls from the value above to 0 over the fine-tuning epochs",
    )
    train_batchnorm = c2.checkbox(
        "Batch norm learns while fine-tuning",
        defaults.train_batchnorm,
        help="The unfrozen blocks' batch norm layers adapt their statistics to these images",
    )
    unfreeze = choose(c2, "Unfreeze from", UNFREEZE_CHOICES, defaults.unfreeze_from)
    val_fraction = c3.slider("Validation fraction", 0.02, 0.4, defaults.val_fraction)
    seed = c3.number_input("Seed", 0, 2**31 - 1, defaults.seed)
    keep = choose(
        c3,
        "Model kept",
        KEEPS,
        defaults.keep,
        help="last: the weights at the end of training (the cosine decay ends there). best: "
        "those of the epoch with the lowest validation loss, stopping early after "
        "'patience' epochs without a new lowest.",
    )
    patience = c3.number_input("Early-stopping patience", 1, 50, defaults.patience, help="With 'best'")
    max_per_class = c3.number_input(
        "Images per class (0 = all)", 0, 100000, 0, help="A quick run on a subset, for demos"
    )
    label_smoothing = c3.number_input(
        "Label smoothing",
        0.0,
        0.5,
        defaults.label_smoothing,
        step=0.05,
        help="Train against targets of 1 - s for the true class (0: plain cross-entropy)",
    )
    drop_duplicates = c3.checkbox(
        "Drop duplicates in Training",
        defaults.drop_duplicates,
        help="Keep one image of each group of copies in Training (see the Dataset page's audit)",
    )
    m1, m2, m3, m4 = st.columns([2, 1, 1, 1])
    mode = m1.radio(
        "Training mode",
        MODES,
        horizontal=True,
        help="cached: the frozen part of the backbone runs once per image view and is kept on "
        "disk, so epochs take a fraction of the time on a CPU. end_to_end: the whole "
        "network on fresh augmentations every epoch (pick it on a GPU).",
    )
    cache_views = m2.number_input("Cached views per image", 1, 10, defaults.cache_views)
    strategy = m3.selectbox(
        "Devices",
        ONE_MACHINE_STRATEGIES,
        help="default: one device. mirrored: one model replica per GPU of this machine "
        "(end_to_end mode); the batch size is then split across them. Training across "
        "machines (multi_worker) starts from the command line on each machine.",
    )
    precision = choose(
        m4,
        "Arithmetic",
        PRECISIONS,
        defaults.precision,
        help="mixed_bfloat16: the fine-tuned blocks and the cache's forward pass multiply in "
        "bfloat16, much faster on CPUs "
        "with AMX units (recent Intel Xeons) and GPUs from Ampere on, slower on others; auto "
        "picks it where it is fast. The saved model computes in float32 either way.",
    )
    aug = AugmentConfig()
    st.markdown("**Augmentation** (training images only)")
    st.caption(
        "Applied in end_to_end mode, and in cached mode to the stored views beyond the first. "
        "Cached mode with one view trains on each image as it is: the run's config then records "
        "augmentation as off."
    )
    a1, a2, a3, a4, a5, a6 = st.columns(6)
    aug_on = a1.checkbox("On", aug.enabled)
    flip = a2.checkbox("Horizontal flip", aug.horizontal_flip)
    rotation = a3.slider("Rotation (turns)", 0.0, 0.25, aug.rotation)
    zoom = a4.slider("Zoom", 0.0, 0.5, aug.zoom)
    contrast = a5.slider("Contrast", 0.0, 0.5, aug.contrast)
    brightness = a6.slider("Brightness", 0.0, 0.5, aug.brightness)
    submitted = st.form_submit_button("Start training", type="primary")

if submitted:
    weights = {"imagenet": "imagenet", "none": "none"}.get(weights_kind, weights_file.strip())
    config = TrainConfig(
        data_dir=st.session_state.get("data_dir", ""),
        strategy=strategy,
        precision=precision,
        weights=weights,
        input_size=None if input_size is None else int(input_size),
        batch_size=int(batch_size),
        head_epochs=int(head_epochs),
        head_lr=float(head_lr),
        finetune_epochs=int(finetune_epochs),
        finetune_lr=float(finetune_lr),
        finetune_schedule=schedule,
        train_batchnorm=train_batchnorm,
        unfreeze_from=unfreeze,
        val_fraction=float(val_fraction),
        seed=int(seed),
        keep=keep,
        patience=int(patience),
        max_per_class=int(max_per_class) or None,
        label_smoothing=float(label_smoothing),
        drop_duplicates=drop_duplicates,
        augment=AugmentConfig(aug_on, rotation, zoom, flip, contrast, brightness),
        mode=mode,
        cache_views=int(cache_views),
    )
    try:
        from core.dataset import scan_dataset

        config.data_dir = str(inside_data_roots(config.data_dir))
        scan_dataset(config.data_dir)
        with st.spinner("Starting the training process ..."):
            run = launch(reg, config)
        st.session_state["watch_run"] = run.id
        st.rerun()
    except PipelineError as exc:
        st.error(str(exc))

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
