"""The shortcut score: how well the class can be told from what is not anatomy.

The Kaggle set's classes come from different sources (figshare, SARTAJ, Br35H) that
differ in image size, colour mode, file format, compression and framing. A classifier
that sees only those properties (width, height, aspect ratio, colour mode, format, file
size, and the statistics of the image's border and background) and never the brain
measures how much a model could score by recognising the source. It is cross-validated
over Training with the audit's copy groups kept within one fold, so a copy of an image
never tells the model its own answer; it is also trained on all of Training and scored on
Testing, for scale. Each accuracy carries its 95% bootstrap interval.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import StratifiedGroupKFold

from core.data.audit import Audit, audit_key
from core.data.dataset import DatasetIndex, Sample
from core.data.images import decode, read_header
from core.errors import ImageDecodeError
from core.intervals import bootstrap_intervals
from core.io import atomic_write_json, read_json

MODES = ("1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I;16", "I", "F")
FORMATS = ("JPEG", "PNG", "BMP", "TIFF", "GIF", "WEBP")
FEATURES = (
    "width",
    "height",
    "aspect",
    "kB",
    "border_mean",
    "border_std",
    "background_share",
    *(f"mode_{m}" for m in MODES),
    *(f"format_{f}" for f in FORMATS),
)
BORDER = 0.05  # the outer 5% of each side: the frame around the head
DARK = 10  # grey levels below this count as background
FOLDS = 5
Progress = Callable[[int, int], None]


def image_features(path: Path) -> np.ndarray:
    """The non-anatomical properties of one file, in FEATURES order (NaN if unreadable)."""
    try:
        header = read_header(path)
        gray = np.asarray(decode(path).convert("L"), dtype=np.float32)
    except ImageDecodeError:
        return np.full(len(FEATURES), np.nan)
    h, w = gray.shape
    bh, bw = max(1, round(BORDER * h)), max(1, round(BORDER * w))
    frame = np.concatenate(
        [gray[:bh].ravel(), gray[-bh:].ravel(), gray[:, :bw].ravel(), gray[:, -bw:].ravel()]
    )
    return np.array(
        [
            header.width,
            header.height,
            header.width / max(header.height, 1),
            path.stat().st_size / 1024,
            frame.mean(),
            frame.std(),
            float((gray < DARK).mean()),
            *(float(header.mode == m) for m in MODES),
            *(float(header.format == f) for f in FORMATS),
        ],
        dtype=np.float64,
    )


def feature_matrix(samples: list[Sample], progress: Progress | None = None) -> np.ndarray:
    rows = []
    for i, sample in enumerate(samples):
        rows.append(image_features(sample.path))
        if progress and (i % 100 == 0 or i == len(samples) - 1):
            progress(i + 1, len(samples))
    return np.vstack(rows) if rows else np.zeros((0, len(FEATURES)))


def _forest(seed: int) -> RandomForestClassifier:
    return RandomForestClassifier(n_estimators=200, min_samples_leaf=2, random_state=seed, n_jobs=1)


def _readable(x: np.ndarray) -> np.ndarray:
    return ~np.isnan(x).any(axis=1)


def shortcut_score(
    index: DatasetIndex, audit: Audit, progress: Progress | None = None, seed: int = 0
) -> dict:
    """Cross-validated accuracy of a classifier on non-anatomical properties alone.

    Returns the out-of-fold Training accuracy (copy groups kept within a fold), the
    Testing accuracy of the same classifier fitted on all of Training, each with its
    95% interval, chance (1 / classes) and the majority class's share, and which
    properties the forest leaned on most.
    """
    samples = index.training + index.testing
    x = feature_matrix(samples, progress)
    n_train = len(index.training)
    x_train, x_test = x[:n_train], x[n_train:]
    y_train = np.array([s.label for s in index.training])
    y_test = np.array([s.label for s in index.testing])
    groups = np.array(audit.group_ids([index.relative(s) for s in index.training]))
    keep = _readable(x_train)
    x_train, y_train, groups = x_train[keep], y_train[keep], groups[keep]
    folds = max(2, min(FOLDS, int(np.bincount(y_train).min())))
    out_of_fold = np.empty_like(y_train)
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    for fit, held in splitter.split(x_train, y_train, groups):
        out_of_fold[held] = _forest(seed).fit(x_train[fit], y_train[fit]).predict(x_train[held])
    forest = _forest(seed).fit(x_train, y_train)
    readable_test = _readable(x_test)
    test_pred = forest.predict(x_test[readable_test])
    y_test = y_test[readable_test]
    ranked = np.argsort(forest.feature_importances_)[::-1][:5]
    return {
        "features": list(FEATURES),
        "cross_validated": _accuracy(y_train, out_of_fold, index.classes) | {"folds": folds},
        "testing": _accuracy(y_test, test_pred, index.classes),
        "chance": 1 / len(index.classes),
        "majority_share": float(np.bincount(y_train).max() / len(y_train)),
        "top_features": [
            {"feature": FEATURES[i], "importance": round(float(forest.feature_importances_[i]), 4)}
            for i in ranked
        ],
        "classifier": "random forest, 200 trees",
    }


def _accuracy(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str]) -> dict:
    intervals = bootstrap_intervals(y_true, y_pred, classes)
    return {
        "n": int(len(y_true)),
        "accuracy": float((y_true == y_pred).mean()),
        "interval": intervals["accuracy"],
    }


def cached_shortcut_score(
    index: DatasetIndex, audit: Audit, cache_root: Path, progress: Progress | None = None
) -> dict:
    """The shortcut score of this dataset, computed once and then read from cache_root."""
    path = Path(cache_root) / "shortcut" / f"{audit_key(index)}.json"
    stored = read_json(path)
    if stored is not None and stored.get("features") == list(FEATURES):
        return stored
    score = shortcut_score(index, audit, progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, score)
    return score


def describe(score: dict) -> str:
    """One sentence for the Dataset page and the audit's printout."""
    cv, test = score["cross_validated"], score["testing"]
    return (
        f"What a model gets without looking at the brain: {100 * cv['accuracy']:.1f}% "
        f"({100 * cv['interval'][0]:.1f}-{100 * cv['interval'][1]:.1f}) of Training images, "
        f"cross-validated over copy groups, and {100 * test['accuracy']:.1f}% "
        f"({100 * test['interval'][0]:.1f}-{100 * test['interval'][1]:.1f}) of Testing, from image size, "
        f"colour mode, format, file size and border/background statistics alone "
        f"(chance {100 * score['chance']:.0f}%)."
    )
