"""tf.data input pipelines: parallel decoding, batching, prefetching, augmentation.

Decoding goes through core.data.images.load_rgb (Pillow, by content) so that training sees
exactly what inference sees. A file that cannot be decoded is recorded in a
SkippedFiles log with its reason and dropped from the stream; it never ends a run.
"""

from __future__ import annotations

import threading
import warnings
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from core.data.dataset import Sample
from core.data.images import load_rgb
from core.errors import ImageDecodeError

# Our datasets filter out unreadable files, so Keras cannot know their length in
# advance and warns at the end of every pass; that is expected here.
warnings.filterwarnings("ignore", message="Your input ran out of data")


class SkippedFiles:
    """Thread-safe record of files left out, with the reason (decoding runs in parallel)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reasons: dict[str, str] = {}

    def add(self, path: str, reason: str) -> None:
        with self._lock:
            self._reasons[path] = reason

    def as_dict(self) -> dict[str, str]:
        with self._lock:
            return dict(sorted(self._reasons.items()))


def _decoder(size: int, framing: str, skipped: SkippedFiles):
    blank = np.zeros((size, size, 3), np.uint8)

    def decode(path: bytes) -> tuple[np.ndarray, bool]:
        name = path.decode()
        try:
            return load_rgb(Path(name), size, framing), True
        except ImageDecodeError as exc:
            skipped.add(name, str(exc))
            return blank, False

    return decode


def make_dataset(
    samples: list[Sample],
    num_classes: int,
    image_size: int,
    batch_size: int,
    skipped: SkippedFiles,
    *,
    framing: str,
    shuffle_seed: int | None = None,
    augmenter: keras.Sequential | None = None,
    shard: tuple[int, int] = (1, 0),
    min_batch: int = 1,
) -> tf.data.Dataset:
    """Batches of (float32 RGB in [0, 255], one-hot label). Preprocessing is in the model.

    `shard` (count, index) keeps every count-th file from the index-th: one worker's
    share when training on several machines. Workers shuffle with the same seed, so
    their shares of each epoch are disjoint.

    `min_batch`: a last batch with fewer images is left out. With several replicas on
    one machine, a last batch smaller than the replica count leaves a replica an empty
    batch, and TensorFlow's oneDNN convolutions fail on those ("Incompatible shapes").
    """
    paths = [str(s.path) for s in samples]
    labels = [s.label for s in samples]
    ds = tf.data.Dataset.from_tensor_slices((paths, labels))
    if shuffle_seed is not None:
        ds = ds.shuffle(len(paths), seed=shuffle_seed, reshuffle_each_iteration=True)
    if shard[0] > 1:
        ds = ds.shard(*shard)  # before decoding: a worker never reads another's files
    decode = _decoder(image_size, framing, skipped)

    def load(path: tf.Tensor, label: tf.Tensor):
        image, ok = tf.numpy_function(decode, [path], (tf.uint8, tf.bool), stateful=False)
        image.set_shape((image_size, image_size, 3))
        return tf.cast(image, tf.float32), tf.one_hot(label, num_classes), ok

    def readable(image, label, ok):
        return ok

    def drop_flag(image, label, ok):
        return image, label

    def augment(images, labels):
        return augmenter(images, training=True), labels

    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.filter(readable).map(drop_flag).batch(batch_size)
    if min_batch > 1:
        ds = ds.filter(lambda images, labels: tf.shape(images)[0] >= min_batch)
    if augmenter is not None:
        ds = ds.map(augment, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)
