"""The dataset audit on generated data with planted copies of every kind."""

from __future__ import annotations

import io
import json
import shutil

import numpy as np
import pytest
from conftest import run_cli
from datagen import make_dataset
from PIL import Image

from core.config import TrainConfig
from core.data.audit import cached_audit, run_audit
from core.data.dataset import scan_dataset, split_validation
from core.data.split import run_split
from core.evaluation.evaluate import Predictions, clean_metrics


def reencode(src, dst, quality=60, scale=1.0, gain=1.0, offset=0.0, mirror=False):
    image = Image.open(src).convert("L")
    if mirror:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if scale != 1.0:
        image = image.resize((int(image.width * scale), int(image.height * scale)))
    if gain != 1.0 or offset:
        image = Image.fromarray(np.clip(np.asarray(image, float) * gain + offset, 0, 255).astype(np.uint8))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=quality)
    dst.write_bytes(out.getvalue())


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    root = make_dataset(
        tmp_path_factory.mktemp("audit") / "d", train_per_class=8, test_per_class=4, seed=11, awkward=False
    )
    tr, te = root / "Training", root / "Testing"
    shutil.copy(tr / "glioma/Tr-glioma-000.jpg", tr / "glioma/exact-copy.jpg")
    reencode(tr / "glioma/Tr-glioma-001.jpg", tr / "glioma/reencoded.jpg", quality=55)
    reencode(tr / "pituitary/Tr-pituitary-002.jpg", te / "pituitary/resized-leak.jpg", scale=0.6)
    reencode(tr / "notumor/Tr-notumor-003.jpg", te / "notumor/brighter-leak.jpg", gain=0.8, offset=25)
    shutil.copy(tr / "glioma/Tr-glioma-004.jpg", tr / "meningioma/conflict.jpg")
    shutil.copy(te / "meningioma/Te-meningioma-000.jpg", te / "meningioma/test-twin.jpg")
    reencode(tr / "meningioma/Tr-meningioma-005.jpg", tr / "meningioma/mirrored.jpg", mirror=True)
    reencode(tr / "glioma/Tr-glioma-006.jpg", te / "glioma/mirrored-leak.jpg", mirror=True, scale=0.8)
    (te / "glioma/corrupt.jpg").write_bytes(b"\xff\xd8 not really a JPEG")
    return root


@pytest.fixture(scope="module")
def audit(planted):
    return run_audit(scan_dataset(planted))


def pair_names(audit, group):
    return {audit.files[m].split("/", 1)[1] for m in group}


def test_every_planted_copy_is_found_and_nothing_else(audit):
    groups = [pair_names(audit, g) for g in audit.groups]
    expected = [
        {"glioma/Tr-glioma-000.jpg", "glioma/exact-copy.jpg"},
        {"glioma/Tr-glioma-001.jpg", "glioma/reencoded.jpg"},
        {"pituitary/Tr-pituitary-002.jpg", "pituitary/resized-leak.jpg"},
        {"notumor/Tr-notumor-003.jpg", "notumor/brighter-leak.jpg"},
        {"glioma/Tr-glioma-004.jpg", "meningioma/conflict.jpg"},
        {"meningioma/Te-meningioma-000.jpg", "meningioma/test-twin.jpg"},
        {"meningioma/Tr-meningioma-005.jpg", "meningioma/mirrored.jpg"},
        {"glioma/Tr-glioma-006.jpg", "glioma/mirrored-leak.jpg"},
    ]
    assert sorted(map(sorted, groups)) == sorted(map(sorted, expected))  # distinct images stay apart
    exact = {frozenset(pair_names(audit, p)) for p in audit.exact_pairs}
    assert frozenset({"glioma/Tr-glioma-000.jpg", "glioma/exact-copy.jpg"}) in exact
    assert frozenset({"glioma/Tr-glioma-001.jpg", "glioma/reencoded.jpg"}) not in exact  # near only
    mirrored = {frozenset(pair_names(audit, p[:2])) for p in audit.near_pairs if p[4]}
    assert mirrored == {
        frozenset({"meningioma/Tr-meningioma-005.jpg", "meningioma/mirrored.jpg"}),
        frozenset({"glioma/Tr-glioma-006.jpg", "glioma/mirrored-leak.jpg"}),
    }


def test_leakage_conflicts_and_the_clean_test_set(audit):
    assert audit.leaked_test_files() == {
        "Testing/pituitary/resized-leak.jpg",
        "Testing/notumor/brighter-leak.jpg",
        "Testing/glioma/mirrored-leak.jpg",
    }
    (conflict,) = audit.label_conflicts()
    assert {audit.labels[m] for m in conflict} == {"glioma", "meningioma"}
    clean = audit.clean_test_files()
    # 16 generated + 5 planted Testing files, minus 3 leaked, 1 twin counted once, 1 unreadable
    assert len(clean) == 16 + 5 - 3 - 1 - 1
    assert ("Testing/meningioma/Te-meningioma-000.jpg" in clean) != (
        "Testing/meningioma/test-twin.jpg" in clean
    )
    summary = audit.summary()
    assert summary["testing_with_copy_in_training"] == 3
    assert summary["clean_test_left_out"] == {
        "copy_in_training": 3,
        "twin_within_testing": 1,
        "unreadable": 1,
    }
    assert summary["mirrored_near_pairs"] == 2
    assert summary["label_conflict_groups"] == 1
    assert summary["redundant_within_training"] == 4  # exact copy, re-encoded, conflict, mirrored
    assert summary["redundant_within_testing"] == 1
    assert summary["per_class"]["notumor"] == {"testing": 5, "leaked": 1, "clean": 4}
    assert audit.training_copies_to_drop() == {
        "Training/glioma/exact-copy.jpg",
        "Training/glioma/reencoded.jpg",
        "Training/meningioma/conflict.jpg",
        "Training/meningioma/mirrored.jpg",
    }


def test_clean_metrics_against_a_hand_computed_example():
    predictions = Predictions(
        files=["a", "b", "c", "d", "e"],
        y_true=np.array([0, 0, 1, 1, 1]),
        probabilities=np.array([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7], [0.6, 0.4], [0.1, 0.9]]),
        skipped={},
    )
    clean = clean_metrics(predictions, {"a", "c", "d"}, ["x", "y"])
    assert clean["n"] == 3 and clean["excluded"] == 2
    assert clean["accuracy"] == pytest.approx(2 / 3)  # a right, c right, d wrong
    assert clean["confusion_matrix"] == [[1, 0], [1, 1]]
    assert clean["per_class"]["y"]["recall"] == pytest.approx(0.5)


def test_audit_is_cached_per_dataset_and_redone_when_files_change(planted, tmp_path):
    index = scan_dataset(planted)
    first = cached_audit(index, tmp_path)
    (stored,) = (tmp_path / "audit").iterdir()
    stamp = stored.stat().st_mtime_ns
    assert cached_audit(index, tmp_path).groups == first.groups
    assert stored.stat().st_mtime_ns == stamp  # read back, not recomputed
    extra = planted / "Testing" / "glioma" / "late-addition.jpg"
    shutil.copy(planted / "Training/glioma/Tr-glioma-005.jpg", extra)
    try:
        again = cached_audit(scan_dataset(planted), tmp_path)
        assert "Testing/glioma/late-addition.jpg" in again.leaked_test_files()
    finally:
        extra.unlink()


def test_audit_command_line(planted, tmp_path):
    result = run_cli("audit", str(planted), "--json", models=tmp_path)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["summary"]["testing_with_copy_in_training"] == 3
    text = run_cli("audit", str(planted), models=tmp_path)
    assert "clean test set: 16 of 21 Testing images" in text.stdout
    assert "3 with a copy in Training, 1 twin within Testing, 1 unreadable" in text.stdout


def test_training_can_drop_duplicates_and_says_what_it_dropped(planted, tmp_path):
    result = run_cli(
        "train",
        str(planted),
        "--weights",
        "none",
        "--input-size",
        "75",
        "--head-epochs",
        "1",
        "--unfreeze-from",
        "none",
        "--drop-duplicates",
        "--run-id",
        "dedup",
        models=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    run_dir = tmp_path / "dedup"
    data = json.loads((run_dir / "data.json").read_text())
    assert data["dropped_duplicates"] == [
        "Training/glioma/exact-copy.jpg",
        "Training/glioma/reencoded.jpg",
        "Training/meningioma/conflict.jpg",
        "Training/meningioma/mirrored.jpg",
    ]
    seen = data["files"]["train"] + data["files"]["validation"]
    assert not set(data["dropped_duplicates"]) & set(seen)
    assert json.loads((run_dir / "config.json").read_text())["drop_duplicates"] is True
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["clean"]["n"] == 16 and metrics["clean"]["excluded"] == 4
    assert metrics["clean"]["left_out"] == {"copy_in_training": 3, "twin_within_testing": 1, "unreadable": 1}
    assert "clean test set accuracy" in result.stdout
    assert "3 with a copy in Training, 1 twin within Testing, 1 unreadable left out" in result.stdout


def test_the_validation_split_keeps_every_copy_group_on_one_side(planted, tmp_path):
    index = scan_dataset(planted)
    audit = cached_audit(index, tmp_path)
    planted_groups = [{audit.files[m] for m in g if audit.splits[m] == "Training"} for g in audit.groups]
    planted_groups = [g for g in planted_groups if len(g) > 1]
    assert len(planted_groups) == 4  # exact, re-encoded, label conflict, mirrored

    def straddling(train: set[str], validation: set[str]) -> list[set[str]]:
        return [g for g in planted_groups if g & train and g & validation]

    leaks_without_groups = 0
    for seed in range(8):
        config = TrainConfig(str(planted), val_fraction=0.25, seed=seed)
        split = run_split(index, config, tmp_path)
        train = {index.relative(s) for s in split.train}
        validation = {index.relative(s) for s in split.validation}
        assert not train & validation and len(train | validation) == len(index.training)
        assert straddling(train, validation) == [], f"seed {seed}"
        assert {s.label for s in split.validation} == {0, 1, 2, 3}
        plain_train, plain_val = split_validation(index.training, 0.25, seed)
        leaks_without_groups += bool(
            straddling({index.relative(s) for s in plain_train}, {index.relative(s) for s in plain_val})
        )
    assert leaks_without_groups > 0  # the planted copies would leak into a per-file split
    assert split.describe()["copy_groups_in_training"] == 4
    for fold in (1, 2, 3):  # the other folds of cross-validation keep copies together too
        split = run_split(
            index, TrainConfig(str(planted), val_fraction=0.25, seed=0, val_fold=fold), tmp_path
        )
        train = {index.relative(s) for s in split.train}
        assert straddling(train, {index.relative(s) for s in split.validation}) == []
        assert split.describe()["validation_fold"] == fold
