"""Which original collection each image of the Kaggle set comes from, by a checked signature.

The Kaggle "Brain Tumor MRI Dataset" merges three collections (docs/data.md):
- figshare (Cheng et al.): 1,426 glioma, 708 meningioma and 930 pituitary slices, all stored
  as 8-bit grayscale (mode L) 512x512 JPEGs;
- SARTAJ ("Brain Tumor Classification (MRI)"): its meningioma (822 training + 115 testing)
  and pituitary (827 training) slices, all stored as RGB JPEGs; its gliomas were replaced by
  figshare's;
- Br35H: notumor slices only, mixed with SARTAJ's 500 notumor slices.

The signature: a glioma, meningioma or pituitary slice in mode L is figshare's; a meningioma
or pituitary slice in any other mode is SARTAJ's; a glioma in another mode is a re-encoded
copy of a figshare glioma ("figshare-copy": `check` with the audit confirms a grayscale copy
of each). Nothing
checked separates SARTAJ's notumor slices from Br35H's, so they stay "unknown". `check`
compares the counts with the collections' published ones: a folder that is not this dataset
(or a changed copy of it) gets an error instead of a wrong assignment.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from PIL import Image

from core.data.audit import Audit
from core.data.dataset import DatasetIndex
from core.errors import DatasetError

FIGSHARE, FIGSHARE_COPY, SARTAJ, UNKNOWN = "figshare", "figshare-copy", "sartaj", "unknown"
PUBLISHED = {
    (FIGSHARE, "glioma"): 1426,
    (FIGSHARE, "meningioma"): 708,
    (FIGSHARE, "pituitary"): 930,
    (SARTAJ, "meningioma"): 822 + 115,
    (SARTAJ, "pituitary"): 827,
}
# Classes two collections share, so a model trained on one can be tested on the other.
SHARED_CLASSES = ("meningioma", "pituitary")


def source_of(path: Path, label: str) -> str:
    """The collection of one image by the signature above (the file header only)."""
    if label == "notumor":
        return UNKNOWN
    try:
        with Image.open(path) as image:
            grayscale = image.mode == "L"
    except OSError:  # unreadable: the audit lists it; no collection can be read from it
        return UNKNOWN
    if grayscale:
        return FIGSHARE
    return FIGSHARE_COPY if label == "glioma" else SARTAJ


def assign_sources(index: DatasetIndex, audit: Audit | None = None) -> dict[str, str]:
    """Relative path -> collection for every image of both splits, checked (the copies
    too, when the dataset's audit is given)."""
    sources = {
        index.relative(s): source_of(s.path, index.classes[s.label]) for s in index.training + index.testing
    }
    check(sources, index)
    if audit is not None:
        check_copies(sources, audit)
    return sources


def counts(sources: dict[str, str], index: DatasetIndex) -> Counter:
    """(collection, class) -> images, both splits together."""
    label_of = {index.relative(s): index.classes[s.label] for s in index.training + index.testing}
    return Counter((source, label_of[file]) for file, source in sources.items())


def check(sources: dict[str, str], index: DatasetIndex) -> None:
    """Raise DatasetError unless every count matches the collection's published one."""
    found = counts(sources, index)
    wrong = {key: (found.get(key, 0), n) for key, n in PUBLISHED.items() if found.get(key, 0) != n}
    if wrong:
        listed = "; ".join(f"{s} {c}: {got} found, {n} published" for (s, c), (got, n) in wrong.items())
        raise DatasetError(
            f"the source signature does not hold for {index.root} ({listed}): "
            "it is not the Kaggle Brain Tumor MRI Dataset as published"
        )


def check_copies(sources: dict[str, str], audit: Audit) -> None:
    """Raise DatasetError unless every figshare-copy image shares a copy group with a
    figshare image."""
    group_of = audit.group_of()
    with_figshare = {
        group_of[i] for i, file in enumerate(audit.files) if i in group_of and sources.get(file) == FIGSHARE
    }
    orphans = [
        file
        for i, file in enumerate(audit.files)
        if sources.get(file) == FIGSHARE_COPY and group_of.get(i) not in with_figshare
    ]
    if orphans:
        raise DatasetError(
            f"{len(orphans)} non-grayscale gliomas have no grayscale copy (first: {orphans[0]}): "
            "the source signature does not hold"
        )


def held_out(sources: dict[str, str], audit: Audit, source: str) -> tuple[list[str], set[str]]:
    """A leave-one-source-out fold: the files of `source` with no copy (exact, near or
    mirrored) in any other collection, and every file that shares a copy group with one
    of them. The second set is what the fold's training part must leave out, so the
    held-out files have no copy on the training side."""
    group_of = audit.group_of()
    shared_groups = {
        group_of[i] for i, file in enumerate(audit.files) if i in group_of and sources.get(file) != source
    }
    held_at = [
        i
        for i, file in enumerate(audit.files)
        if sources.get(file) == source and group_of.get(i) not in shared_groups
    ]
    held = [audit.files[i] for i in held_at]
    held_groups = {group_of[i] for i in held_at if i in group_of}
    copies = {audit.files[m] for g in held_groups for m in audit.groups[g]}
    return held, set(held) | copies
