"""Finding the images: the folder layout, class names, the validation split, a fingerprint.

Layout: <root>/Training/<class>/* and <root>/Testing/<class>/*. Class names are the
sorted folder names. Nothing here decodes pixels or imports TensorFlow, so the app can
scan a dataset instantly.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from core.config import validation_folds
from core.errors import DatasetError

SPLITS = ("Training", "Testing")
LAYOUT_HELP = "expected <root>/Training/<class>/*.jpg and <root>/Testing/<class>/*.jpg"


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int


@dataclass
class DatasetIndex:
    root: Path
    classes: list[str]
    training: list[Sample]
    testing: list[Sample]

    def relative(self, sample: Sample) -> str:
        return sample.path.relative_to(self.root).as_posix()

    def counts(self, samples: list[Sample]) -> dict[str, int]:
        counter = Counter(s.label for s in samples)
        return {name: counter.get(i, 0) for i, name in enumerate(self.classes)}


def _class_folders(split_dir: Path) -> list[str]:
    return sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


def _files(folder: Path) -> list[Path]:
    # Every visible file: decoding goes by content, so extensions are not trusted.
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def resolve_inside(path: str | Path, roots: list[Path]) -> Path:
    """`path` resolved (links and `..` followed); raises DatasetError unless it lies in
    one of `roots`. The app checks typed folders with it, so a visitor cannot make the
    server read elsewhere."""
    resolved = Path(path).expanduser().resolve()
    allowed = [Path(r).expanduser().resolve() for r in roots]
    if not any(resolved.is_relative_to(r) for r in allowed):
        where = ", ".join(str(r) for r in allowed)
        raise DatasetError(f"{path} is outside the data area ({where}); set BTMRI_DATA_ROOTS to widen it")
    return resolved


def scan_dataset(root: str | Path) -> DatasetIndex:
    """Index a dataset folder, or raise DatasetError saying what is wrong with it."""
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise DatasetError(f"dataset folder not found: {root} ({LAYOUT_HELP})")
    missing = [s for s in SPLITS if not (root / s).is_dir()]
    if missing:
        raise DatasetError(f"{root} has no {' or '.join(missing)} folder ({LAYOUT_HELP})")
    train_classes = _class_folders(root / "Training")
    test_classes = _class_folders(root / "Testing")
    if train_classes != test_classes:
        raise DatasetError(f"Training classes {train_classes} differ from Testing classes {test_classes}")
    if len(train_classes) < 2:
        raise DatasetError(f"{root} needs at least two class folders; found {train_classes}")
    splits = {}
    for split in SPLITS:
        samples = [
            Sample(path, label)
            for label, name in enumerate(train_classes)
            for path in _files(root / split / name)
        ]
        empty = [n for i, n in enumerate(train_classes) if not any(s.label == i for s in samples)]
        if empty:
            raise DatasetError(f"{split} has no images for class(es): {', '.join(empty)}")
        splits[split] = samples
    return DatasetIndex(root, train_classes, splits["Training"], splits["Testing"])


def subsample(samples: list[Sample], per_class: int | None, seed: int) -> list[Sample]:
    """At most `per_class` samples of each class, chosen reproducibly."""
    if per_class is None:
        return list(samples)
    rng = random.Random(seed)
    by_label: dict[int, list[Sample]] = {}
    for sample in samples:
        by_label.setdefault(sample.label, []).append(sample)
    chosen = [s for group in by_label.values() for s in rng.sample(group, min(per_class, len(group)))]
    return sorted(chosen, key=lambda s: (s.label, s.path))


def split_validation(
    samples: list[Sample], fraction: float, seed: int, groups: list[int] | None = None, fold: int = 0
) -> tuple[list[Sample], list[Sample]]:
    """Stratified, seeded split of Training into (train, validation) that keeps every copy
    group on one side.

    `groups`: a copy-group id per sample (Audit.group_ids); members of a group never sit
    on both sides, so no validation image has a copy in the training part. Without it
    each sample is its own group. The split is fold `fold` of scikit-learn's
    StratifiedGroupKFold with k = round(1 / fraction) folds, so the validation share is
    the nearest 1/k (5% gives 1/20), lowered where a class has fewer than k groups.
    """
    labels = [s.label for s in samples]
    groups = list(range(len(samples))) if groups is None else list(groups)
    if len(groups) != len(samples):
        raise ValueError("one group id per sample")
    groups_per_class = Counter(label for label, _ in set(zip(labels, groups)))
    if min(groups_per_class.values()) < 2:
        raise DatasetError(
            "every class needs at least 2 distinct Training images (not copies of each other) "
            "to carve a validation set"
        )
    folds = max(2, min(validation_folds(fraction), min(groups_per_class.values())))
    if not 0 <= fold < folds:
        raise DatasetError(f"validation fold {fold} does not exist: this Training pool gives {folds} folds")
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    train_idx, val_idx = next(islice(splitter.split(np.zeros(len(samples)), labels, groups), fold, None))
    train = [samples[i] for i in sorted(train_idx)]
    val = [samples[i] for i in sorted(val_idx)]
    if {s.label for s in val} != set(labels):
        raise DatasetError("too few Training images for this validation fraction: a class has none left")
    return train, val


def file_digest(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


def fingerprint(index: DatasetIndex, groups: dict[str, list[Sample]]) -> dict:
    """What a run saw: counts per group and class, and one hash over names and contents."""
    digest = hashlib.sha256()
    files: dict[str, list[str]] = {}
    for group, samples in groups.items():
        files[group] = []
        for sample in sorted(samples, key=lambda s: s.path):
            rel = index.relative(sample)
            files[group].append(rel)
            digest.update(f"{group}/{rel}:{file_digest(sample.path)}\n".encode())
    return {
        "root": str(index.root),
        "classes": index.classes,
        "counts": {group: index.counts(samples) for group, samples in groups.items()},
        "sha256": digest.hexdigest(),
        "files": files,
    }
