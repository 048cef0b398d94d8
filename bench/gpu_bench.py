"""Benchmark: the end-to-end path's training and prediction speed on an accelerator.

    KERAS_BACKEND=jax python3 bench/gpu_bench.py      # docs/benchmarks.md's GPU row
    .venv/bin/python bench/gpu_bench.py --quick       # a dry run here (tiny, CPU)

The end-to-end path decodes and augments images in its input pipeline and trains the
classifier as core.model.network builds it: what a GPU user would pick. This times each stage on
its own: decoding (core.data.images.load_rgb on one thread and on all cores), core.model.augment's
augmentation on a batch, a training step of each phase (head only, fine-tuning from the
default block, the whole network as in the reference notebook) in float32 and in mixed
bfloat16, and prediction. Training steps are train_on_batch calls on host batches,
each waited for, so they include the copy to the device; their images/s give seconds
per epoch over the 5712 Training images and a projection of a default run.

The augmentation stays out of the compiled training step, as in core.data.pipeline: Keras
compiles nothing for a model that holds RandomRotation or RandomZoom (their
supports_jit is False), and on an H200 such a model trained the whole network at 10.7
images/s instead of about 850.

It imports core.model.augment, core.model.network and core.data.images, which need Keras but not
TensorFlow: the GPU machine lent here has JAX and PyTorch, no TensorFlow, and no
registry to install it from, so Keras runs on JAX there. Inputs are random images (the
arithmetic does not depend on the values), so it reports speed, not accuracy. Prints the
machine and the accelerator; with --out, also writes the figures as JSON lines as it goes.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import keras  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from bench.common import machine  # noqa: E402
from core.config import AugmentConfig, TrainConfig, input_size_for  # noqa: E402
from core.data.images import load_rgb  # noqa: E402
from core.model.augment import build_augmenter  # noqa: E402
from core.model.network import build_model, set_trainable  # noqa: E402

TRAINING_IMAGES = 5712  # the shared dataset's Training folder
TESTING_IMAGES = 1311
DEFAULTS = TrainConfig(data_dir="")
TUNE = f"fine-tune from {DEFAULTS.unfreeze_from}"
PHASES = {"whole network": "all", TUNE: DEFAULTS.unfreeze_from, "head": "none"}


def accelerator() -> str:
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        devices = ", ".join(d.device_kind for d in jax.devices())
        return f"Keras {keras.__version__} on jax {jax.__version__}: {devices}"
    if backend == "torch":
        import torch

        device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
        return f"Keras {keras.__version__} on torch {torch.__version__}: {device}"
    import tensorflow as tf

    devices = ", ".join(d.name for d in tf.config.list_physical_devices())
    return f"Keras {keras.__version__} on tensorflow {tf.__version__}: {devices}"


def classifier(args: argparse.Namespace, unfreeze_from: str) -> keras.Model:
    model = build_model(4, args.size, args.weights, DEFAULTS.dropout)
    set_trainable(model, unfreeze_from, DEFAULTS.train_batchnorm)
    return model


def random_batches(args: argparse.Namespace) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    shape = (args.batch, args.size, args.size, 3)
    labels = np.eye(4, dtype=np.float32)
    return [
        (rng.integers(0, 256, shape).astype(np.float32), labels[rng.integers(0, 4, args.batch)])
        for _ in range(args.batches)
    ]


def compiled(function):
    """`function` compiled by the backend, where Keras itself would not (see above)."""
    if keras.backend.backend() == "jax":
        import jax

        return jax.jit(function)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.function(function)
    return function


def images_per_second(step, batches: list, batch: int) -> tuple[float, float]:
    """(seconds of the first call, which compiles; images/s over the batches)."""
    start = time.perf_counter()
    keras.ops.convert_to_numpy(step(*batches[0]))  # to host: the device has finished
    first = time.perf_counter() - start
    start = time.perf_counter()
    for arguments in batches:
        keras.ops.convert_to_numpy(step(*arguments))
    return first, len(batches) * batch / (time.perf_counter() - start)


def figures(first: float, rate: float) -> dict:
    return {"first_call_s": round(first, 1), "images_per_s": round(rate, 1)}


def time_training(args, batches, unfreeze_from: str) -> dict:
    model = classifier(args, unfreeze_from)
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="categorical_crossentropy")
    return figures(*images_per_second(model.train_on_batch, batches, args.batch))


def time_prediction(args, batches) -> dict:
    model = classifier(args, "none")
    images = np.concatenate([x for x, _ in batches])

    def predict(x: np.ndarray) -> np.ndarray:
        return model.predict(x, batch_size=args.batch, verbose=0)

    return figures(*images_per_second(predict, [(images,)], len(images)))


def time_augmentation(args, batches) -> dict:
    augment = build_augmenter(AugmentConfig(), DEFAULTS.seed)
    step = compiled(lambda x: augment(x, training=True))
    return figures(*images_per_second(step, [(x,) for x, _ in batches], args.batch))


def time_decoding(args) -> dict:
    """Pillow decoding and resizing of 512x512 greyscale JPEGs, one thread and all cores."""
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        paths = []
        for i in range(args.decode_images):
            path = Path(folder) / f"{i}.jpg"
            Image.fromarray(rng.integers(0, 256, (512, 512), np.uint8)).save(path, quality=90)
            paths.append(path)
        rates = {}
        for workers in (1, os.cpu_count() or 1):
            with ThreadPoolExecutor(workers) as pool:
                start = time.perf_counter()
                list(pool.map(lambda p: load_rgb(p, args.size, "head"), paths))
                rates[f"{workers}_threads_images_per_s"] = round(
                    len(paths) / (time.perf_counter() - start), 1
                )
        return rates


def project(rates: dict[str, float], val_fraction: float) -> float | None:
    """Seconds of a default-length run on the shared dataset from the measured rates:
    head and fine-tuning epochs over the split's training images, validation after each
    epoch, Testing at the end. Compute only: decoding is assumed to keep up."""
    keys = ("head", TUNE, "predict")
    if not all(key in rates for key in keys):
        return None
    head, tune, predict = (rates[key] for key in keys)
    train = TRAINING_IMAGES * (1 - val_fraction)
    val = TRAINING_IMAGES - train
    epochs = DEFAULTS.head_epochs + DEFAULTS.finetune_epochs
    return (
        DEFAULTS.head_epochs * train / head
        + DEFAULTS.finetune_epochs * train / tune
        + epochs * val / predict
        + TESTING_IMAGES / predict
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", default="none", help="InceptionV3 notop weights file, or none")
    # What a run trains at by default on GPUs from Ampere on (they compute in mixed bfloat16).
    p.add_argument("--size", type=int, default=input_size_for("mixed_bfloat16"))
    p.add_argument("--batch", type=int, default=DEFAULTS.batch_size)
    p.add_argument("--batches", type=int, default=20, help="batches timed per stage")
    p.add_argument("--decode-images", type=int, default=512)
    p.add_argument("--policies", default="float32,mixed_bfloat16")
    p.add_argument("--out", help="append the figures here as JSON lines")
    p.add_argument("--quick", action="store_true", help="75x75, batch 4, 2 batches: a dry run")
    args = p.parse_args()
    if args.quick:
        args.size, args.batch, args.batches, args.decode_images = 75, 4, 2, 16

    print("=== bench/gpu_bench.py ===")
    print("machine:", machine())
    print("accelerator:", accelerator())
    print(f"input {args.size}x{args.size}, batch {args.batch}, {args.batches} batches a stage")

    def record(name: str, values: dict) -> None:
        print(f"{name:45s} {json.dumps(values)}", flush=True)
        if args.out:
            with open(args.out, "a") as out:
                out.write(json.dumps({"name": name, **values}) + "\n")

    batches = random_batches(args)
    record("decoding (core.data.images.load_rgb)", time_decoding(args))
    record("augmentation (core.model.augment)", time_augmentation(args, batches))
    for policy in args.policies.split(","):
        keras.config.set_dtype_policy(policy)
        rates = {}
        for phase, unfreeze_from in [*PHASES.items(), ("predict", None)]:
            try:
                if unfreeze_from is None:
                    measured = time_prediction(args, batches)
                else:
                    measured = time_training(args, batches, unfreeze_from)
            except Exception as exc:  # one setting the backend cannot run must not end the rest
                record(f"{policy} {phase}", {"error": f"{type(exc).__name__}: {exc}"[:300]})
                continue
            finally:
                keras.utils.clear_session()
                gc.collect()
            rates[phase] = measured["images_per_s"]
            measured["s_per_epoch_of_5712"] = round(TRAINING_IMAGES / rates[phase], 1)
            record(f"{policy} {phase}", measured)
        for val_fraction in sorted({DEFAULTS.val_fraction, 0.05}):
            seconds = project(rates, val_fraction)
            if seconds is not None:
                record(f"{policy} default run, val {val_fraction}", {"projected_s": round(seconds, 1)})


if __name__ == "__main__":
    main()
