"""Scoring a run on a dataset from elsewhere (core.evaluation.external): layouts, refusals, the
per-sequence figures, the most confused images, the CLI and the Results page section."""

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
from core.evaluation.external import (
    LOSO_RECORD,
    entry_interpretation,
    entry_predictions,
    evaluate_external,
    external_entries,
    leave_one_source_out,
    scan_external,
    slug,
)
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


def swap_classes(root: Path, a: str, b: str) -> Path:
    """Swap two class folders of a set made by make_external (sequences.csv follows its
    files): the model's answers on those images then turn mostly wrong."""
    (root / a).rename(root / "swapping")
    (root / b).rename(root / a)
    (root / "swapping").rename(root / b)
    other = {a: b, b: a}
    with (root / "sequences.csv").open(newline="") as handle:
        rows = list(csv.reader(handle))
    for row in rows[1:]:
        name, file = row[0].split("/")
        row[0] = f"{other.get(name, name)}/{file}"
    with (root / "sequences.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    return root


def top_losses(rows: list[dict], k: int = 8) -> list[dict]:
    """The k wrong rows of predictions.csv with the lowest probability of the true class."""
    wrong = [r for r in rows if r["correct"] == "0"]
    return sorted(wrong, key=lambda r: float(r[f"p_{r['true']}"]))[:k]


@pytest.fixture
def registry(tmp_path, trained) -> Registry:
    """A copy of the tiny run's registry: external entries stay out of the shared one."""
    models, _ = trained
    shutil.copytree(models, tmp_path / "models")
    return Registry(tmp_path / "models")


@pytest.fixture(scope="module")
def model(trained):
    from core.model.network import load_model

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
    from core.evaluation.external import read_sequences

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


def test_entry_interpretation_reads_the_entry_against_its_folder(registry, model, tmp_path):
    run = registry.get("tiny")
    root = swap_classes(make_external(tmp_path / "radio", corrupt=False), "glioma", "meningioma")
    m = evaluate_external(run, root, model=model)
    rows = entry_predictions(run, m["slug"])
    review = entry_interpretation(run, m)
    interp = review.interpretation

    assert review.root == root.resolve() and review.folder_problem() is None
    assert interp.files == [r["file"] for r in rows]
    assert all((review.root / f).is_file() for f in interp.files)
    assert [run.classes[i] for i in interp.y_pred] == [r["predicted"] for r in rows]
    with (root / "sequences.csv").open(newline="") as handle:
        sequence = {r["file"]: r["sequence"] for r in csv.DictReader(handle)}
    assert review.sequences == [sequence[f] for f in interp.files]
    # The confused pairs are the entry's off-diagonal confusion cells, largest first.
    matrix = m["confusion_matrix"]
    pairs = interp.most_confused()
    assert sum(count for _, _, count in pairs) == m["n"] - sum(r["correct"] == "1" for r in rows) > 0
    for true, predicted, count in pairs:
        assert count == matrix[run.classes.index(true)][run.classes.index(predicted)]
    assert [count for _, _, count in pairs] == sorted((c for _, _, c in pairs), reverse=True)
    assert [interp.files[i] for i in interp.top_losses(8)] == [r["file"] for r in top_losses(rows)]

    # A moved folder: the predictions still read, the images are said to be gone.
    moved = root.rename(tmp_path / "elsewhere")
    review = entry_interpretation(run, m)
    assert review.interpretation.most_confused() == pairs
    assert str(root.resolve()) in review.folder_problem() and "gone or has moved" in review.folder_problem()
    moved.rename(root)

    # A predictions.csv edited to name a file outside the set is refused.
    csv_path = run.file("external") / m["slug"] / "predictions.csv"
    text = csv_path.read_text()
    csv_path.write_text(text.replace(rows[0]["file"], "../../outside.jpg", 1))
    with pytest.raises(DatasetError, match="outside"):
        entry_interpretation(run, m)
    csv_path.unlink()
    with pytest.raises(DatasetError, match="no predictions.csv"):
        entry_interpretation(run, m)


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


def open_confused(at: AppTest, entry_slug: str):
    """Open an entry's "Most confused images" expander; return it."""
    at.session_state[f"confused-{entry_slug}"] = True
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    return next(e for e in at.expander if e.label == "Most confused images")


def test_results_page_most_confused_external_images(app_env, model):
    registry, area = app_env
    run = registry.get("tiny")
    root = swap_classes(make_external(area / "radio", corrupt=False), "glioma", "meningioma")
    m = evaluate_external(run, root, model=model)
    rows = entry_predictions(run, m["slug"])
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=TIMEOUT).run()
    at.switch_page("app_pages/results.py").run()
    assert not at.exception, [e.message for e in at.exception]
    box = next(e for e in at.expander if e.label == "Most confused images")
    assert not box.image and not box.markdown  # nothing is computed while it is closed

    box = open_confused(at, m["slug"])
    listed = box.markdown[0].value
    matrix = m["confusion_matrix"]
    for t, true in enumerate(run.classes):
        for p, predicted in enumerate(run.classes):
            if t != p and matrix[t][p]:
                assert f"- {true} called {predicted}: {matrix[t][p]}" in listed
    expected = top_losses(rows)
    captions = [c for image in box.image for c in image.captions]
    assert len(captions) == len(expected) > 0
    # The grid fills its columns in turn, so the page lists them column by column.
    assert {c.split(" (")[0] for c in captions} == {
        f"{r['file'].split('/')[-1]}: true {r['true']}, predicted {r['predicted']}" for r in expected
    }
    notes = " ".join(c.value for c in box.caption)
    assert all(f"sequence {row['sequence']}" in notes for row in expected)
    overlays = {url for image in box.image for url in image.value}
    by_label(box.toggle, "Grad-CAM overlays").set_value(False).run()
    box = next(e for e in at.expander if e.label == "Most confused images")
    plain = {url for image in box.image for url in image.value}
    assert len(plain) == len(expected) and not plain & overlays  # each overlay differs from its image

    # The set's folder moved away: the figures and pairs stay, the images are said to be gone.
    root.rename(area / "radio-moved")
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    box = next(e for e in at.expander if e.label == "Most confused images")
    assert any("gone or has moved" in w.value and str(root.resolve()) in w.value for w in box.warning)
    assert not box.image and box.markdown[0].value == listed
    comparison = next(d.value for d in at.dataframe if "classes with images" in d.value.columns)
    assert comparison.loc["radio", "images"] == str(m["n"])


def test_leave_one_source_out_runs_show_beside_the_run_they_match(app_env, model, tmp_path):
    """A run marked by bench/loso.py (loso.json naming its external entry) shows on the
    Results page with its figures on the held-out source, and whether it trained as the
    shown run did (data, seed and subsample aside)."""
    registry, area = app_env
    shutil.copytree(registry.get("tiny").path, registry.root / "loso-same")
    fold = registry.get("loso-same")
    config = fold.config | {"data_dir": str(tmp_path / "fold"), "seed": 7}
    fold.write("config.json", config)
    held = make_external(area / "held", per_class=2)
    m = evaluate_external(fold, held, model=model)
    fold.write(LOSO_RECORD, {"held_out": "SARTAJ", "entry": m["slug"]})
    # Saved before the scanner changes existed: read as off, so still this run's recipe.
    config["augment"] = {k: v for k, v in config["augment"].items() if k != "gamma"}
    fold.write("config.json", config)
    shutil.copytree(fold.path, registry.root / "loso-other")
    registry.get("loso-other").write("config.json", config | {"head_epochs": 99})
    shutil.copytree(fold.path, registry.root / "loso-broken")
    registry.get("loso-broken").write(LOSO_RECORD, {"held_out": "SARTAJ", "entry": "gone"})

    found = leave_one_source_out(registry.list(), like=registry.get("tiny"))
    assert [(f["run"].id, f["same_recipe"]) for f in found] == [("loso-same", True), ("loso-other", False)]
    assert found[0]["entry"]["accuracy"] == m["accuracy"]

    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=TIMEOUT).run()
    at.switch_page("app_pages/results.py").run()
    assert not at.exception, [e.message for e in at.exception]
    table = next(d.value for d in at.dataframe if "held out" in d.value.columns)
    assert list(table.index) == ["loso-same", "loso-other"]
    assert table.loc["loso-same", "recipe"] == "this run's"
    assert table.loc["loso-same", "accuracy (95% interval)"] == format_interval(
        m["accuracy"], m["intervals"]["accuracy"]
    )
    assert table.loc["loso-same", "recall pituitary"] == "–"  # make_external has none
