"""Error analysis of a run's predictions, in the spirit of fastai's
ClassificationInterpretation: which images fall in a confusion cell, the top losses,
calibration (reliability and ECE, from core.calibration), ROC and precision-recall
curves, and how two runs differ. Pure numpy/scikit-learn over the saved prediction
tables.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

from core.calibration import EPS, expected_calibration_error, reliability
from core.intervals import paired_difference


@dataclass
class Interpretation:
    files: list[str]
    y_true: np.ndarray  # class indices
    probs: np.ndarray  # (n, classes)
    classes: list[str]
    clean: np.ndarray | None = None  # bool mask of the clean test set, if known

    @classmethod
    def from_rows(cls, rows: list[dict[str, str]], classes: list[str]) -> Interpretation:
        """From predictions.csv rows (Run.predictions())."""
        index = {c: i for i, c in enumerate(classes)}
        probs = np.array([[float(r[f"p_{c}"]) for c in classes] for r in rows], dtype=float)
        clean = np.array([r["clean"] == "1" for r in rows]) if rows and "clean" in rows[0] else None
        return cls(
            [r["file"] for r in rows],
            np.array([index[r["true"]] for r in rows], dtype=int),
            probs.reshape(len(rows), len(classes)),
            list(classes),
            clean,
        )

    def subset(self, clean_only: bool) -> Interpretation:
        if not clean_only or self.clean is None:
            return self
        m = self.clean
        return Interpretation(
            [f for f, k in zip(self.files, m) if k],
            self.y_true[m],
            self.probs[m],
            self.classes,
            self.clean[m],
        )

    @property
    def y_pred(self) -> np.ndarray:
        return self.probs.argmax(axis=1)

    @property
    def losses(self) -> np.ndarray:
        """Cross-entropy of each image: -log p(true class)."""
        return -np.log(np.clip(self.probs[np.arange(len(self.y_true)), self.y_true], EPS, 1.0))

    def cell(self, true: str, predicted: str) -> list[int]:
        """Indices of the images in one confusion-matrix cell, most confident first."""
        t, p = self.classes.index(true), self.classes.index(predicted)
        idx = np.nonzero((self.y_true == t) & (self.y_pred == p))[0]
        return sorted(idx.tolist(), key=lambda i: -self.probs[i, p])

    def most_confused(self, min_count: int = 1) -> list[tuple[str, str, int]]:
        """Off-diagonal confusion cells as (true, predicted, count), largest first, those
        below `min_count` left out (fastai's most_confused); ties keep class order."""
        k = len(self.classes)
        cm = np.bincount(self.y_true * k + self.y_pred, minlength=k * k).reshape(k, k)
        cells = [
            (self.classes[t], self.classes[p], int(cm[t, p]))
            for t in range(k)
            for p in range(k)
            if t != p and cm[t, p] >= min_count
        ]
        return sorted(cells, key=lambda cell: -cell[2])

    def top_losses(self, k: int = 12, wrong: bool = True) -> list[int]:
        """Most confidently wrong images (wrong=True), or the correct ones the model was
        least sure of (wrong=False), highest loss first."""
        correct = self.y_pred == self.y_true
        idx = np.nonzero(~correct if wrong else correct)[0]
        return sorted(idx.tolist(), key=lambda i: -self.losses[i])[:k]

    # -- calibration -----------------------------------------------------------------------
    def reliability(self, bins: int = 10) -> list[dict]:
        """Per confidence bin: count, mean confidence, accuracy."""
        return reliability(self.probs, self.y_true, bins)

    def ece(self, bins: int = 10) -> float:
        return expected_calibration_error(self.probs, self.y_true, bins)

    # -- curves ----------------------------------------------------------------------------
    def roc(self) -> dict[str, dict]:
        """One-vs-rest ROC curve and AUC per class (classes absent from y_true skipped)."""
        return self._curves(lambda y, score: roc_curve(y, score)[:2], roc_auc_score, ("fpr", "tpr"))

    def precision_recall(self) -> dict[str, dict]:
        """One-vs-rest precision-recall curve and its area (average precision) per class."""
        return self._curves(
            lambda y, score: precision_recall_curve(y, score)[1::-1],
            average_precision_score,
            ("recall", "precision"),
        )

    def _curves(self, curve, area, names: tuple[str, str]) -> dict[str, dict]:
        out = {}
        for i, name in enumerate(self.classes):
            positives = self.y_true == i
            if positives.all() or not positives.any():
                continue
            x, y = curve(positives, self.probs[:, i])
            out[name] = {
                names[0]: x.tolist(),
                names[1]: y.tolist(),
                "auc": float(area(positives, self.probs[:, i])),
            }
        return out


def compare(a: Interpretation, b: Interpretation) -> dict[str, list[str]]:
    """Files that one run gets right and the other wrong (on the files both predicted)."""
    right_a = {f for f, t, p in zip(a.files, a.y_true, a.y_pred) if t == p}
    right_b = {f for f, t, p in zip(b.files, b.y_true, b.y_pred) if t == p}
    common = set(a.files) & set(b.files)
    return {
        "only_first_right": sorted((right_a - right_b) & common),
        "only_second_right": sorted((right_b - right_a) & common),
    }


def paired_test(a: Interpretation, b: Interpretation) -> dict:
    """Whether two runs differ in accuracy on the images both predicted (McNemar's exact
    test and a paired bootstrap interval of the difference, core.intervals)."""
    position = {f: i for i, f in enumerate(b.files)}
    common = [(i, position[f]) for i, f in enumerate(a.files) if f in position]
    if not common:
        raise ValueError("the two runs share no test image")
    ia, ib = (np.array(idx) for idx in zip(*common))
    right_a = a.y_pred[ia] == a.y_true[ia]
    right_b = b.y_pred[ib] == b.y_true[ib]
    return paired_difference(right_a, right_b)


def config_diff(configs: dict[str, dict]) -> dict[str, dict[str, object]]:
    """Keys whose values differ between runs: {key: {run_id: value}} (nested keys dotted)."""
    flat = {run: _flatten(cfg) for run, cfg in configs.items()}
    keys = sorted(set().union(*flat.values())) if flat else []
    return {
        k: {run: f.get(k) for run, f in flat.items()}
        for k in keys
        if len({repr(f.get(k)) for f in flat.values()}) > 1
    }


def _flatten(data: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out
