"""Scoring a run on a dataset from elsewhere (core.external): layouts, refusals, the
per-sequence figures, the CLI and the Results page section."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, run_cli
from datagen import CLASSES, slice_image
from streamlit.testing.v1 import AppTest

from core.errors import DatasetError
from core.external import entry_predictions, evaluate_external, external_entries, scan_external, slug
from core.intervals import format_interval
from core.registry import Registry

TIMEOUT = 180  # TensorFlow imports and model loads take seconds on a 2-core machine
THREE = CLASSES[:3]  # like the Radiopaedia set: no pituitary
SEQUENCES = ("T1", "T1C+", "T2")


def make_external(
    root: Path, classes=THREE, per_class: int = 5, testing: bool = False, seed: int = 7, corrupt: bool = True
) -> Path:
    """A small external set: <root>/<class>/* (or <root>/Testing/<class>/*), a corrupt
    file, and a sequences.csv naming every file from the root, as the real one does."""
    rng = np.random.default_rng(seed)
    parent = root / "Testing" if testing else root
    rows = []
    for name in classes:
        label = CLASSES.index(name) if name in CLASSES else 0
        (parent / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            path = parent / name / f"ext-{name}-{i:02d}.jpg"
            slice_image(label, rng, size=int(rng.choice([60, 70, 90]))).convert("RGB").save(path, "JPEG")
            rows.append([path.relative_to(root).as_posix(), name, SEQUENCES[i % len(SEQUENCES)]])
    if corrupt:
        bad = parent / classes[0] / "broken.jpg"
        bad.write_bytes(b"\xff\xd8\xff\xe0 not a jpeg at all")
        rows.append([bad.relative_to(root).as_posix(), classes[0], "T2"])
    with (root / "sequences.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows([["file", "label", "sequence"], *rows])
    return root


@pytest.fixture
def registry(tmp_path, trained) -> Registry:
    """A copy of the tiny run's registry: external entries stay out of the shared one."""
    models, _ = trained
    shutil.copytree(models, tmp_path / "models")
    return Registry(tmp_path / "models")


@pytest.fixture(scope="module")
def model(trained):
    from core.model import load_model

    models, run_id = trained
    return load_model(Registry(models).get(run_id).model_path)


def contains(interval: list[float], value: float) -> bool:
    # Interval ends are stored rounded to 6 digits (core.intervals).
    return interval[0] - 1e-6 <= value <= interval[1] + 1e-6


def correct_fraction(rows: list[dict]) -> float:
    return sum(r["correct"] == "1" for r in rows) / len(rows)


def test_class_folders_with_sequences(registry, model, tmp_path):
    run = registry.get("tiny")
    root = make_external(tmp_path / "radio")
    m = evaluate_external(run, root, model=model)

    entry = run.file("external") / slug(root)
    assert entry.name.startswith("radio-") and (entry / "metrics.json").is_file()
    assert json.loads((entry / "metrics.json").read_text()) == json.loads(json.dumps(m))
    rows = entry_predictions(run, m["slug"])
    assert m["n"] == len(rows) == 15  # the corrupt file is left out and listed
    assert list(m["skipped"]) == ["glioma/broken.jpg"]
    assert m["accuracy"] == pytest.approx(correct_fraction(rows))
    assert np.array(m["confusion_matrix"]).sum() == 15
    # Over the run's four classes: pituitary has no images, and answers in it are errors.
    assert m["classes"] == list(CLASSES) and m["missing_classes"] == ["pituitary"]
    assert m["per_class"]["pituitary"]["support"] == 0
    assert all(r["correct"] == "0" for r in rows if r["predicted"] == "pituitary")
    assert {r["true"] for r in rows} == set(THREE)
    assert contains(m["intervals"]["accuracy"], m["accuracy"])
    assert m["fingerprint"]["counts"]["external"] == {
        "glioma": 6,
        "meningioma": 5,
        "notumor": 5,
        "pituitary": 0,
    }
    assert m["root"] == str(root.resolve()) and m["name"] == "radio" and m["chance"] == 0.25
    assert m["majority_share"] == 5 / 15  # always answering glioma (5 readable of 15)

    seq = m["sequences"]
    assert seq["unmatched"] == 0
    assert set(seq["groups"]) == set(SEQUENCES)
    assert sum(g["n"] for g in seq["groups"].values()) == m["n"]
    for name, group in seq["groups"].items():
        mine = [r for r in rows if r["sequence"] == name]
        assert group["n"] == len(mine)
        assert group["accuracy"] == pytest.approx(correct_fraction(mine))
        assert contains(group["accuracy_interval"], group["accuracy"])
        assert sum(r["support"] for r in group["recall"].values()) == group["n"]
        for cls, recall in group["recall"].items():
            of_class = [r for r in mine if r["true"] == cls]
            assert recall["support"] == len(of_class)
            assert recall["value"] == pytest.approx(correct_fraction(of_class))
            assert contains(recall["interval"], recall["value"])


def test_testing_layout_and_same_folder_names_do_not_collide(registry, model, tmp_path):
    run = registry.get("tiny")
    first = make_external(tmp_path / "a" / "radio", testing=True, corrupt=False)
    second = make_external(tmp_path / "b" / "radio", per_class=3, corrupt=False, seed=9)
    m1 = evaluate_external(run, first, model=model)
    m2 = evaluate_external(run, second, model=model)
    assert m1["slug"] != m2["slug"] and m1["name"] == m2["name"] == "radio"
    assert (m1["n"], m2["n"]) == (15, 9)
    assert entry_predictions(run, m1["slug"])[0]["file"].startswith("Testing/")
    assert sum(g["n"] for g in m1["sequences"]["groups"].values()) == 15  # csv names Testing/...
    assert {e["slug"] for e in external_entries(run)} == {m1["slug"], m2["slug"]}


def test_no_sequences_csv_means_no_per_sequence_figures(registry, model, tmp_path):
    run = registry.get("tiny")
    root = make_external(tmp_path / "plain", classes=CLASSES, per_class=2, corrupt=False)
    (root / "sequences.csv").unlink()
    m = evaluate_external(run, root, model=model)
    assert m["sequences"] is None and m["missing_classes"] == []
    assert "sequence" not in entry_predictions(run, m["slug"])[0]


def test_refusals_name_the_problem(tmp_path):
    odd = make_external(tmp_path / "odd", classes=("glioma", "lymphoma"), per_class=1, corrupt=False)
    with pytest.raises(DatasetError, match="lymphoma") as info:
        scan_external(odd, list(CLASSES))
    assert "glioma" not in str(info.value).split("know:")[1].split("(")[0]  # only the unknown one
    assert "pituitary" in str(info.value)  # the run's classes are listed
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no class folders"):
        scan_external(tmp_path / "empty", list(CLASSES))
    (tmp_path / "hollow" / "glioma").mkdir(parents=True)
    with pytest.raises(DatasetError, match="hold no files"):
        scan_external(tmp_path / "hollow", list(CLASSES))
    with pytest.raises(DatasetError, match="not found"):
        scan_external(tmp_path / "nowhere", list(CLASSES))
    bad = make_external(tmp_path / "badcsv", per_class=1, corrupt=False)
    (bad / "sequences.csv").write_text("name,kind\nx,T1\n")
    from core.external import read_sequences

    with pytest.raises(DatasetError, match="'file' and 'sequence'"):
        read_sequences(bad)


def test_unknown_class_or_no_readable_image_writes_no_entry(registry, model, tmp_path):
    run = registry.get("tiny")
    odd = make_external(tmp_path / "odd", classes=("glioma", "lymphoma"), per_class=1, corrupt=False)
    with pytest.raises(DatasetError, match="lymphoma"):
        evaluate_external(run, odd)
    junk = make_external(tmp_path / "junk", per_class=0)  # only the corrupt file
    with pytest.raises(DatasetError, match="none of the 1 files .* is a readable image"):
        evaluate_external(run, junk, model=model)
    assert external_entries(run) == []


def test_reevaluation_replaces_the_entry(registry, model, tmp_path):
    run = registry.get("tiny")
    root = make_external(tmp_path / "radio", corrupt=False)
    first = evaluate_external(run, root, model=model)
    for path in (root / "notumor").iterdir():  # the set changes between evaluations
        path.unlink()
    (root / "notumor").rmdir()
    second = evaluate_external(run, root, model=model)
    assert first["slug"] == second["slug"]
    assert (first["n"], second["n"]) == (15, 10)
    assert first["fingerprint"]["sha256"] != second["fingerprint"]["sha256"]
    assert [e["n"] for e in external_entries(run)] == [10]
    assert len(entry_predictions(run, second["slug"])) == 10
    assert sorted(p.name for p in run.file("external").iterdir()) == [second["slug"]]  # no staging left


def test_cli_evaluate_with_data(registry, tmp_path):
    root = make_external(tmp_path / "radio")
    result = run_cli("evaluate", "tiny", "--data", str(root), models=registry.root)
    assert result.returncode == 0, result.stderr[-3000:]
    (m,) = external_entries(registry.get("tiny"))
    out = result.stdout
    assert f"accuracy {format_interval(m['accuracy'], m['intervals']['accuracy'])}" in out
    macro = format_interval(m["macro_f1"], m["intervals"]["macro_f1"], percent=False)
    assert f"macro F1 {macro}" in out
    glioma = format_interval(
        m["per_class"]["glioma"]["recall"], m["intervals"]["per_class"]["glioma"]["recall"]
    )
    assert f"glioma       recall {glioma}" in out
    for name, group in m["sequences"]["groups"].items():
        assert f"sequence {name}" in out and f"n={group['n']}" in out
    assert "no images of pituitary" in out and "1 unreadable file(s)" in out
    assert f"written to {registry.get('tiny').file('external') / m['slug']}" in out
    assert not registry.get("tiny").file("tta.json").exists()

    odd = make_external(tmp_path / "odd", classes=("glioma", "lymphoma"), per_class=1, corrupt=False)
    result = run_cli("evaluate", "tiny", "--data", str(odd), models=registry.root)
    assert result.returncode == 2 and "lymphoma" in result.stderr
    result = run_cli("evaluate", "tiny", "--data", str(root), "--tta", models=registry.root)
    assert result.returncode == 2 and "--tta" in result.stderr


@pytest.fixture
def app_env(tmp_path, monkeypatch, dataset, registry):
    area = tmp_path / "area"
    area.mkdir()
    monkeypatch.setenv("BTMRI_DATA", str(dataset))
    monkeypatch.setenv("BTMRI_MODELS", str(registry.root))
    monkeypatch.setenv("BTMRI_DATA_ROOTS", os.pathsep.join([str(dataset.parent), str(area)]))
    return registry, area


def by_label(widgets, label):
    matches = [w for w in widgets if w.label == label]
    assert matches, f"no widget labelled {label!r}"
    return matches[0]


def submit(at: AppTest, folder: Path) -> AppTest:
    by_label(at.text_input, "Folder of the other dataset").set_value(str(folder))
    by_label(at.button, "Evaluate on this dataset").click().run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def test_results_page_beyond_this_dataset(app_env, tmp_path):
    registry, area = app_env
    run = registry.get("tiny")
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=TIMEOUT).run()
    at.switch_page("app_pages/results.py").run()
    assert not at.exception, [e.message for e in at.exception]
    assert any(h.value == "Beyond this dataset" for h in at.header)
    caption = " ".join(c.value for c in at.caption)
    assert "not the whole truth" in caption and "1 time in 4 (25%)" in caption
    assert any("No other dataset evaluated" in c.value for c in at.caption)

    outside = make_external(tmp_path / "outside", per_class=1)  # not in the data area
    submit(at, outside)
    assert any("outside the data area" in e.value for e in at.error)
    assert external_entries(run) == []

    submit(at, make_external(area / "radio"))
    (m,) = external_entries(run)
    comparison = next(d.value for d in at.dataframe if "classes with images" in d.value.columns)
    assert list(comparison.index) == ["official Testing", "clean test set", "radio"]
    assert comparison.loc["radio", "accuracy (95% interval)"] == format_interval(
        m["accuracy"], m["intervals"]["accuracy"]
    )
    assert comparison.loc["radio", "images"] == "15"
    recall = next(d.value for d in at.dataframe if "recall here" in d.value.columns)
    assert recall.loc["pituitary", "recall here"] == "–"
    assert recall.loc["notumor", "recall here"] == format_interval(
        m["per_class"]["notumor"]["recall"], m["intervals"]["per_class"]["notumor"]["recall"]
    )
    sequences = next(d.value for d in at.dataframe if "recall glioma" in d.value.columns)
    assert list(sequences.index) == sorted(SEQUENCES)
    assert [int(n) for n in sequences["images"]] == [
        m["sequences"]["groups"][s]["n"] for s in sorted(SEQUENCES)
    ]
    assert len(at.get("plotly_chart")) >= 2  # the official confusion matrix and this set's
    assert any("broken.jpg" in w.value for w in at.warning)

    submit(at, area / "radio")  # again: the entry is replaced, not doubled
    assert len(external_entries(run)) == 1
    comparison = next(d.value for d in at.dataframe if "classes with images" in d.value.columns)
    assert list(comparison.index) == ["official Testing", "clean test set", "radio"]
