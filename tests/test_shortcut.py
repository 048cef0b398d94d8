"""The shortcut score: a classifier on image properties alone, on generated data where
the properties do and do not give the class away."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import run_cli
from datagen import CLASSES, make_dataset, slice_image

from core.data.audit import run_audit
from core.data.dataset import scan_dataset
from core.data.shortcut import FEATURES, image_features, shortcut_score

# Each "source" stores its class its own way, as figshare, SARTAJ and Br35H do.
SOURCES = {
    "glioma": (64, "L", "JPEG"),
    "meningioma": (96, "RGB", "PNG"),
    "notumor": (80, "RGB", "JPEG"),
    "pituitary": (72, "L", "PNG"),
}


def confounded_dataset(root, per_class=(16, 6)):
    rng = np.random.default_rng(5)
    for split, count in zip(("Training", "Testing"), per_class):
        for label, name in enumerate(CLASSES):
            size, mode, fmt = SOURCES[name]
            for i in range(count):
                path = root / split / name / f"{name}-{i:03d}.{fmt.lower()}"
                path.parent.mkdir(parents=True, exist_ok=True)
                slice_image(label, rng, size=size).convert(mode).save(path, format=fmt)
    return root


@pytest.fixture(scope="module")
def confounded(tmp_path_factory):
    return scan_dataset(confounded_dataset(tmp_path_factory.mktemp("src") / "d"))


def test_features_describe_the_file_not_the_anatomy(confounded):
    path = next(s.path for s in confounded.training if s.path.suffix == ".png")
    row = dict(zip(FEATURES, image_features(path)))
    assert (row["width"], row["height"], row["aspect"]) == (96, 96, 1.0)
    assert row["mode_RGB"] == 1 and row["format_PNG"] == 1 and row["format_JPEG"] == 0
    assert row["kB"] == pytest.approx(path.stat().st_size / 1024)
    assert 0 < row["background_share"] < 1 and row["border_mean"] < 20  # a dark frame


def test_properties_that_follow_the_source_give_the_class_away(confounded, tmp_path):
    score = shortcut_score(confounded, run_audit(confounded))
    assert score["cross_validated"]["accuracy"] >= 0.95
    assert score["testing"]["accuracy"] >= 0.95
    low, high = score["cross_validated"]["interval"]
    assert low <= score["cross_validated"]["accuracy"] <= high
    assert score["chance"] == 0.25


def test_properties_shared_by_every_class_give_little_away(tmp_path):
    index = scan_dataset(make_dataset(tmp_path / "d", train_per_class=16, test_per_class=6, awkward=False))
    score = shortcut_score(index, run_audit(index))
    # Sizes and modes are drawn alike for every class here: far from the confounded set.
    assert score["cross_validated"]["accuracy"] < 0.7


def test_the_audit_command_reports_it(confounded, tmp_path):
    result = run_cli("audit", str(confounded.root), "--json", models=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    shortcut = json.loads(result.stdout)["shortcut"]
    assert shortcut["cross_validated"]["accuracy"] >= 0.95
    text = run_cli("audit", str(confounded.root), models=tmp_path).stdout
    assert "What a model gets without looking at the brain" in text
