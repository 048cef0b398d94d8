"""Uncertainty of test-set figures: stratified bootstrap intervals, and paired tests of
whether two models differ on the same images.

Every figure the product reports on a test set (accuracy, macro-F1, and per class
precision, recall, specificity and F1) comes with a 95% percentile-bootstrap interval.
Resampling is stratified by true class, so each resample keeps the test set's class
counts, and seeded, so the same predictions always give the same interval.
Pure numpy and scipy: labels in, numbers out.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import binomtest

RESAMPLES = 1000
LEVEL = 0.95
SEED = 0
ALPHA = 0.05  # a paired difference with p below this is reported as a difference


def confusion_matrices(
    y_true: np.ndarray, y_pred: np.ndarray, n_classes: int, index: np.ndarray
) -> np.ndarray:
    """One confusion matrix per row of `index` (resampled positions): (rows, k, k)."""
    rows = index.shape[0]
    codes = y_true[index] * n_classes + y_pred[index]
    codes = codes + (np.arange(rows)[:, None] * n_classes * n_classes)
    counts = np.bincount(codes.ravel(), minlength=rows * n_classes * n_classes)
    return counts.reshape(rows, n_classes, n_classes)


def figures_from_confusion(cm: np.ndarray, labels: list[int]) -> dict[str, np.ndarray]:
    """Accuracy, macro-F1 and per-class figures from confusion matrices (..., k, k).

    `labels`: the classes the figures are about (those with images in the test set; a
    class the set lacks has no recall, and its precision is counted only in its column).
    A ratio with a zero denominator is 0, as scikit-learn's zero_division=0.
    """
    cm = cm.astype(np.float64)
    n = cm.sum(axis=(-2, -1))
    tp = np.diagonal(cm, axis1=-2, axis2=-1)
    predicted = cm.sum(axis=-2)  # column sums
    actual = cm.sum(axis=-1)  # row sums
    negatives = n[..., None] - actual
    false_pos = predicted - tp

    def ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.divide(a, b, out=np.zeros_like(a), where=b > 0)

    precision = ratio(tp, predicted)
    recall = ratio(tp, actual)
    specificity = ratio(negatives - false_pos, negatives)
    f1 = ratio(2 * precision * recall, precision + recall)
    return {
        "accuracy": ratio(tp.sum(axis=-1), n),
        "macro_f1": f1[..., labels].mean(axis=-1),
        "macro_recall": recall[..., labels].mean(axis=-1),  # balanced accuracy
        "precision": precision,
        "recall": recall,
        "specificity": specificity,
        "f1": f1,
    }


def stratified_resamples(y_true: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """Positions of `resamples` bootstrap samples, each drawn within every true class."""
    rng = np.random.default_rng(seed)
    parts = []
    for label in np.unique(y_true):
        members = np.flatnonzero(y_true == label)
        parts.append(members[rng.integers(0, len(members), size=(resamples, len(members)))])
    return np.concatenate(parts, axis=1)


def bootstrap_intervals(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    classes: list[str],
    resamples: int = RESAMPLES,
    seed: int = SEED,
    level: float = LEVEL,
) -> dict:
    """95% intervals (by default) of every figure compute_metrics reports.

    Returns {"accuracy": [low, high], "macro_f1": [...], "per_class": {name: {"precision":
    [...], "recall": [...], "specificity": [...], "f1": [...]}}, and how they were made}.
    Classes with no image in `y_true` get no per-class interval.
    """
    y_true, y_pred = np.asarray(y_true, dtype=int), np.asarray(y_pred, dtype=int)
    method = {
        "method": "stratified percentile bootstrap",
        "resamples": resamples,
        "seed": seed,
        "level": level,
    }
    if len(y_true) == 0:
        return {**method, "accuracy": None, "macro_f1": None, "macro_recall": None, "per_class": {}}
    present = sorted(int(c) for c in np.unique(y_true))
    index = stratified_resamples(y_true, resamples, seed)
    figures = figures_from_confusion(confusion_matrices(y_true, y_pred, len(classes), index), present)
    tails = [100 * (1 - level) / 2, 100 * (1 + level) / 2]

    def interval(values: np.ndarray) -> list[float]:
        low, high = np.percentile(values, tails)
        return [float(low), float(high)]

    per_class = {
        classes[c]: {
            name: interval(figures[name][:, c]) for name in ("precision", "recall", "specificity", "f1")
        }
        for c in present
    }
    return {
        **method,
        "accuracy": interval(figures["accuracy"]),
        "macro_f1": interval(figures["macro_f1"]),
        "macro_recall": interval(figures["macro_recall"]),
        "per_class": per_class,
    }


def paired_difference(
    correct_a: np.ndarray,
    correct_b: np.ndarray,
    resamples: int = RESAMPLES,
    seed: int = SEED,
    level: float = LEVEL,
) -> dict:
    """Do two models differ in accuracy on the same images?

    `correct_a`, `correct_b`: per image, whether each model was right (same order).
    McNemar's exact test looks only at the images where they disagree; the paired
    bootstrap gives an interval for the accuracy difference (a minus b). The verdict is
    "no detectable difference" unless McNemar's p is below ALPHA.
    """
    a, b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape or a.size == 0:
        raise ValueError("paired comparison needs the same, non-empty set of images for both models")
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    discordant = only_a + only_b
    p_value = 1.0 if discordant == 0 else float(binomtest(only_a, discordant, 0.5).pvalue)
    rng = np.random.default_rng(seed)
    index = rng.integers(0, a.size, size=(resamples, a.size))
    differences = a[index].mean(axis=1) - b[index].mean(axis=1)
    low, high = np.percentile(differences, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    if p_value >= ALPHA:
        verdict = "no detectable difference"
    else:
        verdict = "a is more accurate" if only_a > only_b else "b is more accurate"
    return {
        "n": int(a.size),
        "accuracy_a": float(a.mean()),
        "accuracy_b": float(b.mean()),
        "difference": float(a.mean() - b.mean()),
        "interval": [float(low), float(high)],
        "only_a_right": only_a,
        "only_b_right": only_b,
        "mcnemar_p": p_value,
        "verdict": verdict,
        "level": level,
        "resamples": resamples,
    }


def format_interval(value: float, interval: list[float] | None, percent: bool = True) -> str:
    """'98.3% (97.6-99.0)' or '0.983 (0.976-0.990)'; the bare value when no interval."""
    if percent:
        text = f"{100 * value:.1f}%"
        return text if not interval else f"{text} ({100 * interval[0]:.1f}-{100 * interval[1]:.1f})"
    text = f"{value:.3f}"
    return text if not interval else f"{text} ({interval[0]:.3f}-{interval[1]:.3f})"
