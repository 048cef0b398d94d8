"""Metrics: a hand-computed example, and agreement with scikit-learn's report."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, classification_report, confusion_matrix, f1_score

from core.evaluation.evaluate import Predictions, compute_metrics
from core.intervals import (
    bootstrap_intervals,
    confusion_matrices,
    paired_difference,
    stratified_resamples,
)


def test_hand_computed_example():
    y_true = np.array([0, 0, 1, 1, 2, 2])
    y_pred = np.array([0, 1, 1, 1, 2, 0])
    m = compute_metrics(y_true, y_pred, ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert m["per_class"]["a"] == pytest.approx(
        {"precision": 0.5, "recall": 0.5, "specificity": 3 / 4, "f1": 0.5, "support": 2}
    )
    assert m["per_class"]["b"]["precision"] == pytest.approx(2 / 3)
    assert m["per_class"]["b"]["f1"] == pytest.approx(0.8)
    assert m["per_class"]["c"]["f1"] == pytest.approx(2 / 3)
    assert m["macro_f1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)


def test_agrees_with_sklearn_report_and_handles_absent_classes():
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 3, 200)  # class 3 never occurs
    y_pred = np.where(rng.random(200) < 0.7, y_true, rng.integers(0, 4, 200))
    classes = ["w", "x", "y", "z"]
    m = compute_metrics(y_true, y_pred, classes)
    report = classification_report(
        y_true, y_pred, labels=[0, 1, 2, 3], target_names=classes, output_dict=True, zero_division=0
    )
    for name in classes:
        assert m["per_class"][name]["f1"] == pytest.approx(report[name]["f1-score"])
        assert m["per_class"][name]["support"] == report[name]["support"]
    # Macro-F1 over the classes the set holds: z has no image, so no recall to average.
    assert m["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, labels=[0, 1, 2], average="macro"))
    assert "z" not in m["intervals"]["per_class"]
    assert m["macro_recall"] == pytest.approx(balanced_accuracy_score(y_true, y_pred))
    assert m["weighted_f1"] == pytest.approx(report["weighted avg"]["f1-score"])
    assert np.array(m["confusion_matrix"]).sum() == 200


def test_prediction_table_has_one_row_per_image_with_every_probability():
    p = Predictions(
        files=["a.jpg", "b.jpg"],
        y_true=np.array([0, 1]),
        probabilities=np.array([[0.9, 0.1], [0.8, 0.2]]),
        skipped={},
    )
    lines = p.to_csv(["x", "y"]).splitlines()
    assert lines[0] == "file,true,predicted,correct,p_x,p_y"
    assert lines[1] == "a.jpg,x,x,1,0.900000,0.100000"
    assert lines[2] == "b.jpg,y,x,0,0.800000,0.200000"


def _noisy_labels(n: int, accuracy: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 4, n)
    y_pred = np.where(rng.random(n) < accuracy, y_true, (y_true + rng.integers(1, 4, n)) % 4)
    return y_true, y_pred


def test_resampled_confusion_matrices_are_each_resamples_own():
    y_true, y_pred = _noisy_labels(120, 0.8)
    index = stratified_resamples(y_true, 5, seed=1)
    for row, cm in zip(index, confusion_matrices(y_true, y_pred, 4, index)):
        assert cm.tolist() == confusion_matrix(y_true[row], y_pred[row], labels=[0, 1, 2, 3]).tolist()
        # stratified: every resample keeps the class counts of the test set
        assert np.bincount(y_true[row], minlength=4).tolist() == np.bincount(y_true, minlength=4).tolist()


def test_intervals_hold_the_figure_narrow_with_more_images_and_repeat_with_the_seed():
    classes = ["a", "b", "c", "d"]
    small = compute_metrics(*_noisy_labels(200, 0.9), classes)
    large = compute_metrics(*_noisy_labels(5000, 0.9), classes)
    for m in (small, large):
        low, high = m["intervals"]["accuracy"]
        assert low <= m["accuracy"] <= high
        for name, row in m["intervals"]["per_class"].items():
            for figure, (low, high) in row.items():
                assert (
                    low <= m["per_class"][name][figure] + 1e-9 and m["per_class"][name][figure] <= high + 1e-9
                )
    width = lambda m: m["intervals"]["accuracy"][1] - m["intervals"]["accuracy"][0]  # noqa: E731
    assert width(large) < width(small) / 3  # about 1/sqrt(25) as wide
    assert 0.06 < width(small) < 0.1  # 2 x 1.96 x sqrt(0.9 x 0.1 / 200) = 0.083
    again = bootstrap_intervals(*_noisy_labels(200, 0.9), classes)
    assert again == small["intervals"] and again["resamples"] >= 1000


def test_paired_comparison_says_no_difference_within_the_noise():
    y_true, y_pred = _noisy_labels(1000, 0.97)
    a = y_pred == y_true
    same = paired_difference(a, a)
    assert same["verdict"] == "no detectable difference" and same["mcnemar_p"] == 1.0
    b = a.copy()
    b[np.flatnonzero(a)[:3]] = False  # three more errors: within the noise
    close = paired_difference(a, b)
    assert close["verdict"] == "no detectable difference"
    assert close["only_a_right"] == 3 and close["interval"][0] <= 0.003 <= close["interval"][1]
    c = a.copy()
    c[np.flatnonzero(a)[:40]] = False  # forty more errors: a real difference
    far = paired_difference(a, c)
    assert far["verdict"] == "a is more accurate" and far["mcnemar_p"] < 1e-6
    assert far["interval"][0] > 0
    assert paired_difference(c, a)["verdict"] == "b is more accurate"
