"""Scoring a run on a dataset from elsewhere: how far its figures carry beyond the
Kaggle set it was trained and tested on.

An external set is a test set only: a folder laid out as <root>/<class>/* or
<root>/Testing/<class>/*, whose classes may be a subset of the run's (a set without
pituitary scans still tells how often the model answers pituitary wrongly). All
figures are computed over the run's class list, so an answer in a class the set lacks
counts as an error. When the root holds a sequences.csv (columns file, sequence; file
relative to the root), the figures are also given per MR sequence.

Each evaluated set is one entry under the run, external/<slug>/ with metrics.json and
predictions.csv, replaced as a whole when the set is evaluated again. An entry's
predictions also give its error analysis (entry_interpretation): the most confused
pairs and the most confidently wrong images, read from the set's folder when it is
still there.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.config import as_ran, framing_of
from core.data.dataset import DatasetIndex, Sample, fingerprint
from core.data.images import load_rgb
from core.errors import DatasetError, ImageDecodeError
from core.evaluation.evaluate import Predictions, compute_metrics, predict_samples
from core.evaluation.interpret import Interpretation
from core.intervals import bootstrap_intervals, format_interval
from core.io import atomic_write_bytes, read_json
from core.registry import Run, now_iso

FOLDER = "external"
SEQUENCES = "sequences.csv"
LAYOUT = "expected <root>/<class>/* or <root>/Testing/<class>/*"
UNKNOWN_SEQUENCE = "unknown"


def _visible_dirs(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _visible_files(folder: Path) -> list[Path]:
    # Decoding goes by content, as in core.data.dataset, so extensions are not trusted.
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def class_parent(root: Path) -> Path:
    """The folder whose subfolders are the classes: <root>/Testing when present, else root."""
    testing = root / "Testing"
    return testing if testing.is_dir() else root


def scan_external(root: str | Path, classes: list[str]) -> DatasetIndex:
    """Index an external set with the run's `classes` as labels, or raise DatasetError.

    The index's root is the given root, so files are named relative to it (as in
    sequences.csv); all samples are in `testing`.
    """
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise DatasetError(f"folder not found: {root} ({LAYOUT})")
    parent = class_parent(root)
    found = _visible_dirs(parent)
    if not found:
        raise DatasetError(f"{parent} holds no class folders ({LAYOUT})")
    unknown = [name for name in found if name not in classes]
    if unknown:
        raise DatasetError(
            f"{parent} has class folder(s) the run does not know: {', '.join(unknown)} "
            f"(the run's classes: {', '.join(classes)})"
        )
    samples = [Sample(path, classes.index(name)) for name in found for path in _visible_files(parent / name)]
    if not samples:
        raise DatasetError(f"the class folders of {parent} ({', '.join(found)}) hold no files")
    return DatasetIndex(root, list(classes), [], samples)


def slug(root: str | Path) -> str:
    """Folder name plus a short hash of the resolved path: two sets with the same
    folder name in different places get different entries."""
    resolved = Path(root).expanduser().resolve()
    name = re.sub(r"[^A-Za-z0-9_.-]", "-", resolved.name).strip(".-")[:48] or "dataset"
    return f"{name}-{hashlib.sha256(str(resolved).encode()).hexdigest()[:8]}"


def read_sequences(root: Path) -> dict[str, str] | None:
    """sequences.csv as {file relative to root: sequence}; None when there is none."""
    path = root / SEQUENCES
    if not path.is_file():
        return None
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or not {"file", "sequence"} <= set(reader.fieldnames):
            raise DatasetError(f"{path} needs the columns 'file' and 'sequence'; it has {reader.fieldnames}")
        return {_key(row["file"]): (row["sequence"] or "").strip() or UNKNOWN_SEQUENCE for row in reader}


def _key(file: str) -> str:
    # <class>/<name>: the same key whether the csv names files from the root or from Testing/.
    return "/".join(Path(file.strip().replace("\\", "/")).parts[-2:])


def sequence_of(files: list[str], sequences: dict[str, str]) -> list[str]:
    return [sequences.get(_key(f), UNKNOWN_SEQUENCE) for f in files]


def sequence_figures(y_true: np.ndarray, y_pred: np.ndarray, labels: list[str], classes: list[str]) -> dict:
    """Per MR sequence: n, accuracy with its interval, and recall with its interval for
    each class that sequence has images of."""
    groups = {}
    for name in sorted(set(labels)):
        mask = np.array([label == name for label in labels], dtype=bool)
        true, pred = y_true[mask], y_pred[mask]
        intervals = bootstrap_intervals(true, pred, classes)
        recall = {}
        for c in sorted(int(c) for c in np.unique(true)):
            members = true == c
            recall[classes[c]] = {
                "value": float((pred[members] == c).mean()),
                "interval": intervals["per_class"][classes[c]]["recall"],
                "support": int(members.sum()),
            }
        groups[name] = {
            "n": int(mask.sum()),
            "accuracy": float((true == pred).mean()),
            "accuracy_interval": intervals["accuracy"],
            "recall": recall,
        }
    return groups


def predictions_csv(predictions: Predictions, classes: list[str], sequences: list[str] | None) -> str:
    """The official predictions.csv columns, plus each file's sequence when known."""
    text = predictions.to_csv(classes)
    if sequences is None:
        return text
    rows = list(csv.reader(io.StringIO(text)))
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([*rows[0][:4], "sequence", *rows[0][4:]])
    for row, sequence in zip(rows[1:], sequences):
        writer.writerow([*row[:4], sequence, *row[4:]])
    return out.getvalue()


def evaluate_external(run: Run, root: str | Path, model=None, verbose: int = 0) -> dict:
    """Predict every image of an external set with the run's model; save and return the
    entry's metrics (also written to external/<slug>/metrics.json beside predictions.csv)."""
    classes = run.classes
    index = scan_external(root, classes)
    sequences = read_sequences(index.root)  # a malformed csv fails before the model loads
    if model is None:
        from core.model.network import load_model  # Keras, loaded only when a model is needed

        model = load_model(run.model_path)
    predictions = _predict(model, index, int(run.config["input_size"]), framing_of(run.config), verbose)
    metrics = compute_metrics(predictions.y_true, predictions.y_pred, classes)
    labels = sequence_of(predictions.files, sequences) if sequences is not None else None
    digest = fingerprint(index, {"external": index.testing})
    metrics.update(
        name=index.root.name,
        root=str(index.root),
        slug=slug(index.root),
        run=run.id,
        evaluated=now_iso(),
        chance=1 / len(classes),
        # Always answering the set's largest class: the score a model with no skill can
        # reach when the set's classes are unbalanced.
        majority_share=max(row["support"] for row in metrics["per_class"].values()) / max(metrics["n"], 1),
        missing_classes=[c for c in classes if not metrics["per_class"][c]["support"]],
        fingerprint={key: digest[key] for key in ("sha256", "counts")},
        skipped=predictions.skipped,
        sequences=None
        if labels is None
        else {
            "source": SEQUENCES,
            "unmatched": labels.count(UNKNOWN_SEQUENCE),
            "groups": sequence_figures(predictions.y_true, predictions.y_pred, labels, classes),
        },
    )
    files = {
        "predictions.csv": predictions_csv(predictions, classes, labels).encode(),
        "metrics.json": _json_bytes(metrics),
    }
    replace_folder(run.file(FOLDER) / metrics["slug"], files)
    return metrics


def _predict(model, index: DatasetIndex, size: int, framing: str, verbose: int) -> Predictions:
    """predict_samples, with a set whose every file is unreadable refused by name
    (Keras's predict fails obscurely on a dataset that yields no batch)."""
    no_image = DatasetError(f"none of the {len(index.testing)} files in {index.root} is a readable image")
    try:
        predictions = predict_samples(model, index, index.testing, size, verbose=verbose, framing=framing)
    except Exception:
        if not any(_readable(s.path, size, framing) for s in index.testing):
            raise no_image from None
        raise
    if not len(predictions.y_true):
        raise no_image
    return predictions


def _readable(path: Path, size: int, framing: str) -> bool:
    try:
        load_rgb(path, size, framing)
    except ImageDecodeError:
        return False
    return True


def _json_bytes(data: dict) -> bytes:
    return json.dumps(data, indent=2, default=str).encode()


def replace_folder(target: Path, files: dict[str, bytes]) -> None:
    """Write `files` into a staging folder beside `target`, then swap it in: readers see
    the old entry or the new one, never a mix of the two."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".new"))
    try:
        os.chmod(staging, 0o755)  # mkdtemp's 0700 would hide the entry from other users of the registry
        for name, data in files.items():
            atomic_write_bytes(staging / name, data)
        old = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.old")
        if target.exists():
            os.replace(target, old)
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)


def describe(m: dict) -> list[str]:
    """An entry's figures as lines of text, each with its 95% interval."""
    ci = m["intervals"]
    lines = [
        f"accuracy {format_interval(m['accuracy'], ci['accuracy'])}  macro F1 "
        f"{format_interval(m['macro_f1'], ci['macro_f1'], percent=False)}  macro recall "
        f"{format_interval(m['macro_recall'], ci['macro_recall'])}",
        f"chance {m['chance']:.0%} (guessing among the run's classes); always answering the set's "
        f"largest class {m['majority_share']:.0%}",
    ]
    for name, row in m["per_class"].items():
        if row["support"]:
            recall = format_interval(row["recall"], ci["per_class"][name]["recall"])
            lines.append(f"  {name:12s} recall {recall:24s} n={row['support']}")
    answers = {c: sum(row[i] for row in m["confusion_matrix"]) for i, c in enumerate(m["classes"])}
    lines.append("  answers given: " + ", ".join(f"{c} {n}" for c, n in answers.items()))
    if m["missing_classes"]:
        lines.append(f"  no images of {', '.join(m['missing_classes'])}: answers in it count as errors")
    for name, group in ((m.get("sequences") or {}).get("groups") or {}).items():
        recalls = ", ".join(
            f"{c} {format_interval(r['value'], r['interval'])}" for c, r in group["recall"].items()
        )
        accuracy = format_interval(group["accuracy"], group["accuracy_interval"])
        lines.append(f"  sequence {name:6s} n={group['n']:<5d} accuracy {accuracy:22s} recall: {recalls}")
    if m["skipped"]:
        lines.append(f"{len(m['skipped'])} unreadable file(s) left out: {', '.join(list(m['skipped'])[:5])}")
    return lines


def external_entries(run: Run) -> list[dict]:
    """The run's external entries (their metrics.json), most recently evaluated first."""
    folder = run.file(FOLDER)
    if not folder.is_dir():
        return []
    entries = [
        metrics
        for path in folder.iterdir()
        if path.is_dir() and not path.name.startswith(".")
        if isinstance(metrics := read_json(path / "metrics.json"), dict)
    ]
    return sorted(entries, key=lambda m: str(m.get("evaluated", "")), reverse=True)


LOSO_RECORD = "loso.json"  # written beside a leave-one-source-out run by bench/loso.py
RECIPE_FIELDS_IGNORED = ("data_dir", "seed", "max_per_class")  # what a fold run may differ in


def leave_one_source_out(runs: list[Run], like: Run | None = None) -> list[dict]:
    """The leave-one-source-out runs among `runs` (their loso.json), each with its figures
    on the source it never saw: {"run", "record", "entry", "same_recipe"}. `same_recipe`:
    whether it trained as `like` did, apart from the data, the seed and the subsample,
    each config read as it ran (a setting it lacks as what it meant then)."""

    def recipe(run: Run) -> dict:
        return {k: v for k, v in as_ran(run.config).items() if k not in RECIPE_FIELDS_IGNORED}

    found = []
    for run in runs:
        record = run.read(LOSO_RECORD)
        if not isinstance(record, dict):
            continue
        entry = read_json(run.file(FOLDER) / str(record.get("entry")) / "metrics.json")
        if not isinstance(entry, dict):
            continue
        same = like is not None and recipe(run) == recipe(like)
        found.append({"run": run, "record": record, "entry": entry, "same_recipe": same})
    return sorted(found, key=lambda f: (not f["same_recipe"], f["run"].id))


def entry_predictions(run: Run, entry_slug: str) -> list[dict[str, str]]:
    """The rows of an entry's predictions.csv."""
    path = run.file(FOLDER) / entry_slug / "predictions.csv"
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


@dataclass
class ExternalInterpretation:
    """An external entry's predictions for error analysis: `interpretation` names each
    file relative to `root`, the set's folder; `sequences` gives each file's MR
    sequence when the set has a sequences.csv."""

    root: Path
    interpretation: Interpretation
    sequences: list[str] | None

    def folder_problem(self) -> str | None:
        """Why the set's images cannot be shown (its folder is gone or has moved), or None."""
        if self.root.is_dir():
            return None
        return (
            f"The folder of this set, {self.root}, is gone or has moved: the figures stand, "
            "but its images cannot be shown. Evaluate the set again from its new place to see them."
        )


def entry_interpretation(run: Run, entry: dict) -> ExternalInterpretation:
    """An external entry's predictions.csv as an Interpretation (core.evaluation.interpret), or
    DatasetError when the entry has no predictions or one of its files, resolved
    against the entry's root, lies outside that root (a hand-edited csv)."""
    rows = entry_predictions(run, entry["slug"])
    if not rows:
        raise DatasetError(
            f"the entry for {entry['name']} has no predictions.csv: evaluate the set again to see its images"
        )
    root = Path(entry["root"])
    for row in rows:
        # Lexical check: a file inside the set may be a link to elsewhere, as when it was evaluated.
        if not Path(os.path.normpath(root / row["file"])).is_relative_to(root):
            raise DatasetError(
                f"predictions.csv of {entry['name']} names a file outside {root}: {row['file']}"
            )
    sequences = [row["sequence"] for row in rows] if "sequence" in rows[0] else None
    return ExternalInterpretation(root, Interpretation.from_rows(rows, run.classes), sequences)
