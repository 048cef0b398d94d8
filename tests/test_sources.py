"""The source signature (core/data/sources.py) and its leave-one-source-out fold."""

from pathlib import Path

import numpy as np
import pytest
from datagen import make_dataset, slice_image

from core.data.audit import Audit
from core.data.dataset import scan_dataset
from core.data.sources import (
    FIGSHARE,
    FIGSHARE_COPY,
    SARTAJ,
    UNKNOWN,
    assign_sources,
    check_copies,
    held_out,
    source_of,
)
from core.errors import DatasetError


@pytest.mark.parametrize(
    ("label", "mode", "expected"),
    [
        ("meningioma", "L", FIGSHARE),
        ("pituitary", "L", FIGSHARE),
        ("glioma", "L", FIGSHARE),
        ("meningioma", "RGB", SARTAJ),
        ("pituitary", "RGB", SARTAJ),
        ("glioma", "RGB", FIGSHARE_COPY),
        ("notumor", "RGB", UNKNOWN),
        ("notumor", "L", UNKNOWN),
    ],
)
def test_signature_reads_the_stored_colour_mode(tmp_path: Path, label, mode, expected) -> None:
    path = tmp_path / "slice.jpg"  # the extension says nothing: the header decides
    slice_image(1, np.random.default_rng(0)).convert(mode).save(path, format="JPEG")
    assert source_of(path, label) == expected


def test_a_folder_that_is_not_the_kaggle_set_is_refused(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "data", train_per_class=3, test_per_class=2)
    with pytest.raises(DatasetError, match="source signature does not hold.*figshare glioma"):
        assign_sources(scan_dataset(root))


def _audit(sources: dict[str, str], groups: list[list[str]]) -> Audit:
    files = list(sources)
    return Audit(
        files=files,
        splits=[f.split("/")[0] for f in files],
        labels=[f.split("/")[1] for f in files],
        groups=[[files.index(f) for f in group] for group in groups],
    )


SOURCES = {
    "Training/meningioma/a": FIGSHARE,
    "Training/meningioma/b": SARTAJ,  # a re-encoded copy of a
    "Training/meningioma/c": SARTAJ,  # SARTAJ's own, with a copy in Testing
    "Testing/meningioma/d": SARTAJ,
    "Training/pituitary/e": SARTAJ,  # SARTAJ's own, alone
    "Training/glioma/f": FIGSHARE,
    "Training/glioma/g": FIGSHARE_COPY,
}
GROUPS = [
    ["Training/meningioma/a", "Training/meningioma/b"],
    ["Training/meningioma/c", "Testing/meningioma/d"],
    ["Training/glioma/f", "Training/glioma/g"],
]


def test_fold_holds_out_a_sources_own_slices_and_every_copy_of_them() -> None:
    held, removed = held_out(SOURCES, _audit(SOURCES, GROUPS), SARTAJ)
    # b is a copy of a figshare slice: not SARTAJ's own, so it stays in training.
    assert sorted(held) == ["Testing/meningioma/d", "Training/meningioma/c", "Training/pituitary/e"]
    assert removed == set(held)
    assert "Training/meningioma/b" not in removed


def test_a_slice_with_a_copy_in_any_other_collection_is_not_held_out() -> None:
    sources = {**SOURCES, "Training/notumor/h": UNKNOWN}
    groups = [*GROUPS, ["Training/pituitary/e", "Training/notumor/h"]]
    held, removed = held_out(sources, _audit(sources, groups), SARTAJ)
    assert "Training/pituitary/e" not in held
    assert sorted(held) == ["Testing/meningioma/d", "Training/meningioma/c"]
    assert "Training/notumor/h" not in removed


def test_a_non_grayscale_glioma_without_a_grayscale_copy_is_refused() -> None:
    audit = _audit(SOURCES, GROUPS)
    check_copies(SOURCES, audit)  # g is a copy of f: fine
    with pytest.raises(DatasetError, match="1 non-grayscale gliomas have no grayscale copy"):
        check_copies(SOURCES, _audit(SOURCES, GROUPS[:2]))
