"""Training configuration: one dataclass, saved beside each run so it can be re-run."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from core.errors import ConfigError

# InceptionV3's smallest input; below it the last blocks have nothing left to pool.
MIN_INPUT_SIZE = 75
BLOCKS = tuple(f"mixed{i}" for i in range(11))
UNFREEZE_CHOICES = ("none", *BLOCKS, "all")
MODES = ("cached", "end_to_end")
# How the fine-tuning learning rate moves: "constant", or "cosine" (from finetune_lr
# down to 0 over the phase's epochs: large steps first, small ones to settle).
SCHEDULES = ("constant", "cosine")
# "default": one device. "mirrored": data parallel over this machine's GPUs (or its
# logical CPU devices when it has none), one model replica per device. "multi_worker":
# the same across machines listed in TF_CONFIG (command line only).
STRATEGIES = ("default", "mirrored", "multi_worker")
ONE_MACHINE_STRATEGIES = STRATEGIES[:2]  # what the app offers: it starts one process
# The arithmetic of training: the blocks that fine-tune and the activation cache's
# forward pass. "mixed_bfloat16": bfloat16 products, float32 weights and softmax; fast on
# CPUs with AMX bfloat16 units and GPUs from Ampere on, slow on others. "auto":
# mixed_bfloat16 where the devices that train have them, else float32. Saved models are
# float32 whichever trained them.
PRECISIONS = ("auto", "float32", "mixed_bfloat16")
# Which weights become the run's model. "last": those at the end of training, every epoch
# run (a cosine decay is designed to end there). "best": the epoch with the lowest
# validation loss, and early stopping after `patience` epochs without a new lowest (the
# reference notebook's choice).
KEEPS = ("last", "best")
# What a config.json without "keep" means. Such a config comes from a run that kept its
# lowest validation loss, so reading it as "best" re-runs it as it ran.
KEEP_BEFORE_THE_CHOICE = "best"

# The input size of a config that names none: 299 (the reference's) where the run computes
# in mixed bfloat16, 256 in float32. A fine-tuning epoch at 299 costs about 1.5x one at
# 256. Bfloat16 arithmetic pays for that, and there 299 scores higher on average; in
# float32 (most laptops' CPUs) 256 keeps a default run under half an hour on two cores and
# affords more epochs. Figures: docs/benchmarks.md.
SIZE_IN_BFLOAT16, SIZE_IN_FLOAT32 = 299, 256


def input_size_for(precision: str) -> int:
    """The input size a config without one trains at, in `precision` ("auto" resolved)."""
    return SIZE_IN_BFLOAT16 if precision == "mixed_bfloat16" else SIZE_IN_FLOAT32


# Predictions whose top probability is below this are flagged for a human look.
FLAG_BELOW = 0.6


@dataclass
class AugmentConfig:
    """Random changes applied to training images only (never validation or test)."""

    enabled: bool = True
    rotation: float = 0.04  # fraction of a full turn: 0.04 is about +-15 degrees
    zoom: float = 0.1
    horizontal_flip: bool = True  # axial slices are roughly left-right symmetric
    contrast: float = 0.1
    brightness: float = 0.1


@dataclass
class TrainConfig:
    """Everything that defines a run. Defaults follow the reference notebook (input
    size, batch, Adam, dropout, augmentation) except where the comments below say."""

    data_dir: str
    weights: str = "imagenet"  # "imagenet" (Keras download), "none", or a weights file
    # None: input_size_for the run's precision (299 in bfloat16, 256 in float32); a
    # prepared run's config.json holds the number. At 256 a fine-tuning epoch costs about
    # 0.7x one at 299, so in float32 five epochs take the time of three, and score higher
    # (docs/benchmarks.md).
    input_size: int | None = None
    batch_size: int = 32
    # 5% of Training for validation (the reference held out more): the images it gives
    # back to training score higher on Testing (docs/benchmarks.md).
    val_fraction: float = 0.05
    seed: int = 42
    dropout: float = 0.2
    # Targets of (1 - s) for the true class and s / classes elsewhere: a penalty on
    # over-confident fits of the training images (0: plain cross-entropy, the reference's).
    label_smoothing: float = 0.0
    # The training recipe fits a default run into half an hour on a 2-core CPU. The
    # stand-in weights the benchmarks use have blocks from mixed6 up trained on another
    # task, so those blocks need real fine-tuning: 5 epochs from mixed6, batch norm
    # adapting to MRI statistics, and a cosine decay from 4x the reference's rate, which
    # takes large steps first and settles at the end. More epochs, a lower unfreeze point
    # or augmented cached views cost more time than they gave. The comparisons were made
    # on Testing, so they are optimistic; figures and commands: docs/benchmarks.md.
    head_epochs: int = 4
    head_lr: float = 1e-3
    finetune_epochs: int = 5
    finetune_lr: float = 4e-4  # the reference used a constant 1e-4
    finetune_schedule: str = "cosine"
    unfreeze_from: str = "mixed6"  # first block trained in phase 2 ("none": skip it)
    train_batchnorm: bool = True  # the unfrozen blocks' batch norm learns these images' statistics
    # "last" (KEEPS): the cosine decay ends at the last step, and the lowest validation
    # loss over a few hundred validation images is a noisy pick of an earlier epoch. Where
    # both were scored, the last epoch was as good or better (docs/benchmarks.md).
    keep: str = "last"
    patience: int = 3  # early stopping's, with keep "best"
    max_per_class: int | None = None  # subsample each class (quick runs, benchmarks)
    drop_duplicates: bool = False  # keep one image of each copy group in Training (audit)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    # "cached": the frozen part of the backbone runs once per image and augmented view
    # and is stored on disk (fast on a CPU); "end_to_end": every epoch runs the whole
    # network on freshly augmented images (what a GPU user would pick).
    mode: str = "cached"
    cache_views: int = 1  # stored views per training image: 1 plain + augmented ones
    cache_boundary: str | None = None  # last frozen block; default: the one below unfreeze_from
    strategy: str = "default"  # tf.distribute strategy (STRATEGIES); batch_size is the global batch
    # "auto": mixed bfloat16 where the hardware multiplies bfloat16 natively (CPUs with
    # AMX units, GPUs from Ampere on), float32 elsewhere. On an AMX CPU a fine-tuning step
    # takes about half the float32 time, for the same accuracy within what a seed moves
    # (docs/benchmarks.md). A prepared run's config.json says which it was.
    precision: str = "auto"  # PRECISIONS

    def boundary(self) -> str:
        """The cached mode's cut: the output of the last block that never trains."""
        if self.cache_boundary:
            return self.cache_boundary
        if self.unfreeze_from == "none":
            return BLOCKS[-1]
        return BLOCKS[BLOCKS.index(self.unfreeze_from) - 1]

    def validate(self) -> TrainConfig:
        """Check every option before any work starts; raise ConfigError if wrong."""
        if self.input_size is not None and self.input_size < MIN_INPUT_SIZE:
            raise ConfigError(
                f"input size {self.input_size} is below InceptionV3's minimum of {MIN_INPUT_SIZE}"
            )
        if self.unfreeze_from not in UNFREEZE_CHOICES:
            raise ConfigError(
                f"unfreeze_from must be one of {', '.join(UNFREEZE_CHOICES)}; got {self.unfreeze_from!r}"
            )
        if not 0.0 < self.val_fraction < 0.9:
            raise ConfigError(f"val_fraction must be between 0 and 0.9; got {self.val_fraction}")
        if self.batch_size < 1 or self.head_epochs < 0 or self.finetune_epochs < 0:
            raise ConfigError("batch size must be positive and epochs not negative")
        if self.head_lr <= 0 or self.finetune_lr <= 0:
            raise ConfigError("learning rates must be positive")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1); got {self.dropout}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"label_smoothing must be in [0, 1); got {self.label_smoothing}")
        if self.max_per_class is not None and self.max_per_class < 2:
            raise ConfigError("max_per_class must be at least 2")
        if self.finetune_schedule not in SCHEDULES:
            raise ConfigError(
                f"finetune_schedule must be one of {', '.join(SCHEDULES)}; got {self.finetune_schedule!r}"
            )
        if self.mode not in MODES:
            raise ConfigError(f"mode must be one of {', '.join(MODES)}; got {self.mode!r}")
        if self.mode == "cached":
            self._validate_cache()
        if self.keep not in KEEPS:
            raise ConfigError(f"keep must be one of {', '.join(KEEPS)}; got {self.keep!r}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}; got {self.precision!r}")
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"strategy must be one of {', '.join(STRATEGIES)}; got {self.strategy!r}")
        if self.strategy != "default" and self.mode != "end_to_end":
            raise ConfigError(
                f"strategy {self.strategy} trains end to end: the activation cache runs on one device "
                "(use --mode end_to_end)"
            )
        if self.weights not in ("imagenet", "none") and not Path(self.weights).is_file():
            raise ConfigError(
                f"weights must be 'imagenet', 'none' or an existing weights file; "
                f"{self.weights!r} is none of these"
            )
        return self

    def _validate_cache(self) -> None:
        if self.unfreeze_from in ("all", "mixed0"):
            raise ConfigError(
                "cached mode keeps the stem frozen: unfreeze from mixed1 or above, or use mode end_to_end"
            )
        if self.cache_views < 1:
            raise ConfigError("cache_views must be at least 1")
        if self.cache_boundary is not None:
            if self.cache_boundary not in BLOCKS:
                raise ConfigError(f"cache_boundary must be one of {', '.join(BLOCKS)}")
            top = BLOCKS.index(self.unfreeze_from) if self.unfreeze_from in BLOCKS else len(BLOCKS)
            if BLOCKS.index(self.cache_boundary) >= top:
                raise ConfigError(
                    f"cache_boundary {self.cache_boundary} must be below unfreeze_from "
                    f"{self.unfreeze_from}: the cached blocks cannot train"
                )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Inverse of to_dict; unknown keys are an error, not silently dropped."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown configuration keys: {', '.join(sorted(unknown))}")
        values = dict(data)
        values.setdefault("keep", KEEP_BEFORE_THE_CHOICE)
        augment = values.pop("augment", {}) or {}
        try:
            return cls(**values, augment=AugmentConfig(**augment))
        except TypeError as exc:
            raise ConfigError(f"invalid configuration: {exc}") from None
