"""Classifying many scans at once: folders, zips and multi-frame DICOM, as one table.

Inputs are (name, file or bytes) pairs; names are labels only, never paths we write
to, so a zip member called `../../etc/passwd` is just an odd name in the table.
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from core.config import FLAG_BELOW
from core.data.images import decode_frames, model_view
from core.errors import ImageDecodeError, PipelineError
from core.model.tta import View
from core.serving.inference import Classifier, Prediction

# A member of a zip that cannot be extracted travels as its error, to get its own row.
Source = tuple[str, Path | bytes | ImageDecodeError]
# A zip is read in memory: bound what it may expand to (a zip bomb is refused). The
# whole shared dataset, 7,023 slices, is about 150 MB.
MAX_ZIP_MEMBERS = 5000
MAX_ZIP_BYTES = 300_000_000


def folder_sources(folder: Path) -> list[Source]:
    """Every file under a folder (recursively; hidden files and links out skipped), sorted."""
    folder = Path(folder).resolve()
    if not folder.is_dir():
        raise PipelineError(f"{folder} is not a folder")
    files = [
        p
        for p in sorted(folder.rglob("*"))
        # A link that leads out of the folder is not followed.
        if p.is_file() and not _is_hidden(str(p.relative_to(folder))) and p.resolve().is_relative_to(folder)
    ]
    return [(str(p.relative_to(folder)), p) for p in files]


def zip_sources(data: bytes) -> list[Source]:
    """The files of a zip archive, read in memory; raises PipelineError for a bad or
    oversized archive."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError) as exc:
        raise PipelineError(f"not a readable zip archive ({exc})") from None
    members = [m for m in archive.infolist() if not m.is_dir() and not _is_hidden(m.filename)]
    if len(members) > MAX_ZIP_MEMBERS:
        raise PipelineError(f"the zip holds {len(members)} files; the limit is {MAX_ZIP_MEMBERS}")
    total = sum(m.file_size for m in members)
    if total > MAX_ZIP_BYTES:
        limit = MAX_ZIP_BYTES / 1e6
        raise PipelineError(f"the zip expands to {total / 1e6:,.0f} MB; the limit is {limit:,.0f} MB")
    sources: list[Source] = []
    for m in members:
        try:
            sources.append((m.filename, archive.read(m)))
        except (zipfile.BadZipFile, OSError, NotImplementedError, RuntimeError) as exc:
            sources.append((m.filename, ImageDecodeError(f"cannot extract from the zip ({exc})")))
    return sources


def _is_hidden(name: str) -> bool:
    """Dot files and macOS resource forks, which every zip made on a Mac carries."""
    return any(
        (part.startswith(".") and part not in (".", "..")) or part == "__MACOSX" for part in Path(name).parts
    )


def _slices(name: str, source, size: int, framing: str) -> Iterator[tuple[str, int, np.ndarray | str]]:
    """(name, frame, image) per slice of a file, or (name, 0, reason) when unreadable."""
    try:
        if isinstance(source, ImageDecodeError):
            raise source
        frames = decode_frames(source)
    except ImageDecodeError as exc:
        yield name, 0, str(exc)
        return
    for i, frame in enumerate(frames):
        label = name if len(frames) == 1 else f"{name} [frame {i + 1}/{len(frames)}]"
        yield label, i, model_view(frame, size, framing)


def classify(
    classifier: Classifier,
    sources: Iterable[Source],
    calibrated: bool = False,
    chunk: int = 32,
    progress: Callable[[int, int], None] | None = None,
    tta: Sequence[View] = (),
) -> list[Prediction]:
    """Predictions for every slice of every source, in input order; memory stays at one
    chunk of images whatever the number of files."""
    sources = list(sources)
    results: list[Prediction] = []
    pending: list[Prediction] = []
    images: list[np.ndarray] = []

    def flush() -> None:
        if images:
            out = classifier.outputs(np.stack(images), calibrated=calibrated, tta=tta)
            for i, (prediction, p) in enumerate(zip(pending, out.probabilities)):
                prediction.probabilities = {c: float(v) for c, v in zip(classifier.classes, p)}
                if out.ood_scores is not None:
                    prediction.ood_score = float(out.ood_scores[i])
                    prediction.unusual = bool(out.unusual[i])
            results.extend(pending)
            pending.clear()
            images.clear()

    for position, (name, source) in enumerate(sources):
        for label, frame, image in _slices(name, source, classifier.input_size, classifier.framing):
            if isinstance(image, str):
                flush()  # keep the table in input order
                results.append(Prediction(label, error=image, source=position))
                continue
            pending.append(Prediction(label, source=position, frame=frame))
            images.append(image)
            if len(images) >= chunk:
                flush()
        if progress:
            progress(position + 1, len(sources))
    flush()
    return results


def slice_image(sources: list[Source], prediction: Prediction, size: int, framing: str) -> np.ndarray:
    """The image the model saw for one prediction of `classify(..., sources)`."""
    _, source = sources[prediction.source]
    return model_view(decode_frames(source)[prediction.frame], size, framing)


def table(predictions: list[Prediction], classes: list[str], flag_below: float = FLAG_BELOW) -> list[dict]:
    """One row per slice: file, predicted class, confidence, flagged, the
    out-of-distribution score and flag (empty when the run has no check), one column
    per class, error. Flagged: unreadable, unusual, or the top probability is below
    `flag_below`."""
    rows = []
    for p in predictions:
        row = {
            "file": p.name,
            "predicted": p.label or "",
            "confidence": round(p.confidence, 4) if p.confidence is not None else None,
            "flagged": p.error is not None or bool(p.unusual) or (p.confidence or 0.0) < flag_below,
            "ood_score": round(p.ood_score, 2) if p.ood_score is not None else None,
            "unusual": p.unusual,
        }
        for c in classes:
            row[f"p_{c}"] = round(p.probabilities[c], 4) if p.probabilities else None
        row["error"] = p.error or ""
        rows.append(row)
    return rows


def to_csv(rows: list[dict]) -> str:
    if not rows:
        return ""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()
