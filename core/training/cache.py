"""The activation cache: the frozen part of the backbone, computed once per image view.

On a CPU most of a fine-tuning epoch is spent pushing every image through the frozen
lower blocks again. Here those blocks run once per image and per augmented view, and
their output (the "boundary" activations, float16) is kept on disk under a key made of
the weights, the input size, the boundary block and the arithmetic (float32, or
bfloat16 where the run's precision says so), plus the augmentation settings and
seed for the augmented views (view 0, the image as it is, depends on neither, so runs
that differ only in seed share it); each file is named by the image's content hash and
view. Any later run with the same backbone and data reuses them. A cache cut higher up
is derived from one cut lower down when there is one (only the blocks in between run,
on the stored activations), so a run that unfreezes fewer blocks never decodes an image
again. Files are written atomically, so a killed build leaves only whole files behind
(and perhaps one temporary file, removed by the next build).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, replace
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from core.config import BLOCKS, FRAMING_WHEN_MISSING, TrainConfig
from core.data.dataset import Sample, file_digest
from core.data.images import load_rgb
from core.data.pipeline import SkippedFiles
from core.errors import ImageDecodeError
from core.io import atomic_path
from core.model.augment import SCANNER_CHANGES, build_augmenter
from core.model.network import computing_in
from core.resolve import resolve_config
from core.training.distribute import machine_precision

STALE_TMP_S = 60.0
Progress = Callable[[int, int], None]
Todo = list[tuple[Sample, int]]  # (image, view) pairs still to store


def weights_id(weights: str, seed: int) -> str:
    if weights == "imagenet":
        return "imagenet"
    if weights == "none":
        return f"random-init-seed{seed}"  # random weights differ by seed
    digest = hashlib.sha256()
    with open(weights, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cache_key(config: TrainConfig, plain: bool = False, weights: str | None = None) -> str:
    """What the stored activations depend on, and nothing else: for the augmented views
    (`plain` False) the augmentation and its seed too. `weights` is weights_id's answer
    when the caller has it already (hashing a weights file takes a second)."""
    config = resolve_config(config, machine_precision())
    spec = {
        "weights": weights or weights_id(config.weights, config.seed),
        "input_size": config.input_size,
        "boundary": config.boundary(),
        "keras": keras.__version__,
    }
    if config.precision != "float32":  # float32 keys stay what they were before there was a choice
        spec["precision"] = config.precision
    if config.framing != FRAMING_WHEN_MISSING:  # likewise for the padded framing
        spec["framing"] = config.framing
    if not plain:
        # Scanner changes that are off stay out of the key: caches made without them stay valid.
        augment = {k: v for k, v in asdict(config.augment).items() if k not in SCANNER_CHANGES or v}
        spec.update(augment=augment, seed=config.seed)
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:24]


class ActivationCache:
    """Boundary activations of one backbone configuration, one .npy file per view: the
    plain view in one folder, the augmented views in another."""

    def __init__(self, root: Path, config: TrainConfig) -> None:
        # Resolved once: "auto" reads /proc/cpuinfo, and every file path goes through the key.
        self.config = resolve_config(config, machine_precision())
        self.root = Path(root)
        self.weights = weights_id(config.weights, config.seed)
        self.plain_folder, self.folder = self.folders_at(config.boundary())
        self.derived: dict[str, int] = {}  # lower boundary -> views derived from its cache
        self._adopt_plain_views(config.boundary())

    def folders_at(self, boundary: str) -> tuple[Path, Path]:
        """(plain view, augmented views) folders of this backbone cut at `boundary`."""
        cut = replace(self.config, cache_boundary=boundary)
        return (
            self.root / cache_key(cut, plain=True, weights=self.weights),
            self.root / cache_key(cut, weights=self.weights),
        )

    def path(self, digest: str, view: int, kind: str = "boundary", boundary: str | None = None) -> Path:
        plain, augmented = self.folders_at(boundary) if boundary else (self.plain_folder, self.folder)
        return (plain if view == 0 else augmented) / f"{digest}_v{view}_{kind}.npy"

    def files(self) -> list[Path]:
        """Every stored array of this cut, both folders."""
        return [f for folder in (self.plain_folder, self.folder) for f in folder.glob("*.npy")]

    def _adopt_plain_views(self, boundary: str) -> None:
        # Caches written before the plain view had its own folder kept it beside the
        # augmented views; moving it (a rename) keeps a user's cache instead of recomputing.
        plain, augmented = self.folders_at(boundary)
        if augmented.is_dir() and any(augmented.glob("*_v0_pooled.npy")):
            self._make(plain, boundary, plain=True)
            for old in augmented.glob("*_v0_*.npy"):
                os.replace(old, plain / old.name)

    def _make(self, folder: Path, boundary: str, plain: bool) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        # A build killed between writing a file and renaming it leaves its temporary file.
        # A live one exists for milliseconds, so one a minute old is such a leftover.
        for tmp in folder.glob("*.npy.tmp"):
            with contextlib.suppress(FileNotFoundError):
                if time.time() - tmp.stat().st_mtime > STALE_TMP_S:
                    tmp.unlink()
        spec = folder / "spec.json"
        if not spec.exists():
            unused = ("seed", "augment") if plain else ()
            settings = {k: v for k, v in self.config.to_dict().items() if k not in unused}
            settings |= {"boundary": boundary, "views": "plain" if plain else "augmented"}
            spec.write_text(json.dumps(settings, indent=2))

    def build(
        self,
        model: keras.Model,
        samples: list[Sample],
        views: int,
        skipped: SkippedFiles,
        progress: Progress | None = None,
        batch_size: int = 32,
    ) -> dict[Sample, str]:
        """Compute what is missing; return the content hash of every readable sample.

        Each view stores the boundary activations and the pooled backbone features
        (what the head phase trains on); both come from one forward pass.
        """
        digests = {s: file_digest(s.path) for s in samples}
        boundary = self.config.boundary()
        self._make(self.plain_folder, boundary, plain=True)
        if views > 1:
            self._make(self.folder, boundary, plain=False)
        todo = [
            (s, v) for s in samples for v in range(views) if not self.path(digests[s], v, "pooled").exists()
        ]
        # In the run's precision, whatever the model's layers were set to: the key says which.
        with computing_in(model, self.config.precision):
            if todo:
                todo = self._derive(model, todo, digests, progress, batch_size)
            if todo:
                self._compute(model, todo, digests, skipped, progress, batch_size)
        bad = skipped.as_dict()
        return {s: d for s, d in digests.items() if str(s.path) not in bad}

    def _lower_caches(self) -> Iterator[str]:
        """Cuts of the same backbone and views at a lower block that have a cache, nearest
        first (the fewer blocks left to run, the cheaper)."""
        boundary = self.config.boundary()
        for lower in reversed(BLOCKS[: BLOCKS.index(boundary)]):
            if any(folder.is_dir() for folder in self.folders_at(lower)):
                self._adopt_plain_views(lower)
                yield lower

    def _derive(self, model, todo: Todo, digests, progress, batch_size) -> Todo:
        """Store what a lower cache holds by running the blocks in between; return the rest.

        The result differs from a computation from the images only by the float16
        rounding of the lower activations. The pooled features do not depend on the
        cut, so they are copied.
        """
        for lower in self._lower_caches():
            here = [(s, v) for s, v in todo if self.path(digests[s], v, "pooled", lower).exists()]
            if not here:
                continue
            boundary = model.get_layer(self.config.boundary()).output
            between = keras.Model(model.get_layer(lower).output, boundary)
            forward = tf.function(lambda x, m=between: m(x, training=False), reduce_retracing=True)
            for start in range(0, len(here), batch_size):
                chunk = here[start : start + batch_size]
                x = np.stack([np.load(self.path(digests[s], v, boundary=lower)) for s, v in chunk])
                upper = forward(tf.constant(x, tf.float32)).numpy().astype(np.float16)
                for (sample, view), activations in zip(chunk, upper):
                    digest = digests[sample]
                    _save_atomic(self.path(digest, view), activations)
                    pooled = np.load(self.path(digest, view, "pooled", lower))
                    _save_atomic(self.path(digest, view, "pooled"), pooled)  # last: marks it complete
                if progress:
                    progress(min(start + batch_size, len(here)), len(here))
            self.derived[lower] = self.derived.get(lower, 0) + len(here)
            done = set(here)
            todo = [item for item in todo if item not in done]
        return todo

    def _compute(self, model, todo, digests, skipped, progress, batch_size) -> None:
        outputs = [model.get_layer(self.config.boundary()).output, model.get_layer("avg_pool").output]
        frozen = keras.Model(model.input, outputs)
        # Compiled once: an eager call walks InceptionV3's ~300 layers in Python per batch.
        forward = tf.function(lambda x: frozen(x, training=False), reduce_retracing=True)
        size = self.config.input_size
        augmenters: dict[int, keras.Sequential | None] = {}
        for start in range(0, len(todo), batch_size):
            chunk = todo[start : start + batch_size]
            for view in sorted({v for _, v in chunk}):
                batch, images = [], []
                for sample, _ in (item for item in chunk if item[1] == view):
                    try:
                        images.append(load_rgb(sample.path, size, self.config.framing))
                        batch.append(sample)
                    except ImageDecodeError as exc:
                        skipped.add(str(sample.path), str(exc))
                if not batch:
                    continue
                x = tf.constant(np.stack(images), tf.float32)
                if view > 0:
                    if view not in augmenters:
                        augmenters[view] = build_augmenter(
                            self.config.augment, self.config.seed + 1000 * view
                        )
                    if augmenters[view] is not None:
                        x = augmenters[view](x, training=True)
                boundary, pooled = forward(x)
                for i, sample in enumerate(batch):
                    digest = digests[sample]
                    _save_atomic(self.path(digest, view), boundary[i].numpy().astype(np.float16))
                    # Written last: its presence marks the view as complete.
                    _save_atomic(self.path(digest, view, "pooled"), pooled[i].numpy().astype(np.float16))
            if progress:
                progress(min(start + batch_size, len(todo)), len(todo))

    def pooled(
        self, samples: list[Sample], digests: dict[Sample, str], views: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """(features, labels) with one row per stored view of each readable sample."""
        kept = [s for s in samples if s in digests]
        x = np.stack([np.load(self.path(digests[s], v, "pooled")) for s in kept for v in range(views)])
        y = np.array([s.label for s in kept for _ in range(views)])
        return x.astype(np.float32), y

    def dataset(
        self,
        samples: list[Sample],
        digests: dict[Sample, str],
        num_classes: int,
        batch_size: int,
        views: int,
        shuffle_seed: int | None = None,
    ) -> tf.data.Dataset:
        """Batches of (boundary activations, one-hot label); a random stored view per
        image and epoch when `views` > 1 (training), view 0 otherwise."""
        kept = [s for s in samples if s in digests]
        paths = [[str(self.path(digests[s], v)) for v in range(views)] for s in kept]
        labels = [s.label for s in kept]
        shape = np.load(paths[0][0], mmap_mode="r").shape
        ds = tf.data.Dataset.from_tensor_slices((paths, labels))
        if shuffle_seed is not None:
            ds = ds.shuffle(len(kept), seed=shuffle_seed, reshuffle_each_iteration=True)

        def read(path: bytes) -> np.ndarray:
            return np.load(path.decode()).astype(np.float32)

        def load(view_paths, label):
            pick = tf.random.uniform((), 0, views, tf.int32, seed=shuffle_seed) if views > 1 else 0
            x = tf.numpy_function(read, [view_paths[pick]], tf.float32, stateful=False)
            x.set_shape(shape)
            return x, tf.one_hot(label, num_classes)

        ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE)
        return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def _save_atomic(path: Path, array: np.ndarray) -> None:
    # The suffix lets a later build find what a killed one left (see the stale clean-up).
    with atomic_path(path, suffix=".npy.tmp") as tmp, open(tmp, "wb") as handle:
        np.save(handle, array)
