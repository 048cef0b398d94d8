"""The out-of-distribution score: how unlike the run's training images a scan is.

The classifier answers one of its classes for anything, a photograph included, and
often with high confidence. This score looks at the model's own pooled features (the
2048-d output of layer "avg_pool", from the same forward pass as the prediction),
scaled to unit length, and measures the squared Mahalanobis distance to the nearest
class mean, with one covariance shared by the classes (Lee et al., 2018): a slice like
the training ones lies near its class's mean, a photo or a CT far from every one. The
unit length is what makes it work here: the feature norm of the slices themselves
varies sevenfold (5th to 95th percentile 3.6 to 25 on the default run), which one
Gaussian can only absorb as a broad spread that hides the directions setting a
photograph apart (AUROC 0.90 against non-MRI images raw, 0.998 normalised,
bench/ood_bench.py; the normalisation of "Mahalanobis++", Mueller and Hein, 2025).
The covariance is Ledoit-Wolf shrunk, because a 2048 x 2048 estimate from a thousand
images (or a few dozen in the tests) is singular without shrinkage.

The threshold is the 95th percentile of the run's validation images' scores, so 95%
of images like the validation ones pass; Testing and external sets are never used to
fit or to set anything. A run folder holds the fitted state in ood.npz and the
threshold, the rule and the counts in ood.json (written last: its presence marks a
whole check). bench/ood_bench.py measures it against photographs, synthetic images,
CT and altered MRI slices, and compares it with the energy score.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.io import atomic_write_bytes
from core.registry import Run, now_iso

METHOD = "mahalanobis"
QUANTILE = 0.95  # share of validation images that pass
ARRAYS_FILE, INFO_FILE = "ood.npz", "ood.json"
WARNING = "This does not look like the brain MRI slices this model was trained on"
RULE = f"{QUANTILE:.0%} of the run's validation images score at or below it (their 95th percentile)"


def unavailable_note(run_id: str) -> str:
    return f"out-of-distribution check unavailable for this run: python -m core evaluate {run_id} fits it"


class MahalanobisScore:
    """Class-conditional Gaussians with a shared, Ledoit-Wolf shrunk covariance, in the
    scikit-learn style: `fit(features, labels)`, then `score(features)` gives the
    minimum over classes of the squared Mahalanobis distance (higher: more unusual).
    With `normalize`, every feature vector is scaled to unit length first."""

    def __init__(self, normalize: bool = True) -> None:
        self.normalize = normalize

    def _input(self, features: np.ndarray) -> np.ndarray:
        x = np.atleast_2d(np.asarray(features, dtype=np.float64))
        if self.normalize:
            x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        return x

    def fit(self, features: np.ndarray, labels: np.ndarray) -> MahalanobisScore:
        from sklearn.covariance import LedoitWolf

        x = self._input(features)
        y = np.asarray(labels)
        self.classes_ = np.unique(y)
        means = np.stack([x[y == c].mean(axis=0) for c in self.classes_])
        centred = x - means[np.searchsorted(self.classes_, y)]
        # The class means are already out: the pooled residuals are centred.
        estimate = LedoitWolf(assume_centered=True).fit(centred)
        # P = W W': the distance is a Euclidean one after x -> x W, and never negative.
        # Rounded to float32 here, as ood.npz stores it, so a reloaded check scores the same.
        self.whitening_ = _float32(np.linalg.cholesky(estimate.precision_))
        self.means_ = _float32(means)
        self.shrinkage_ = float(estimate.shrinkage_)
        self.n_samples_, self.n_features_in_ = x.shape
        self.whitened_means_ = self.means_ @ self.whitening_
        return self

    def score(self, features: np.ndarray) -> np.ndarray:
        x = self._input(np.asarray(features).reshape(-1, self.n_features_in_))
        z = x @ self.whitening_  # one (n, D) x (D, D) product; a few ms a scan at D = 2048
        return np.min([((z - centre) ** 2).sum(axis=1) for centre in self.whitened_means_], axis=0)

    def arrays(self) -> dict[str, np.ndarray]:
        """The fitted state as ood.npz stores it (float32: 16 MB at 2048-d)."""
        return {
            "classes": self.classes_,
            "means": self.means_.astype(np.float32),
            "whitening": self.whitening_.astype(np.float32),
            "shrinkage": np.array(self.shrinkage_),
            "n_samples": np.array(self.n_samples_),
            "normalize": np.array(self.normalize),
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> MahalanobisScore:
        scorer = cls(normalize=bool(arrays["normalize"]))
        scorer.classes_ = np.asarray(arrays["classes"])
        scorer.means_ = np.asarray(arrays["means"], dtype=np.float64)
        scorer.whitening_ = np.asarray(arrays["whitening"], dtype=np.float64)
        scorer.shrinkage_ = float(arrays["shrinkage"])
        scorer.n_samples_ = int(arrays["n_samples"])
        scorer.n_features_in_ = scorer.means_.shape[1]
        scorer.whitened_means_ = scorer.means_ @ scorer.whitening_
        return scorer


def _float32(values: np.ndarray) -> np.ndarray:
    return values.astype(np.float32).astype(np.float64)


def energy_score(features: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """-logsumexp of the logits (the dense layer before its softmax; Liu et al., 2020):
    the alternative the bench compares with (higher: more unusual)."""
    from scipy.special import logsumexp

    logits = np.asarray(features, dtype=np.float64) @ kernel + bias
    return -logsumexp(logits, axis=1)


@dataclass
class OODCheck:
    """A fitted score and its threshold: a scan whose score is above it is unusual."""

    scorer: MahalanobisScore
    threshold: float
    info: dict[str, Any] = field(default_factory=dict)  # what ood.json records

    def score(self, features: np.ndarray) -> np.ndarray:
        return self.scorer.score(features)

    def unusual(self, scores: np.ndarray) -> np.ndarray:
        return np.asarray(scores) > self.threshold

    @property
    def n_features(self) -> int:
        return self.scorer.n_features_in_


def fit_check(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    validation_features: np.ndarray,
    quantile: float = QUANTILE,
    normalize: bool = True,
    **info: Any,
) -> OODCheck:
    """Fit the score on training features; set the threshold at the `quantile` of the
    validation features' scores. `info` goes into ood.json as it is (counts, sources)."""
    if len(validation_features) == 0:
        raise ValueError("the threshold needs at least one validation image")
    scorer = MahalanobisScore(normalize).fit(train_features, train_labels)
    validation = scorer.score(validation_features)
    threshold = float(np.quantile(validation, quantile))
    record = {
        "method": METHOD,
        "threshold": threshold,
        "quantile": quantile,
        "rule": RULE if quantile == QUANTILE else f"the {quantile:.0%} quantile of the validation scores",
        "score": "min over classes of the squared Mahalanobis distance of the "
        + ("unit-length " if normalize else "")
        + "pooled features (layer avg_pool) to the class means; shared Ledoit-Wolf covariance "
        "of the class-centred features",
        "normalize": normalize,
        "features": int(scorer.n_features_in_),
        "shrinkage": scorer.shrinkage_,
        "train_images": int(scorer.n_samples_),
        "validation_images": int(len(validation)),
        "validation_scores": {"median": float(np.median(validation)), "max": float(validation.max())},
        "created": now_iso(),
        **info,
    }
    return OODCheck(scorer, threshold, record)


def save_check(run: Run, check: OODCheck) -> None:
    """ood.npz, then ood.json with the npz's digest: a reader never pairs a threshold
    with another fit's arrays."""
    buffer = io.BytesIO()
    np.savez(buffer, **check.scorer.arrays())
    data = buffer.getvalue()
    atomic_write_bytes(run.file(ARRAYS_FILE), data)
    run.write(INFO_FILE, {**check.info, "threshold": check.threshold, "npz_sha256": _digest(data)})


def load_check(run: Run) -> OODCheck | None:
    """The run's fitted check, or None when it has none (or a partial or mismatched one)."""
    info = run.read(INFO_FILE)
    try:
        data = run.file(ARRAYS_FILE).read_bytes()
    except OSError:
        return None
    if not isinstance(info, dict) or info.get("method") != METHOD or info.get("npz_sha256") != _digest(data):
        return None
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
            scorer = MahalanobisScore.from_arrays(dict(arrays))
        return OODCheck(scorer, float(info["threshold"]), info)
    except (KeyError, ValueError, TypeError, OSError):
        return None


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def describe_check(run: Run) -> str:
    """One sentence on a run's check from its ood.json, or why it has none."""
    info = run.read(INFO_FILE)
    if not isinstance(info, dict) or "threshold" not in info:
        return unavailable_note(run.id)
    of = info.get("train_of")
    share = f" of {of}" if of and of != info.get("train_images") else ""
    unit = "unit-length " if info.get("normalize") else ""
    return (
        f"Out-of-distribution check: squared Mahalanobis distance of the {unit}pooled features to the "
        f"nearest class mean, fitted on {info.get('train_images')}{share} training images "
        f"(from {info.get('source', 'images')}); a scan scoring above {info['threshold']:,.1f} is "
        f"flagged as unusual: {info.get('rule', RULE)}, over {info.get('validation_images')} images."
    )
