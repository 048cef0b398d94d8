"""Benchmark: seconds per fine-tuning step of the cached path, under TensorFlow settings.

    .venv/bin/python bench/step_bench.py                    # ~8 min on a 2-core CPU
    .venv/bin/python bench/step_bench.py --batch-sizes 32,16,8   # the default settings only
    .venv/bin/python bench/step_bench.py --batch-sizes 32 --input-sizes 299,256
    .venv/bin/python bench/step_bench.py --batch-sizes 32 --policies float32,mixed_bfloat16

The fine-tuning epoch of the cached mode is the largest part of a run: the blocks above
the boundary (default mixed6-mixed10, from cached mixed5 activations) forward and
backward, batch 32. This times one such step in a fresh process per setting: oneDNN
optimisations off/on (TF_ENABLE_ONEDNN_OPTS), XLA compilation (jit_compile) off/on,
batch norm frozen/training; or, with --batch-sizes, the default settings (oneDNN on, batch
norm training) at each batch size, input size and Keras dtype policy (mixed_bfloat16:
bfloat16 arithmetic, float32 weights; CPUs with AMX or AVX-512 bfloat16 units may run it
faster, others slower), since images per second, not steps, is what an epoch costs.
Inputs are random activations of the right shape: the arithmetic does not depend on the
values. Prints the machine.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, machine, standin_weights  # noqa: E402
from core.config import input_size_for  # noqa: E402

STEPS = 8
EPOCH = 5426  # training images of a run with the default 5% validation

ONE_SETTING = """
import json, sys, time
import keras, numpy as np
from core.model.network import build_model, set_precision, set_trainable
weights, jit, train_bn = sys.argv[1], sys.argv[2] == "1", sys.argv[3] == "1"
steps, batch, size = int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
model = build_model(4, size, weights, 0.2)
upper = keras.Model(model.get_layer("mixed5").output, model.output)
set_trainable(model, "mixed6", train_bn)
set_precision(model, "mixed6", sys.argv[7])  # as training sets it
upper.compile(optimizer=keras.optimizers.Adam(1e-4), loss="categorical_crossentropy", jit_compile=jit)
rng = np.random.default_rng(0)
x = rng.random((batch, *upper.input.shape[1:]), dtype=np.float32)
y = np.eye(4, dtype=np.float32)[rng.integers(0, 4, batch)]
start = time.monotonic()
upper.train_on_batch(x, y)  # traces (and compiles, with XLA)
first = time.monotonic() - start
times = []
for _ in range(steps):
    start = time.monotonic()
    upper.train_on_batch(x, y)
    times.append(time.monotonic() - start)
print(json.dumps({"first_s": first, "median_s": float(np.median(times))}))
"""


def measure(
    onednn: bool,
    jit: bool,
    train_bn: bool,
    weights: Path,
    batch: int = 32,
    size: int = 299,
    policy: str = "float32",
) -> dict:
    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": "1" if onednn else "0", "TF_CPP_MIN_LOG_LEVEL": "3"}
    args = [str(weights), str(int(jit)), str(int(train_bn)), str(STEPS), str(batch), str(size), policy]
    result = subprocess.run(
        [sys.executable, "-c", ONE_SETTING, *args], cwd=ROOT, env=env, capture_output=True, text=True
    )
    if result.returncode:
        return {"error": result.stderr.strip().splitlines()[-1]}
    return json.loads(result.stdout.strip().splitlines()[-1])


def report(name: str, figures: dict, batch: int) -> None:
    if "error" in figures:
        print(f"  {name}  failed: {figures['error']}")
        return
    per_image = batch / figures["median_s"]
    print(
        f"  {name}  {figures['median_s']:.2f} s/step ({per_image:.1f} img/s; an epoch of {EPOCH:,} "
        f"images {EPOCH / per_image:.0f} s, {math.ceil(EPOCH / batch)} steps); first step "
        f"{figures['first_s']:.1f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch-sizes", help="comma-separated, e.g. 32,16,8: time these instead")
    parser.add_argument(
        "--input-sizes",
        help="comma-separated image sizes for --batch-sizes (default: each policy's default, "
        "core.config.input_size_for)",
    )
    parser.add_argument(
        "--policies",
        default="float32",
        help="comma-separated precisions for --batch-sizes, e.g. float32,mixed_bfloat16",
    )
    args = parser.parse_args()
    print("=== bench/step_bench.py ===")
    print("machine:", machine())
    weights = standin_weights()
    if args.batch_sizes:
        print(f"one fine-tuning step, mixed6-mixed10 + head from mixed5 activations, {STEPS} timed")
        policies = args.policies.split(",")
        sizes = [int(s) for s in args.input_sizes.split(",")] if args.input_sizes else None
        batches = [int(b) for b in args.batch_sizes.split(",")]
        for policy in policies:
            for size, batch in itertools.product(sizes or [input_size_for(policy)], batches):
                report(
                    f"{policy}  input {size}  batch {batch:3d}  oneDNN on  batch norm training",
                    measure(True, False, True, weights, batch, size, policy),
                    batch,
                )
        return
    print(
        f"one fine-tuning step, mixed6-mixed10 + head from mixed5 activations, input 299, "
        f"batch 32, {STEPS} timed"
    )
    settings = [
        (False, False, False),
        (True, False, False),
        (False, True, False),
        (True, True, False),
        (True, False, True),
    ]
    for onednn, jit, train_bn in settings:
        name = f"oneDNN {'on ' if onednn else 'off'}  XLA {'on ' if jit else 'off'}  batch norm "
        name += "training" if train_bn else "frozen  "
        report(name, measure(onednn, jit, train_bn, weights), 32)


if __name__ == "__main__":
    main()
