"""Which devices a training runs on: a tf.distribute strategy from the run's config.

"mirrored" keeps one replica of the model per device and averages their gradients
each step; the batch size in the config is then the global batch, split across them.
Across machines (MultiWorkerMirroredStrategy through TF_CONFIG) Keras 3.15's Model.fit
fails (keras-team/keras#20585, reproduced here), so it is not offered.
"""

from __future__ import annotations

import tensorflow as tf

from core.errors import ConfigError


def make_strategy(name: str) -> tf.distribute.Strategy:
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        # Without a GPU, the CPU devices (one unless logical CPUs were configured).
        devices = gpus or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    raise ConfigError(f"unknown strategy {name!r}")


def describe(strategy: tf.distribute.Strategy) -> dict:
    return {
        "strategy": type(strategy).__name__,
        "replicas": int(strategy.num_replicas_in_sync),
    }
