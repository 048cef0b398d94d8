"""Batch classification: folders, zips, multi-frame DICOM, the CSV, and the scan report."""

from __future__ import annotations

import csv
import io
import os
import zipfile

import numpy as np
import pytest
from conftest import run_cli
from datagen import slice_image
from dicomgen import PATIENT_ID, PATIENT_NAME, dicom, mixed_zip, scan_bytes, volume

from core.data.dataset import resolve_inside
from core.errors import PipelineError
from core.explanation.explain import overlay
from core.intervals import format_interval
from core.registry import Registry
from core.serving import batch
from core.serving.inference import Classifier
from core.serving.scan_report import NOT_A_DEVICE, scan_report_html


@pytest.fixture(scope="module")
def classifier(trained):
    models, run_id = trained
    return Classifier(Registry(models).get(run_id))


def test_a_zip_with_good_and_bad_files_gives_one_row_per_slice(classifier):
    sources = batch.zip_sources(mixed_zip())
    assert [name for name, _ in sources] == [
        "case1/scan.jpg",
        "case1/volume.dcm",
        "case2/IM0001",
        "case2/notes.txt",
        "case2/broken.dcm",
        "../../etc/passwd",
    ]
    seen = []
    results = batch.classify(classifier, sources, chunk=2, progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (6, 6)
    names = [r.name for r in results]
    assert names == [
        "case1/scan.jpg",
        "case1/volume.dcm [frame 1/3]",
        "case1/volume.dcm [frame 2/3]",
        "case1/volume.dcm [frame 3/3]",
        "case2/IM0001",
        "case2/notes.txt",
        "case2/broken.dcm",
        "../../etc/passwd",
    ]
    assert [r.error is None for r in results] == [True] * 5 + [False] * 3
    assert "not a readable image" in results[5].error and "DICOM" in results[6].error
    assert "not a readable image" in results[7].error  # an odd name, read from the zip only
    # The frame a row came from is the image the model saw for it.
    image = batch.slice_image(sources, results[3], classifier.input_size, classifier.framing)
    expected = classifier.probabilities(image)[0]
    assert np.allclose(list(results[3].probabilities.values()), expected, atol=1e-5)


def test_the_csv_has_every_row_with_consistent_columns(classifier):
    results = batch.classify(classifier, batch.zip_sources(mixed_zip()))
    text = batch.to_csv(batch.table(results, classifier.classes, flag_below=0.99))
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0]) == [
        "file",
        "predicted",
        "confidence",
        "flagged",
        "ood_score",
        "unusual",
        *[f"p_{c}" for c in classifier.classes],
        "error",
    ]
    assert len(rows) == 8
    for row in rows:
        if row["error"]:
            assert row["predicted"] == "" and row["flagged"] == "True"
            continue
        probs = [float(row[f"p_{c}"]) for c in classifier.classes]
        assert sum(probs) == pytest.approx(1.0, abs=1e-3)
        assert row["predicted"] == classifier.classes[int(np.argmax(probs))]
        assert float(row["confidence"]) == pytest.approx(max(probs))
        assert row["unusual"] in ("True", "False") and float(row["ood_score"]) >= 0
        assert row["flagged"] == str(max(probs) < 0.99 or row["unusual"] == "True")
    assert PATIENT_NAME not in text and PATIENT_ID not in text


def test_zip_limits_and_bad_archives(monkeypatch):
    with pytest.raises(PipelineError, match="not a readable zip"):
        batch.zip_sources(b"PK\x03\x04 not really")
    monkeypatch.setattr(batch, "MAX_ZIP_MEMBERS", 3)
    with pytest.raises(PipelineError, match="the limit is 3"):
        batch.zip_sources(mixed_zip())
    monkeypatch.setattr(batch, "MAX_ZIP_MEMBERS", 5000)
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("zeros.png", bytes(50_000_000))
    monkeypatch.setattr(batch, "MAX_ZIP_BYTES", 10_000_000)
    assert len(bomb.getvalue()) < 100_000
    with pytest.raises(PipelineError, match="expands to"):
        batch.zip_sources(bomb.getvalue())


def test_folder_sources_skip_hidden_files_and_links_out(tmp_path):
    folder = tmp_path / "cases"
    (folder / "a").mkdir(parents=True)
    (folder / "a" / "scan.jpg").write_bytes(scan_bytes(1, 3))
    (folder / ".hidden.jpg").write_bytes(b"x")
    secret = tmp_path / "secret.txt"
    secret.write_text("outside")
    os.symlink(secret, folder / "a" / "link.jpg")
    assert [name for name, _ in batch.folder_sources(folder)] == ["a/scan.jpg"]
    with pytest.raises(PipelineError, match="not a folder"):
        batch.folder_sources(tmp_path / "missing")


def test_typed_paths_must_stay_in_the_data_area(tmp_path):
    area = tmp_path / "data"
    (area / "set").mkdir(parents=True)
    os.symlink(tmp_path, area / "escape")
    assert resolve_inside(str(area / "set"), [area]) == (area / "set").resolve()
    for bad in (str(area / ".." / ".."), "/etc", str(area / "escape")):
        with pytest.raises(PipelineError, match="outside the data area"):
            resolve_inside(bad, [area])


def test_predict_command_on_a_folder_writes_the_csv(trained, tmp_path):
    models, run_id = trained
    folder = tmp_path / "cases"
    folder.mkdir()
    (folder / "one.jpg").write_bytes(scan_bytes(2, 4))
    (folder / "volume.dcm").write_bytes(volume())
    (folder / "IM0002").write_bytes(dicom(np.asarray(slice_image(3, np.random.default_rng(5), 64), np.uint8)))
    archive = tmp_path / "more.zip"
    archive.write_bytes(mixed_zip())
    out = tmp_path / "out.csv"
    result = run_cli("predict", run_id, str(folder), str(archive), "--csv", str(out), models=models)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 5 + 8
    files = [r["file"] for r in rows]
    assert files[:5] == [
        f"{folder}/IM0002",
        f"{folder}/one.jpg",
        f"{folder}/volume.dcm [frame 1/3]",
        f"{folder}/volume.dcm [frame 2/3]",
        f"{folder}/volume.dcm [frame 3/3]",
    ]
    assert files[5] == f"{archive}:case1/scan.jpg"
    assert sum(bool(r["error"]) for r in rows) == 3
    assert "volume.dcm [frame 2/3]:" in result.stdout
    bad = run_cli(
        "predict", run_id, str(folder), "--csv", str(tmp_path / "no" / "such" / "dir.csv"), models=models
    )
    assert bad.returncode == 2 and "cannot write" in bad.stderr


def test_scan_report_carries_the_run_and_no_patient_data(trained, classifier):
    models, run_id = trained
    run = Registry(models).get(run_id)
    image = batch.slice_image(
        [("x.dcm", volume())], batch.classify(classifier, [("x.dcm", volume())])[1], 75, classifier.framing
    )
    probs = dict(zip(classifier.classes, classifier.probabilities(image)[0].tolist()))
    heat = overlay(image, np.random.default_rng(0).random((75, 75)))
    page = scan_report_html("x.dcm <frame 2>", image, heat, probs, run, "Grad-CAM", calibrated=False)
    label = max(probs, key=probs.get)
    assert NOT_A_DEVICE in page
    assert f"Prediction: {label} ({probs[label]:.1%})" in page
    assert page.count("data:image/png;base64,") == 2
    # The run's figures come with their 95% intervals, as everywhere else.
    accuracy = format_interval(run.metrics["accuracy"], run.metrics["intervals"]["accuracy"])
    assert run_id in page and f"<td>{accuracy}</td>" in page and "(" in accuracy
    assert "x.dcm &lt;frame 2&gt;" in page  # names are escaped, never markup
    for c in classifier.classes:
        assert f"<td>{c}</td><td>{probs[c]:.1%}</td>" in page
    assert PATIENT_NAME not in page and PATIENT_ID not in page


def test_the_forward_pass_is_traced_once_at_load_for_every_batch_size(classifier):
    """Concurrent sessions send batches of any size: none of them pays for a trace."""
    assert classifier._forward.experimental_get_tracing_count() == 1
    size = classifier.input_size
    for n in (1, 3, 7):
        images = np.zeros((n, size, size, 3), np.uint8)
        assert classifier.outputs(images, batch_size=4, activations=True).probabilities.shape[0] == n
    assert classifier._forward.experimental_get_tracing_count() == 1
