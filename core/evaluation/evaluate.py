"""Test-set figures: accuracy, per-class precision/recall/F1/support, confusion matrix.

`compute_metrics` is pure (labels in, numbers out, scikit-learn does the maths);
`predict_samples` runs a model over files; `evaluate_run` does both for a saved run
and writes metrics.json and predictions.csv into it; `evaluate_tta` does the same with
test-time augmentation (the views of core.model.tta, not the serving layer's Classifier).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from core.calibration import (
    apply_temperature,
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
)
from core.config import framing_of
from core.data.audit import Audit, cached_audit
from core.data.dataset import DatasetIndex, Sample
from core.errors import DatasetError
from core.intervals import bootstrap_intervals, figures_from_confusion
from core.io import atomic_write_bytes
from core.model.tta import View, tta_probabilities
from core.registry import Run


def compute_metrics(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str]) -> dict:
    """Accuracy, macro-F1 and per-class figures, each with its 95% bootstrap interval
    (core.intervals), and the confusion matrix. Macro-F1 averages over the classes the
    test set holds: an external set without pituitary scans has no pituitary recall."""
    labels = list(range(len(classes)))
    present = sorted(int(c) for c in np.unique(y_true))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    cm = confusion_matrix(y_true, y_pred, labels=labels)
    figures = figures_from_confusion(cm, present)
    return {
        "n": int(len(y_true)),
        "accuracy": float(accuracy_score(y_true, y_pred)) if len(y_true) else 0.0,
        "macro_f1": float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0))
        if present
        else 0.0,
        "weighted_f1": float(f1_score(y_true, y_pred, labels=labels, average="weighted", zero_division=0)),
        # The mean recall over the classes the set holds (balanced accuracy): an external
        # set's class shares differ from Kaggle's, and this figure does not depend on them.
        "macro_recall": float(figures["macro_recall"]),
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "specificity": float(figures["specificity"][i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(classes)
        },
        "confusion_matrix": cm.tolist(),
        "classes": list(classes),
        "intervals": bootstrap_intervals(y_true, y_pred, classes),
    }


@dataclass
class Predictions:
    """Per-image outcome of a model on a list of samples (unreadable files left out)."""

    files: list[str]
    y_true: np.ndarray
    probabilities: np.ndarray  # shape (n, classes)
    skipped: dict[str, str]
    source: str = "images"  # or "cached activations" (core.training.feeds' cached mode)

    @property
    def y_pred(self) -> np.ndarray:
        return self.probabilities.argmax(axis=1)

    def to_csv(self, classes: list[str], clean: set[str] | None = None) -> str:
        """One row per image; `clean` (1/0) says whether it is in the clean test set."""
        out = io.StringIO()
        writer = csv.writer(out)
        extra = ["clean"] if clean is not None else []
        writer.writerow(["file", "true", "predicted", "correct", *extra, *[f"p_{c}" for c in classes]])
        for file, true, probs in zip(self.files, self.y_true, self.probabilities):
            pred = int(probs.argmax())
            flag = [int(file in clean)] if clean is not None else []
            writer.writerow(
                [file, classes[true], classes[pred], int(pred == true), *flag, *[f"{p:.6f}" for p in probs]]
            )
        return out.getvalue()


def predict_samples(
    model,
    index: DatasetIndex,
    samples: list[Sample],
    image_size: int,
    batch_size: int = 32,
    verbose: int = 0,
    views: Sequence[View] = (),
    *,
    framing: str,
) -> Predictions:
    """The model's softmax for each readable sample; with `views`, the mean over those
    test-time augmentation views of each image (core.model.tta)."""
    from core.data.pipeline import SkippedFiles, make_dataset

    skipped = SkippedFiles()
    ds = make_dataset(samples, len(index.classes), image_size, batch_size, skipped, framing=framing)
    if views:
        probabilities = _mean_over_views(model, ds, views, batch_size)
    else:
        probabilities = model.predict(ds, verbose=verbose)
    skipped_paths = skipped.as_dict()
    kept = [s for s in samples if str(s.path) not in skipped_paths]
    return Predictions(
        files=[index.relative(s) for s in kept],
        y_true=np.array([s.label for s in kept], dtype=int),
        probabilities=np.asarray(probabilities, dtype=np.float64),
        skipped={Path(p).relative_to(index.root).as_posix(): r for p, r in skipped_paths.items()},
    )


def predict_run(
    run: Run,
    model,
    index: DatasetIndex,
    samples: list[Sample],
    batch_size: int = 32,
    verbose: int = 0,
    views: Sequence[View] = (),
) -> Predictions:
    """predict_samples with the run's own input size and framing: the images as it saw them."""
    size = int(run.config["input_size"])
    return predict_samples(
        model, index, samples, size, batch_size, verbose, views, framing=framing_of(run.config)
    )


def _mean_over_views(model, batches, views: Sequence[View], batch_size: int) -> np.ndarray:
    """Per batch of images: every view of each, predicted, then averaged per image."""

    def predict(images: np.ndarray) -> np.ndarray:
        return model.predict(images, batch_size=batch_size, verbose=0)

    parts = [tta_probabilities(predict, images.numpy(), views) for images, _ in batches]
    return np.concatenate(parts) if parts else np.zeros((0, model.output_shape[-1]))


def clean_metrics(
    predictions: Predictions,
    clean_files: set[str],
    classes: list[str],
    left_out: dict[str, int] | None = None,
) -> dict:
    """The same figures on the clean test set only (no image with a copy in Training, one
    of each group of twins within Testing). `left_out`: the audit's count of each reason
    (Audit.clean_test_exclusions), recorded beside the figures."""
    mask = np.array([f in clean_files for f in predictions.files], dtype=bool)
    metrics = compute_metrics(predictions.y_true[mask], predictions.y_pred[mask], classes)
    metrics["excluded"] = int((~mask).sum())
    if left_out is not None:
        metrics["left_out"] = left_out
    return metrics


def evaluate_run(
    run: Run,
    index: DatasetIndex,
    model=None,
    verbose: int = 0,
    audit: Audit | None = None,
    validation: Predictions | None = None,
) -> dict:
    """Predict the Testing split with a run's model; save metrics.json and predictions.csv.

    metrics.json holds the official Testing figures at the top level and the same
    figures on the clean test set (Testing minus copies of Training images, from the
    dataset audit) under "clean". The validation images' predictions calibrate the run
    (calibration.json) and are saved as predictions-validation.csv; `validation`: those
    predictions when the caller has them already, otherwise they are computed.
    """
    model = _model_for(run, index, model)
    predictions, metrics, clean = score_testing(run, index, model, audit=audit, verbose=verbose)
    atomic_write_bytes(run.file("predictions.csv"), predictions.to_csv(index.classes, clean).encode())
    validation = validation or validation_predictions(run, index, model, verbose)
    if validation is not None:  # for comparing recipes image by image, never Testing
        csv_text = validation.to_csv(index.classes)
        atomic_write_bytes(run.file("predictions-validation.csv"), csv_text.encode())
    calibration = calibrate(validation, predictions)
    if calibration:
        run.write("calibration.json", calibration)
    run.write("metrics.json", metrics)
    return metrics


def score_testing(
    run: Run,
    index: DatasetIndex,
    model,
    batch: int = 32,
    views: Sequence[View] = (),
    audit: Audit | None = None,
    verbose: int = 0,
) -> tuple[Predictions, dict, set[str]]:
    """A run's Testing predictions (with TTA over `views`), their official figures with
    the clean test set's under "clean", and the clean set's files. `model` comes from
    _model_for, which has checked the dataset's classes against the run's."""
    predictions = predict_run(run, model, index, index.testing, batch, verbose=verbose, views=views)
    audit = audit or cached_audit(index, run.cache_dir)
    clean = set(audit.clean_test_files())
    metrics = compute_metrics(predictions.y_true, predictions.y_pred, index.classes)
    metrics.update(split="Testing", skipped=predictions.skipped)
    metrics["clean"] = clean_metrics(predictions, clean, index.classes, audit.clean_test_exclusions())
    return predictions, metrics, clean


def calibrate(val: Predictions | None, test: Predictions) -> dict | None:
    """Fit a softmax temperature on a run's validation predictions; report ECE and NLL
    before and after, on validation and on Testing. None without validation images."""
    if val is None or len(val.y_true) < 2:
        return None
    temperature = fit_temperature(val.probabilities, val.y_true)

    def figures(p: Predictions) -> dict:
        after = apply_temperature(p.probabilities, temperature)
        return {
            "n": len(p.y_true),
            "errors": int((p.y_pred != p.y_true).sum()),
            "ece_before": expected_calibration_error(p.probabilities, p.y_true),
            "ece_after": expected_calibration_error(after, p.y_true),
            "nll_before": negative_log_likelihood(p.probabilities, p.y_true),
            "nll_after": negative_log_likelihood(after, p.y_true),
        }

    return {
        "temperature": temperature,
        "fitted_on": "validation",
        "validation_from": val.source,
        "validation": figures(val),
        "test": figures(test),
    }


def validation_predictions(run: Run, index: DatasetIndex, model, verbose: int = 0) -> Predictions | None:
    """The run's model on its own validation images (data.json); None with fewer than two."""
    files = (run.read("data.json") or {}).get("files", {}).get("validation") or []
    samples = [
        Sample(index.root / f, index.classes.index(Path(f).parts[1]))
        for f in files
        if (index.root / f).is_file() and Path(f).parts[1] in index.classes
    ]
    if len(samples) < 2:
        return None
    return predict_run(run, model, index, samples, verbose=verbose)


def evaluate_tta(run: Run, index: DatasetIndex, chosen: Sequence[View], batch: int = 32, model=None) -> dict:
    """Testing figures (official and clean) with test-time augmentation over `chosen`
    views; saved as tta.json and predictions-tta.csv beside the plain ones."""
    predictions, metrics, clean = score_testing(run, index, _model_for(run, index, model), batch, chosen)
    metrics["views"] = [v.name for v in chosen]
    atomic_write_bytes(run.file("predictions-tta.csv"), predictions.to_csv(index.classes, clean).encode())
    run.write("tta.json", metrics)
    return metrics


def _check_classes(run: Run, index: DatasetIndex) -> None:
    if run.classes != index.classes:
        raise DatasetError(f"the dataset's classes {index.classes} differ from the run's {run.classes}")


def _model_for(run: Run, index: DatasetIndex, model):
    """`model`, or the run's saved one; refused before loading when the classes differ."""
    _check_classes(run, index)
    return model if model is not None else _saved_model(run)


def _saved_model(run: Run):
    """The run's model.keras (Keras is imported only when a model is needed)."""
    from core.model.network import load_model

    return load_model(run.model_path)
