"""Error-analysis figures on constructed predictions with known answers."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from core.calibration import apply_temperature, expected_calibration_error, fit_temperature
from core.evaluation.interpret import Interpretation, compare, config_diff

CLASSES = ["a", "b", "c"]


def interp(probs, y_true, files=None, clean=None):
    probs = np.asarray(probs, float)
    files = files or [f"f{i}" for i in range(len(probs))]
    return Interpretation(files, np.asarray(y_true), probs, CLASSES, clean)


def test_ece_hand_computed():
    probs = [[0.9, 0.05, 0.05], [0.9, 0.05, 0.05], [0.6, 0.3, 0.1], [0.2, 0.6, 0.2]]
    y = [0, 1, 0, 1]  # conf 0.9: one right one wrong; conf 0.6: both right
    assert expected_calibration_error(np.array(probs), np.array(y)) == pytest.approx(0.4)
    rows = interp(probs, y).reliability()
    assert [r["count"] for r in rows if r["count"]] == [2, 2]


def test_temperature_recovers_known_overconfidence():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, (6000, 3))
    true = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    y = np.array([rng.choice(3, p=p) for p in true])
    sharp = np.exp(2 * logits) / np.exp(2 * logits).sum(1, keepdims=True)  # twice too confident
    t = fit_temperature(sharp, y)
    assert t == pytest.approx(2.0, rel=0.1)
    assert expected_calibration_error(apply_temperature(sharp, t), y) < expected_calibration_error(sharp, y)
    np.testing.assert_allclose(apply_temperature(sharp, 2.0), true, atol=1e-9)
    assert (apply_temperature(sharp, t).argmax(1) == sharp.argmax(1)).all()  # accuracy unchanged


def test_roc_and_pr_auc():
    probs = [[0.8, 0.1, 0.1], [0.6, 0.3, 0.1], [0.3, 0.6, 0.1], [0.1, 0.2, 0.7], [0.4, 0.5, 0.1]]
    y = [0, 0, 1, 2, 0]
    i = interp(probs, y)
    roc = i.roc()
    for k, name in enumerate(CLASSES):
        assert roc[name]["auc"] == pytest.approx(roc_auc_score(np.array(y) == k, np.array(probs)[:, k]))
    assert roc["c"]["auc"] == 1.0
    assert i.precision_recall()["c"]["auc"] == pytest.approx(1.0)
    assert set(interp([[0.5, 0.5, 0.0]] * 2, [0, 0]).roc()) == set()  # one class only: no curve
    # By hand for class a: scores 0.9 (a), 0.6, 0.3, 0.2 (a) -> precision 1 at the first
    # positive and 2/4 at the second: average precision 0.75; 2 of 4 pairs ranked right.
    hand = interp([[0.9, 0.1, 0], [0.2, 0.8, 0], [0.6, 0.4, 0], [0.3, 0.7, 0]], [0, 0, 1, 1])
    assert hand.precision_recall()["a"]["auc"] == pytest.approx(0.75)
    assert hand.roc()["a"]["auc"] == pytest.approx(0.5)


def test_top_losses_and_cells():
    probs = [[0.1, 0.9, 0.0], [0.45, 0.55, 0.0], [0.6, 0.4, 0.0], [0.95, 0.05, 0.0], [0.2, 0.7, 0.1]]
    y = [0, 0, 0, 0, 1]
    i = interp(probs, y)
    assert i.top_losses(wrong=True) == [0, 1]  # p(true) 0.1 then 0.45
    assert i.top_losses(wrong=False) == [2, 4, 3]  # right but least sure first
    assert i.cell("a", "b") == [0, 1]  # most confident first
    assert i.cell("a", "a") == [3, 2]
    assert i.cell("b", "a") == []
    np.testing.assert_allclose(i.losses[:2], -np.log([0.1, 0.45]))


def test_rows_round_trip_and_clean_subset():
    rows = [
        {
            "file": "x",
            "true": "a",
            "predicted": "a",
            "correct": "1",
            "clean": "1",
            "p_a": "0.7",
            "p_b": "0.2",
            "p_c": "0.1",
        },
        {
            "file": "y",
            "true": "c",
            "predicted": "a",
            "correct": "0",
            "clean": "0",
            "p_a": "0.5",
            "p_b": "0.2",
            "p_c": "0.3",
        },
    ]
    i = Interpretation.from_rows(rows, CLASSES)
    assert i.y_true.tolist() == [0, 2] and i.y_pred.tolist() == [0, 0]
    assert i.subset(clean_only=True).files == ["x"]
    assert i.subset(clean_only=False).files == ["x", "y"]


def test_run_comparison_and_config_diff():
    a = interp([[0.9, 0.1, 0], [0.9, 0.1, 0], [0.1, 0.9, 0]], [0, 1, 1], ["p", "q", "r"])
    b = interp([[0.1, 0.9, 0], [0.1, 0.9, 0], [0.1, 0.9, 0]], [0, 1, 1], ["p", "q", "r"])
    assert compare(a, b) == {"only_first_right": ["p"], "only_second_right": ["q"]}
    diff = config_diff(
        {
            "r1": {"lr": 1, "aug": {"zoom": 0.1, "flip": True}, "seed": 1},
            "r2": {"lr": 2, "aug": {"zoom": 0.1, "flip": False}, "seed": 1},
        }
    )
    assert diff == {"aug.flip": {"r1": True, "r2": False}, "lr": {"r1": 1, "r2": 2}}
