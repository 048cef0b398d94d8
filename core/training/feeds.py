"""Where a training phase's batches come from, and the model each phase fits on them.

End to end (ImageFeed): decoded, freshly augmented images through the whole network.
Cached (CachedFeed): the frozen part of the backbone runs once per image and view and
its activations are stored (core.training.cache); the head then trains on pooled features and
fine-tuning on the boundary activations, which is fast on a CPU.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from core.config import TrainConfig
from core.data.dataset import DatasetIndex
from core.data.pipeline import SkippedFiles, make_dataset
from core.errors import PipelineError
from core.evaluation.evaluate import Predictions
from core.model.augment import build_augmenter
from core.training.cache import ActivationCache
from core.training.loop import InputFunction
from core.training.phases import Phase
from core.training.recorder import RunRecorder


class Feed:
    """Where a phase's batches come from; `for_phase` returns the model to fit on them."""

    def for_phase(self, model: keras.Model, phase: Phase) -> tuple[keras.Model, object, object, int]:
        raise NotImplementedError

    def describe(self) -> dict:
        return {}

    def validation_predictions(self, model: keras.Model, index: DatasetIndex) -> Predictions | None:
        """The validation images' predictions, if this feed has a cheaper way than the images."""
        return None

    def pooled_features(self, model: keras.Model, samples: list) -> tuple[np.ndarray, np.ndarray] | None:
        """Pooled features and labels of `samples`, if this feed has a cheaper way than the images."""
        return None

    def input_functions(self) -> tuple[InputFunction, InputFunction]:
        """Training and validation batches for one worker of several (core.training.loop)."""
        raise PipelineError("only end_to_end mode trains across machines")


class ImageFeed(Feed):
    """End to end: decoded, freshly augmented images through the whole network."""

    def __init__(
        self, config: TrainConfig, train: list, val: list, n: int, skipped: SkippedFiles, replicas: int = 1
    ):
        self.config, self.samples, self.n, self.skipped = config, {"train": train, "val": val}, n, skipped
        self.augmenter = build_augmenter(config.augment, config.seed)
        # Each batch is split over the replicas: one smaller than that is left out.
        self.train = self._dataset("train", config.batch_size, min_batch=replicas)
        self.val = self._dataset("val", config.batch_size, min_batch=replicas)
        full, last = divmod(len(train), config.batch_size)
        self.batches = full + (last >= replicas)

    def _dataset(
        self, split: str, batch_size: int, shard: tuple[int, int] = (1, 0), min_batch: int = 1
    ) -> tf.data.Dataset:
        training = split == "train"
        return make_dataset(
            self.samples[split],
            self.n,
            self.config.input_size,
            batch_size,
            self.skipped,
            framing=self.config.framing,
            shuffle_seed=self.config.seed if training else None,
            augmenter=self.augmenter if training else None,
            shard=shard,
            min_batch=min_batch,
        )

    def for_phase(self, model, phase):
        return model, self.train, self.val, self.batches

    def input_functions(self) -> tuple[InputFunction, InputFunction]:
        def share(split: str) -> InputFunction:
            def make(context: tf.distribute.InputContext) -> tf.data.Dataset:
                # Per-replica batches: each goes whole to one replica, so none is empty.
                batch = context.get_per_replica_batch_size(self.config.batch_size)
                return self._dataset(split, batch, (context.num_input_pipelines, context.input_pipeline_id))

            return make

        return share("train"), share("val")

    def describe(self) -> dict:
        return {"mode": "end_to_end"}


class CachedFeed(Feed):
    """Cached: the head trains on pooled features, fine-tuning on boundary activations.

    Both trainable models share their layers with the full model, so training them
    trains it: the saved model is the same single flat graph as end to end.
    """

    def __init__(
        self,
        cache: ActivationCache,
        config: TrainConfig,
        model: keras.Model,
        train: list,
        val: list,
        n: int,
        skipped: SkippedFiles,
        recorder: RunRecorder,
    ):
        self.config, self.n, self.cache = config, n, cache
        views = config.cache_views
        before = self.stored_views()
        recorder.write_progress("caching", 0, force=True)
        digests = self.cache.build(model, train, views, skipped, progress=recorder.caching)
        digests.update(self.cache.build(model, val, 1, skipped, progress=recorder.caching))
        self.reused = before and self.stored_views() == before
        self.train, self.val, self.digests = train, val, digests
        self.boundary_model = keras.Model(model.get_layer(config.boundary()).output, model.output)

    def stored_views(self) -> int:
        return sum(1 for f in self.cache.files() if f.name.endswith("_pooled.npy"))

    def for_phase(self, model, phase):
        bs = self.config.batch_size
        if phase.unfreeze_from == "none":
            head_input = keras.Input((model.get_layer("avg_pool").output.shape[-1],))
            x = head_input
            names = {layer.name for layer in model.layers}
            for name in ("head_dropout", "predictions"):  # no dropout layer when dropout is 0
                if name in names:
                    x = model.get_layer(name)(x)
            head = keras.Model(head_input, x)
            x_train, y_train = self.cache.pooled(self.train, self.digests, self.config.cache_views)
            x_val, y_val = self.cache.pooled(self.val, self.digests, 1)
            eye = np.eye(self.n, dtype=np.float32)
            train = tf.data.Dataset.from_tensor_slices((x_train, eye[y_train]))
            train = train.shuffle(len(x_train), seed=self.config.seed).batch(bs)
            val = tf.data.Dataset.from_tensor_slices((x_val, eye[y_val])).batch(bs)
            return head, train, val, math.ceil(len(x_train) / bs)
        train = self.cache.dataset(
            self.train, self.digests, self.n, bs, self.config.cache_views, shuffle_seed=self.config.seed
        )
        val = self.cache.dataset(self.val, self.digests, self.n, bs, 1)
        return self.boundary_model, train, val, math.ceil(len(self.train) / bs)

    def validation_predictions(self, model: keras.Model, index: DatasetIndex) -> Predictions:
        """From the cached activations: equal to the images' up to float16 rounding (and
        bfloat16 arithmetic below the boundary in such a run), and only the blocks above
        the boundary run (calibration needs these predictions)."""
        upper = keras.Model(model.get_layer(self.config.boundary()).output, model.output)
        kept = [s for s in self.val if s in self.digests]
        data = self.cache.dataset(kept, self.digests, self.n, self.config.batch_size, 1)
        return Predictions(
            files=[index.relative(s) for s in kept],
            y_true=np.array([s.label for s in kept], dtype=int),
            probabilities=np.asarray(upper.predict(data, verbose=0), dtype=np.float64),
            skipped={},
            source="cached activations",
        )

    def pooled_features(self, model: keras.Model, samples: list) -> tuple[np.ndarray, np.ndarray]:
        """From the plain view's cached activations, through the blocks above the cut as
        the trained model has them (the cache's own pooled features are the backbone's
        before fine-tuning)."""
        boundary = model.get_layer(self.config.boundary()).output
        upper = keras.Model(boundary, model.get_layer("avg_pool").output)
        kept = [s for s in samples if s in self.digests]
        data = self.cache.dataset(kept, self.digests, self.n, self.config.batch_size, 1)
        labels = np.array([s.label for s in kept], dtype=int)
        return np.asarray(upper.predict(data, verbose=0), dtype=np.float32), labels

    def describe(self) -> dict:
        return {
            "mode": "cached",
            "cache_key": self.cache.plain_folder.name,  # the plain view's
            "augmented_cache_key": self.cache.folder.name if self.config.cache_views > 1 else None,
            "boundary": self.config.boundary(),
            "views": self.config.cache_views,
            "cache_reused": bool(self.reused),
            # Views computed from a lower cache's activations instead of from the images.
            "derived_from": self.cache.derived,
        }
