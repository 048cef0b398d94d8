"""Metrics: a hand-computed example, and agreement with scikit-learn's report."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import classification_report

from core.evaluate import Predictions, compute_metrics


def test_hand_computed_example():
    y_true = np.array([0, 0, 1, 1, 2, 2])
    y_pred = np.array([0, 1, 1, 1, 2, 0])
    m = compute_metrics(y_true, y_pred, ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert m["per_class"]["a"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
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
    assert m["macro_f1"] == pytest.approx(report["macro avg"]["f1-score"])
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
