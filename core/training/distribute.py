"""Which devices a training runs on: a tf.distribute strategy from the run's config,
and the facts about this machine's devices that resolving "auto" precision needs.

"mirrored" keeps one replica of the model per device of this machine and averages
their gradients each step. "multi_worker" does the same across machines described by
the TF_CONFIG environment variable (one process per machine, the same command on
each). In both, the batch size in the config is the global batch, split across the
replicas.
"""

from __future__ import annotations

import json
import os

import tensorflow as tf

from core.errors import ConfigError
from core.resolve import auto_precision

TF_CONFIG_HELP = (
    'set TF_CONFIG on every machine, e.g. {"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
    '"task": {"type": "worker", "index": 0}} (index 0 on the first machine, 1 on the second ...)'
)


def cluster_from_env() -> tuple[int, int]:
    """(number of workers, this worker's index) from TF_CONFIG, or a ConfigError."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        raise ConfigError(f"strategy multi_worker needs the cluster in TF_CONFIG: {TF_CONFIG_HELP}")
    try:
        config = json.loads(raw)
        workers = config["cluster"]["worker"]
        task = config["task"]
        index = int(task["index"])
    except (ValueError, KeyError, TypeError):
        raise ConfigError(f"TF_CONFIG is not a valid cluster description: {TF_CONFIG_HELP}") from None
    if task.get("type") != "worker" or not 0 <= index < len(workers):
        raise ConfigError(f"TF_CONFIG's task must be one of its workers: {TF_CONFIG_HELP}")
    return len(workers), index


def make_strategy(name: str) -> tf.distribute.Strategy:
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        # Without a GPU, the CPU devices (one unless logical CPUs were configured).
        devices = gpus or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    if name == "multi_worker":
        cluster_from_env()
        # Must come before TensorFlow runs any op: it configures the collectives.
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ConfigError(f"unknown strategy {name!r}")


def is_multi_worker(strategy: tf.distribute.Strategy) -> bool:
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def check_replicas(strategy: tf.distribute.Strategy, batch_size: int, n_validation: int) -> None:
    """Raise ConfigError where the batches cannot be split over the strategy's replicas."""
    replicas = strategy.num_replicas_in_sync
    if is_multi_worker(strategy):
        if batch_size % replicas:
            raise ConfigError(f"batch size {batch_size} does not split evenly over {replicas} replicas")
    elif n_validation < replicas:
        # Every validation batch would be smaller than the replica count (see core.training.feeds.ImageFeed).
        raise ConfigError(
            f"{n_validation} validation images cannot be split over {replicas} replicas: "
            "raise the validation fraction"
        )


def describe(strategy: tf.distribute.Strategy) -> dict:
    info: dict = {
        "strategy": type(strategy).__name__,
        "replicas": int(strategy.num_replicas_in_sync),
    }
    if is_multi_worker(strategy):
        # Its class is CollectiveAllReduceStrategy; the public name is what users know.
        info["strategy"] = "MultiWorkerMirroredStrategy"
        info["workers"], info["worker"] = cluster_from_env()
    return info


def has_bfloat16_units() -> bool:
    """Whether this machine's CPU multiplies bfloat16 in hardware (AMX): there mixed
    bfloat16 fine-tuning steps took about half the float32 time (docs/benchmarks.md); elsewhere
    TensorFlow emulates it and it is slower."""
    try:
        with open("/proc/cpuinfo") as handle:
            return any(line.startswith("flags") and " amx_bf16" in line for line in handle)
    except OSError:
        return False


def gpu_capabilities() -> list[tuple[int, int]]:
    """The CUDA compute capability of each GPU TensorFlow sees (none on a CPU machine)."""
    return [
        tuple(tf.config.experimental.get_device_details(gpu).get("compute_capability", (0, 0)))
        for gpu in tf.config.list_physical_devices("GPU")
    ]


def machine_precision() -> str:
    """What precision "auto" stands for on this machine (core.resolve decides from its
    devices)."""
    return auto_precision(has_bfloat16_units(), gpu_capabilities())
