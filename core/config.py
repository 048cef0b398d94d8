"""Training configuration: one dataclass, saved beside each run so it can be re-run.

Each option is declared once, with `setting(...)`: its default, help text, form label and
choices live in the field's metadata. The command line's train options, the Train page's
form and the README's table of defaults are generated from `settings()`, so a new field
appears in all of them with one edit. `PRESETS` are named starting points on top of the
defaults.
"""

from __future__ import annotations

import functools
import types
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any

from core.errors import ConfigError

# InceptionV3's smallest input; below it the last blocks have nothing left to pool.
MIN_INPUT_SIZE = 75
BLOCKS = tuple(f"mixed{i}" for i in range(11))
UNFREEZE_CHOICES = ("none", *BLOCKS, "all")
MODES = ("cached", "end_to_end")
SCHEDULES = ("constant", "cosine")
STRATEGIES = ("default", "mirrored", "multi_worker")
ONE_MACHINE_STRATEGIES = STRATEGIES[:2]  # what the app offers: it starts one process
PRECISIONS = ("auto", "float32", "mixed_bfloat16")
KEEPS = ("last", "best")
FRAMINGS = ("head", "pad")  # how a file becomes the model's input (core.data.images)
# What a config.json without "keep" means. Such a config comes from a run that kept its
# lowest validation loss, so reading it as "best" re-runs it as it ran.
KEEP_WHEN_MISSING = "best"
# What a config.json without "framing" means: such a run saw whole images, padded.
FRAMING_WHEN_MISSING = "pad"

# The input size of a config that names none. Mixed bfloat16 arithmetic affords
# InceptionV3's own 299 px; in float32 (most laptops' CPUs) a 299-px epoch costs about 1.5x
# a 256-px one, and the time saved buys more epochs (docs/benchmarks.md).
SIZE_IN_BFLOAT16, SIZE_IN_FLOAT32 = 299, 256


def input_size_for(precision: str) -> int:
    """The input size a config without one trains at, in `precision` ("auto" resolved)."""
    return SIZE_IN_BFLOAT16 if precision == "mixed_bfloat16" else SIZE_IN_FLOAT32


# Predictions whose top probability is below this are flagged for a human look.
FLAG_BELOW = 0.6


def validation_folds(fraction: float) -> int:
    """The k of the grouped k-fold split whose one fold is a `fraction` share of Training."""
    return round(1 / fraction)


def as_ran(config: dict[str, Any]) -> dict[str, Any]:
    """A run's saved config.json with every setting it lacks read as what it meant then
    (preset, keep, framing): what the Compare page sets side by side. An ensemble's, or
    any other that is not a TrainConfig, is returned as it is."""
    try:
        return TrainConfig.from_dict(config).to_dict()
    except ConfigError:
        return config


def framing_of(config: dict[str, Any]) -> str:
    """The framing a run's saved config.json trained with (core.data.images)."""
    return config.get("framing", FRAMING_WHEN_MISSING)


@dataclass(frozen=True)
class Preset:
    """A named starting point: the settings that differ from TrainConfig's defaults
    (named as in `settings()`), what a run costs, and who it is for."""

    overrides: dict[str, Any]
    cost: str
    purpose: str


PRESETS: dict[str, Preset] = {
    "default": Preset(
        overrides={},
        cost="25 to 60 min on a 2-core CPU",
        purpose="the accurate settings, for a run prepared before a session",
    ),
    # The default recipe at 128 px with two fine-tuning epochs. Chosen on grouped validation
    # among three candidates of about the same cost (docs/benchmarks.md): 160 px fine-tuned
    # from mixed8 scored within the noise of it, 112 px lower. The stand-in weights' top
    # blocks need fine-tuning from mixed6 (a head alone reaches about 73% on validation),
    # which sets the floor on its time.
    "quick": Preset(
        overrides={"input_size": 128, "finetune_epochs": 2},
        cost="8 to 12 min on a 2-core CPU",
        purpose="a usable model within a live class",
    ),
}

# The form's sections, in the order the Train page and `--help` show them.
SECTIONS = ("Data and weights", "Training schedule", "Computation", "Augmentation")


def setting(default: Any = MISSING, *, help: str, label: str, section: str, **hints: Any) -> Any:
    """A dataclass field that the command line and the Train page offer.

    `help` serves both; `label` names the form's widget. Hints (all optional): `choices`;
    `app_choices` where the app offers fewer; `auto`, what None means; `bounds`, `step`
    and `format` for the form's number widgets; `widget` ("radio", "slider", "weights",
    "preset") where the type does not say; `flag`, the option's name when it is not
    the field's.
    """
    return field(default=default, metadata={"help": help, "label": label, "section": section, **hints})


@dataclass
class AugmentConfig:
    """Random changes applied to training images only (never validation or test)."""

    enabled: bool = setting(
        True,
        help="random changes to the training images (never validation or test): in end_to_end "
        "mode, and in cached mode to the stored views beyond the first",
        label="Augmentation on",
        section="Augmentation",
        flag="augment",
    )
    rotation: float = setting(
        0.04,
        help="largest rotation, as a fraction of a full turn (0.04 is about 15 degrees)",
        label="Rotation (turns)",
        section="Augmentation",
        widget="slider",
        bounds=(0.0, 0.25),
    )
    zoom: float = setting(
        0.1,
        help="largest zoom in or out, as a fraction of the image side",
        label="Zoom",
        section="Augmentation",
        widget="slider",
        bounds=(0.0, 0.5),
    )
    horizontal_flip: bool = setting(
        True,
        help="mirror left-right at random (axial slices are roughly symmetric)",
        label="Horizontal flip",
        section="Augmentation",
    )
    contrast: float = setting(
        0.1,
        help="contrast scaled by a random factor within 1 plus or minus this",
        label="Contrast",
        section="Augmentation",
        widget="slider",
        bounds=(0.0, 0.5),
    )
    brightness: float = setting(
        0.1,
        help="largest brightness change, as a fraction of the value range",
        label="Brightness",
        section="Augmentation",
        widget="slider",
        bounds=(0.0, 0.5),
    )
    # Scanner changes (core.model.augment): what differs between MR machines, sequences
    # and the dataset's sources. 0 switches each off.
    resolution: int = setting(
        0,
        help="smallest side in pixels an image is shrunk to and enlarged back from, as a "
        "coarser scan would look (0: off)",
        label="Resolution (smallest side, px)",
        section="Augmentation",
        widget="slider",
        bounds=(0, 256),
    )
    blur: float = setting(
        0.0,
        help="largest Gaussian blur, as a standard deviation in pixels (0: off)",
        label="Blur (px)",
        section="Augmentation",
        widget="slider",
        bounds=(0.0, 3.0),
    )
    bias_field: float = setting(
        0.0,
        help="strength of a smooth random brightening and darkening across the image, as "
        "receive coils give (0: off)",
        label="Bias field",
        section="Augmentation",
        widget="slider",
        bounds=(0.0, 1.0),
    )
    gamma: float = setting(
        0.0,
        help="intensity curve x**g with g within 1/(1+this) and 1+this (0: off)",
        label="Gamma",
        section="Augmentation",
        widget="slider",
        bounds=(0.0, 1.0),
    )
    noise: float = setting(
        0.0,
        help="largest Rician noise level, as a fraction of the value range (0: off)",
        label="Noise",
        section="Augmentation",
        widget="slider",
        bounds=(0.0, 0.2),
    )
    jpeg: int = setting(
        0,
        help="lowest JPEG quality an image is re-encoded at, each image's drawn between this "
        "and 95, as images saved and shared as JPEGs look (0: off)",
        label="JPEG quality (lowest)",
        section="Augmentation",
        widget="slider",
        bounds=(0, 95),
    )


@dataclass
class TrainConfig:
    """Everything that defines a run. Defaults follow the reference notebook (input
    size, batch, Adam, dropout, augmentation) except where a help text says otherwise;
    the measurements behind each departure are in docs/benchmarks.md."""

    data_dir: str = field(metadata={"help": "dataset root with Training/ and Testing/"})
    preset: str = setting(
        "default",
        help="the starting values: "
        + "; ".join(f"{name}, {p.purpose} ({p.cost})" for name, p in PRESETS.items())
        + ". Other options change its values",
        label="Preset",
        section="Data and weights",
        choices=tuple(PRESETS),
        widget="preset",
    )
    weights: str = setting(
        "imagenet",
        help="'imagenet' (Keras downloads the file once into ~/.keras/models), 'none' (random "
        "initialisation, for tests), or a local weights file of InceptionV3 without its top",
        label="Pre-trained weights",
        section="Data and weights",
        widget="weights",
    )
    input_size: int | None = setting(
        None,
        help=f"image side in pixels; a {SIZE_IN_BFLOAT16}-px fine-tuning epoch costs about 1.5x "
        f"a {SIZE_IN_FLOAT32}-px one",
        label="Input size (px)",
        section="Data and weights",
        auto=f"{SIZE_IN_BFLOAT16} in mixed bfloat16, {SIZE_IN_FLOAT32} in float32",
        bounds=(MIN_INPUT_SIZE, 599),
    )
    # "head" is chosen on leaving one source out: with it, a run that never saw SARTAJ's
    # own slices recognises about twice as many of them; on grouped validation it is within
    # the noise or better (docs/benchmarks.md, "Framing").
    framing: str = setting(
        "head",
        help="how a file becomes the model's square input: head, one grayscale conversion, "
        "a crop to the head and its brightness stretched, which hides the cues that tell "
        "the dataset's sources apart; pad, the whole image padded with black",
        label="Framing",
        section="Data and weights",
        choices=FRAMINGS,
    )
    batch_size: int = setting(
        32,
        help="images per training step; with several devices, the global batch split across them",
        label="Batch size",
        section="Data and weights",
        bounds=(1, 256),
    )
    # A small validation share gives the rest back to training, which scores higher.
    val_fraction: float = setting(
        0.05,
        help="share of Training held out for validation, drawn by copy group",
        label="Validation fraction",
        section="Data and weights",
        widget="slider",
        bounds=(0.01, 0.5),
    )
    val_fold: int = setting(
        0,
        help="which of the round(1 / validation fraction) folds of Training validates; runs "
        "with the same seed and folds 0 to k-1 cross-validate over copy groups",
        label="Validation fold",
        section="Data and weights",
        bounds=(0, 99),
    )
    seed: int = setting(
        42,
        help="seeds the split, the shuffle, augmentation and initialisation",
        label="Seed",
        section="Data and weights",
        bounds=(0, 2**31 - 1),
    )
    max_per_class: int | None = setting(
        None,
        help="at most N Training images per class, for quick trials and benchmarks",
        label="Images per class",
        section="Data and weights",
        auto="all",
        bounds=(2, 100_000),
    )
    drop_duplicates: bool = setting(
        False,
        help="keep one image of each group of copies in Training (see the audit)",
        label="Drop duplicates in Training",
        section="Data and weights",
    )
    head_epochs: int = setting(
        4,
        help="phase 1: epochs of the new head on a frozen backbone",
        label="Head epochs (frozen backbone)",
        section="Training schedule",
        bounds=(0, 200),
    )
    head_lr: float = setting(
        1e-3,
        help="phase 1: Adam's learning rate",
        label="Head learning rate",
        section="Training schedule",
        bounds=(1e-6, 1.0),
        format="%.5f",
        step=1e-4,
    )
    # Blocks from mixed6 up need real fine-tuning: the benchmarks' stand-in weights trained
    # them on another task. Lower unfreeze points or more epochs cost more than they gave.
    finetune_epochs: int = setting(
        5,
        help="phase 2: epochs with the backbone trained from the unfreeze block up",
        label="Fine-tuning epochs",
        section="Training schedule",
        bounds=(0, 200),
    )
    finetune_lr: float = setting(
        4e-4,
        help="phase 2: Adam's learning rate (its start, with the cosine schedule)",
        label="Fine-tuning learning rate",
        section="Training schedule",
        bounds=(1e-7, 1.0),
        format="%.6f",
        step=1e-5,
    )
    finetune_schedule: str = setting(
        "cosine",
        help="constant, or cosine: the fine-tuning rate falls to 0 over the phase's epochs, "
        "large steps first and small ones to settle",
        label="Fine-tuning schedule",
        section="Training schedule",
        choices=SCHEDULES,
    )
    unfreeze_from: str = setting(
        "mixed6",
        help="first InceptionV3 block trained in phase 2, mixed0 to mixed10; none skips the "
        "phase, all trains every layer",
        label="Unfreeze from",
        section="Training schedule",
        choices=UNFREEZE_CHOICES,
    )
    train_batchnorm: bool = setting(
        True,
        help="the unfrozen blocks' batch norm layers learn these images' statistics",
        label="Batch norm learns while fine-tuning",
        section="Training schedule",
    )
    # A cosine decay ends at the last step, and the lowest validation loss over a few
    # hundred images is a noisy pick of an earlier epoch: "last" scored as well or better.
    keep: str = setting(
        "last",
        help="the run's model: last, the weights at the end of training; best, those of the "
        "epoch with the lowest validation loss, with early stopping",
        label="Model kept",
        section="Training schedule",
        choices=KEEPS,
    )
    patience: int = setting(
        3,
        help="with keep best: epochs without a new lowest validation loss before training stops",
        label="Early-stopping patience",
        section="Training schedule",
        bounds=(1, 50),
    )
    dropout: float = setting(
        0.2,
        help="dropout rate before the dense softmax",
        label="Dropout",
        section="Training schedule",
        bounds=(0.0, 0.9),
        step=0.05,
    )
    label_smoothing: float = setting(
        0.0,
        help="cross-entropy against softened targets: 1 - s + s/K for the true class and s/K "
        "for the others (K classes); 0 is plain cross-entropy",
        label="Label smoothing",
        section="Training schedule",
        bounds=(0.0, 0.5),
        step=0.05,
    )
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    mode: str = setting(
        "cached",
        help="cached: the frozen part of the backbone runs once per image view and is stored "
        "on disk, so epochs take a fraction of the time on a CPU; end_to_end: the whole "
        "network on fresh augmentations every epoch (the choice on a GPU)",
        label="Training mode",
        section="Computation",
        choices=MODES,
        widget="radio",
    )
    cache_views: int = setting(
        1,
        help="cached mode: stored views per training image, one plain and the rest augmented",
        label="Cached views per image",
        section="Computation",
        bounds=(1, 10),
    )
    cache_boundary: str | None = setting(
        None,
        help="cached mode: the last frozen block, whose output is stored",
        label="Cache cut",
        section="Computation",
        choices=BLOCKS,
        auto="the block below the unfreeze block",
    )
    strategy: str = setting(
        "default",
        help="tf.distribute: default, one device; mirrored, one model replica per GPU of this "
        "machine (or per logical CPU device); multi_worker, the machines in TF_CONFIG (command "
        "line only: run the same command on each). Other than default needs end_to_end mode",
        label="Devices",
        section="Computation",
        choices=STRATEGIES,
        app_choices=ONE_MACHINE_STRATEGIES,
    )
    # Bfloat16 halves a fine-tuning step on AMX CPUs for the same accuracy within what a
    # seed moves; on CPUs without such units it is slower than float32.
    precision: str = setting(
        "auto",
        help="arithmetic of the fine-tuned blocks and the cache's forward pass: mixed_bfloat16 "
        "is fast on CPUs with AMX units and GPUs from Ampere on, slow on others; auto picks it "
        "where it is fast. The saved model computes in float32 either way",
        label="Arithmetic",
        section="Computation",
        choices=PRECISIONS,
    )

    def boundary(self) -> str:
        """The cached mode's cut: the output of the last block that never trains."""
        if self.cache_boundary:
            return self.cache_boundary
        if self.unfreeze_from == "none":
            return BLOCKS[-1]
        return BLOCKS[BLOCKS.index(self.unfreeze_from) - 1]

    def value(self, path: str) -> Any:
        """A setting's value, named as in `settings()` ("augment.rotation")."""
        value: Any = self
        for part in path.split("."):
            value = getattr(value, part)
        return value

    def changed(self, values: dict[str, Any]) -> TrainConfig:
        """A copy with settings changed, named as in `settings()`."""
        unknown = set(values) - {s.path for s in settings()}
        if unknown:
            raise ConfigError(f"unknown settings: {', '.join(sorted(unknown))}")
        top = {path: v for path, v in values.items() if "." not in path}
        inner: dict[str, dict[str, Any]] = {}
        for path, v in values.items():
            if "." in path:
                outer, name = path.split(".", 1)
                inner.setdefault(outer, {})[name] = v
        for outer, changes in inner.items():
            top[outer] = replace(getattr(self, outer), **changes)
        return replace(self, **top)

    def validate(self) -> TrainConfig:
        """Check every option before any work starts; raise ConfigError if wrong."""
        if self.preset not in PRESETS:
            raise ConfigError(f"preset must be one of {', '.join(PRESETS)}; got {self.preset!r}")
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
        if not 0 <= self.val_fold < validation_folds(self.val_fraction):
            raise ConfigError(
                f"val_fold must be between 0 and {validation_folds(self.val_fraction) - 1} "
                f"(round(1 / val_fraction) - 1); got {self.val_fold}"
            )
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
        values.setdefault("keep", KEEP_WHEN_MISSING)
        values.setdefault("framing", FRAMING_WHEN_MISSING)
        augment = values.pop("augment", {}) or {}
        try:
            return cls(**values, augment=AugmentConfig(**augment))
        except TypeError as exc:
            raise ConfigError(f"invalid configuration: {exc}") from None


def preset_config(
    data_dir: str, preset: str = "default", changes: dict[str, Any] | None = None
) -> TrainConfig:
    """The preset's configuration, with `changes` (named as in `settings()`) on top."""
    if preset not in PRESETS:
        raise ConfigError(f"preset must be one of {', '.join(PRESETS)}; got {preset!r}")
    values = PRESETS[preset].overrides | (changes or {})
    return TrainConfig(data_dir=data_dir, preset=preset).changed(values)


@dataclass(frozen=True)
class Setting:
    """One option of TrainConfig as the command line and the Train page offer it."""

    path: str  # the field's name; "augment.rotation" for a field of AugmentConfig
    kind: type  # int, float, str or bool
    optional: bool  # None is allowed: `auto` says what the run then does
    default: Any
    help: str
    label: str
    section: str
    flag: str  # the command line's option
    choices: tuple[str, ...] = ()
    app_choices: tuple[str, ...] = ()
    auto: str = ""
    bounds: tuple[float, float] | None = None
    step: float | None = None
    format: str | None = None
    widget: str = ""


@functools.cache
def settings() -> tuple[Setting, ...]:
    """Every option of TrainConfig, nested ones included, in declaration order.

    `data_dir` is not among them: it is where the data is, the command line's positional
    argument and the app's sidebar choice.
    """
    return tuple(_settings_of(TrainConfig, TrainConfig(data_dir=""), ""))


def _settings_of(cls: type, defaults: Any, prefix: str) -> list[Setting]:
    found: list[Setting] = []
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        kind, optional = _plain_type(hints[f.name])
        if is_dataclass(kind):
            found += _settings_of(kind, getattr(defaults, f.name), f"{prefix}{f.name}.")
            continue
        if f.name == "data_dir":
            continue
        meta = dict(f.metadata)
        if "label" not in meta:
            raise TypeError(f"{cls.__name__}.{f.name} needs setting(...) with its help and label")
        flag = meta.pop("flag", f"{prefix}{f.name}".replace(".", "-").replace("_", "-"))
        choices, app_choices = meta.pop("choices", ()), meta.pop("app_choices", ())
        found.append(
            Setting(
                path=prefix + f.name,
                kind=kind,
                optional=optional,
                default=getattr(defaults, f.name),
                flag=f"--{flag}",
                choices=choices,
                app_choices=app_choices or choices,
                **meta,
            )
        )
    return found


def _plain_type(hint: Any) -> tuple[type, bool]:
    """(the type, whether None is allowed) of `int | None` and the like."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0], True
    return hint, False


def describe(setting: Setting, value: Any) -> str:
    """A value as the help texts and the README show it."""
    if value is None:
        return setting.auto or "none"
    if setting.kind is bool:
        return "on" if value else "off"
    if setting.kind is float:
        return f"{value:g}"
    return str(value)


def preset_values(setting: Setting) -> dict[str, Any]:
    """The presets that change this setting, with their values."""
    return {
        name: p.overrides[setting.path]
        for name, p in PRESETS.items()
        if setting.path in p.overrides and p.overrides[setting.path] != setting.default
    }


def defaults_table() -> str:
    """The README's table of the train options: default, the presets' values, meaning."""
    named = [name for name, p in PRESETS.items() if p.overrides]
    rows = [
        "| Option | Default | " + " | ".join(f"`--preset {n}`" for n in named) + " | Meaning |",
        "|---|---|" + "---|" * len(named) + "---|",
    ]
    for s in settings():
        flag = f"`{s.flag}`, `--no-{s.flag[2:]}`" if s.kind is bool else f"`{s.flag}`"
        by_preset = preset_values(s)
        cells = [describe(s, by_preset[n]) if n in by_preset else "" for n in named]
        rows.append(f"| {flag} | {describe(s, s.default)} | " + " | ".join(cells) + f" | {s.help} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(defaults_table())  # python -m core.config: the table README.md shows
