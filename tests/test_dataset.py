"""Scanning the folder layout, the validation split, and the data fingerprint."""

from __future__ import annotations

import shutil

import pytest
from datagen import CLASSES, make_dataset

from core.data.dataset import fingerprint, scan_dataset, split_validation, subsample
from core.errors import DatasetError


def test_scan_finds_classes_sorted_and_every_visible_file(dataset):
    index = scan_dataset(dataset)
    assert index.classes == sorted(CLASSES)
    assert index.counts(index.testing) == {c: 4 for c in CLASSES}
    # 12 regular + 6 awkward files (corrupt included: it is only found when decoded)
    assert index.counts(index.training)["glioma"] == 18
    assert all(not s.path.name.startswith(".") for s in index.training)


def test_hidden_files_are_ignored(tmp_path):
    root = make_dataset(tmp_path / "d", train_per_class=3, test_per_class=1, awkward=False)
    (root / "Training" / "glioma" / ".DS_Store").write_bytes(b"junk")
    assert scan_dataset(root).counts(scan_dataset(root).training)["glioma"] == 3


@pytest.mark.parametrize(
    "breakage, message",
    [
        (lambda r: shutil.rmtree(r), "not found"),
        (lambda r: shutil.rmtree(r / "Testing"), "no Testing folder"),
        (lambda r: shutil.rmtree(r / "Testing" / "glioma"), "differ"),
        (
            lambda r: [shutil.rmtree(r / s / c) for s in ("Training", "Testing") for c in CLASSES[1:]],
            "at least two class",
        ),
        (lambda r: [p.unlink() for p in (r / "Training" / "notumor").iterdir()], "no images for class"),
    ],
)
def test_bad_layouts_are_refused_with_a_reason(tmp_path, breakage, message):
    root = make_dataset(tmp_path / "d", train_per_class=3, test_per_class=1, awkward=False)
    breakage(root)
    with pytest.raises(DatasetError, match=message):
        scan_dataset(root)


def test_validation_split_is_stratified_seeded_and_disjoint(dataset):
    samples = scan_dataset(dataset).training
    train, val = split_validation(samples, 0.25, seed=3)
    again, val_again = split_validation(samples, 0.25, seed=3)
    assert val == val_again and train == again
    assert not set(train) & set(val)
    assert set(train) | set(val) == set(samples)
    assert {s.label for s in val} == {0, 1, 2, 3}
    other, _ = split_validation(samples, 0.25, seed=4)
    assert other != train


def test_the_folds_of_one_seed_cross_validate_over_copy_groups(dataset):
    samples = scan_dataset(dataset).training
    seen: dict[int, int] = {}
    groups = []  # pairs of 'copies' within each class
    for s in samples:
        seen[s.label] = seen.get(s.label, -1) + 1
        groups.append(s.label * 1000 + seen[s.label] // 2)
    folds = [split_validation(samples, 0.25, 3, groups, fold)[1] for fold in range(4)]
    assert folds[0] == split_validation(samples, 0.25, 3, groups)[1]  # fold 0 is the default
    held = [s for fold in folds for s in fold]
    assert sorted(held, key=str) == sorted(samples, key=str)  # every image validates once
    for fold in folds:
        for group in {groups[samples.index(s)] for s in fold}:  # a group is all in, or all out
            assert all(samples[i] in fold for i, g in enumerate(groups) if g == group)
    with pytest.raises(DatasetError, match="fold 4 does not exist"):
        split_validation(samples, 0.25, 3, groups, 4)


def test_subsample_caps_each_class(dataset):
    samples = subsample(scan_dataset(dataset).training, 5, seed=0)
    assert len(samples) == 20
    assert subsample(scan_dataset(dataset).training, 5, seed=0) == samples


def test_fingerprint_changes_with_content(tmp_path):
    root = make_dataset(tmp_path / "d", train_per_class=3, test_per_class=1, awkward=False)
    index = scan_dataset(root)
    before = fingerprint(index, {"test": index.testing})
    assert before["counts"]["test"] == {c: 1 for c in CLASSES}
    victim = index.testing[0].path
    victim.write_bytes(victim.read_bytes() + b"\0")
    assert fingerprint(index, {"test": index.testing})["sha256"] != before["sha256"]
