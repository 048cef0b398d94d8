"""Calibration of softmax outputs: reliability bins, expected calibration error, and
temperature scaling (fitted on validation predictions, applied at inference).

Pure numpy/scipy, at the bottom of the layers: evaluation fits the temperature,
inference applies it and analysis reports it, and none of them needs the others.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar

EPS = 1e-12


def reliability(probs: np.ndarray, y_true: np.ndarray, bins: int = 10) -> list[dict]:
    """Per confidence bin (equal widths over [0, 1]): count, mean confidence, accuracy."""
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == y_true
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    rows = []
    for b in range(bins):
        m = which == b
        rows.append(
            {
                "low": float(edges[b]),
                "high": float(edges[b + 1]),
                "count": int(m.sum()),
                "confidence": float(confidence[m].mean()) if m.any() else None,
                "accuracy": float(correct[m].mean()) if m.any() else None,
            }
        )
    return rows


def expected_calibration_error(probs: np.ndarray, y_true: np.ndarray, bins: int = 10) -> float:
    """Sum over confidence bins of |accuracy - confidence| weighted by the bin's share."""
    n = len(y_true)
    return float(
        sum(
            r["count"] / n * abs(r["accuracy"] - r["confidence"])
            for r in reliability(probs, y_true, bins)
            if r["count"]
        )
    )


def apply_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """Softmax of log-probabilities divided by T (log p equals the logits up to a constant)."""
    logits = np.log(np.clip(probs, EPS, 1.0)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    return exp / exp.sum(axis=1, keepdims=True)


def negative_log_likelihood(probs: np.ndarray, y_true: np.ndarray) -> float:
    """Mean of -log p(true class) over the images (probabilities clipped at EPS)."""
    return float(-np.log(np.clip(probs[np.arange(len(y_true)), y_true], EPS, 1.0)).mean())


def fit_temperature(probs: np.ndarray, y_true: np.ndarray) -> float:
    """The T > 0 that minimises the negative log-likelihood (fit on validation data)."""

    def nll(log_t: float) -> float:
        return negative_log_likelihood(apply_temperature(probs, float(np.exp(log_t))), y_true)

    result = minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    return float(np.exp(result.x))
