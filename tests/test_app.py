"""The Streamlit app, run for real with AppTest on generated data and a tiny trained run."""

from __future__ import annotations

import gc
import json
import shutil
import sys
import time

import numpy as np
import plotly.io
from conftest import ROOT
from datagen import jpeg_bytes, slice_image
from dicomgen import PATIENT_ID, PATIENT_NAME, mixed_zip, scan_bytes, volume
from streamlit.testing.v1 import AppTest

from core.config import FLAG_BELOW
from core.registry import Registry, wait_for
from core.serving.console import ANSWER_LOG, answers

TIMEOUT = 180  # TensorFlow imports and model loads take seconds on a 2-core machine


def start(page: str | None = None) -> AppTest:
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=TIMEOUT).run()
    if page:
        at.switch_page(page).run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def by_label(widgets, label):
    matches = [w for w in widgets if w.label == label]
    assert matches, f"no widget labelled {label!r}"
    return matches[0]


def test_navigation_and_sidebar(app_env):
    registry, run_id = app_env
    at = start()
    assert at.title[0].value == "Dataset"
    assert at.sidebar.text_input[0].label == "Dataset folder"
    assert "54 Training · 16 Testing" in " ".join(c.value for c in at.sidebar.caption)
    assert at.sidebar.selectbox[0].value == run_id
    assert by_label(at.sidebar.metric, "Test accuracy").value.endswith("%")
    low, _ = registry.get(run_id).metrics["intervals"]["accuracy"]
    assert any(c.value.startswith(f"95% interval {100 * low:.1f}%") for c in at.sidebar.caption)
    for page, title in [
        ("app_pages/train.py", "Train"),
        ("app_pages/results.py", "Results"),
        ("app_pages/classify.py", "Classify"),
    ]:
        at.switch_page(page).run()
        assert not at.exception, [e.message for e in at.exception]
        assert at.title[0].value == title


def test_missing_or_outside_dataset_folder_is_explained(app_env, dataset, tmp_path):
    # AppTest drops the sidebar from reruns under st.navigation, so the folder is set
    # before the first run (the browser test types into the real sidebar).
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=TIMEOUT)
    at.session_state["data_dir"] = str(dataset.parent / "nowhere")
    at.run()
    assert any("dataset folder not found" in e.value for e in at.sidebar.error)
    assert any("Training/<class>" in c.value for c in at.sidebar.caption)
    assert any("Pick a dataset folder" in w.value for w in at.warning)
    # A real dataset outside the data area (BTMRI_DATA's parent here) is not read.
    outside = tmp_path / "copy"
    shutil.copytree(dataset, outside)
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=TIMEOUT)
    at.session_state["data_dir"] = str(outside)
    at.run()
    assert any("outside the data area" in e.value for e in at.sidebar.error)


def test_dataset_page_figures(app_env):
    at = start()
    figure = at.get("plotly_chart")[0].proto.spec
    # grouped bars per split with the counts of the generated data (Testing: 4 a class)
    assert '"Testing"' in figure and '"validation"' in figure
    # the active run's own split, as its data.json recorded it
    registry, run_id = app_env
    data = registry.get(run_id).read("data.json")
    assert any(
        f"The split of the active run `{run_id}`" in c.value and "grouped" in c.value for c in at.caption
    )
    (bars,) = [t for t in plotly.io.from_json(figure).data if t.name == "validation"]
    assert [int(t.split(" ")[0]) for t in bars.text] == list(data["counts"]["validation"].values())
    # default: 4 samples per class; an unreadable sample is shown as an error instead
    broken = [e for e in at.error if "corrupt.jpg" in e.value]
    assert len(at.image) + len(broken) == 4 * 4
    frames = [d.value for d in at.dataframe]
    (modes,) = [f for f in frames if "RGB" in f.columns]
    assert set(modes.index) == {"glioma", "meningioma", "notumor", "pituitary"}
    assert {"L", "RGB"} <= set(modes.columns)
    (formats,) = [f for f in frames if any(" as " in str(c) for c in f.columns)]
    assert "PNG as .jpg" in formats.columns  # the PNG named .jpg is exposed
    # The audit: no leakage in the generated data, and the awkward copies of one image
    # (PNG named .jpg, gray, RGBA, palette, 16-bit) form one group in Training.
    assert by_label(at.metric, "Testing images with a copy in Training").value == "0"
    (stored,) = (registry.cache_dir / "shortcut").glob("*.json")  # what the page computed
    cv = json.loads(stored.read_text())["cross_validated"]
    assert by_label(at.metric, "Without looking at the brain").value.startswith(
        f"{100 * cv['accuracy']:.1f}%"
    )
    assert any("What a model gets without looking at the brain" in m.value for m in at.markdown)
    assert by_label(at.metric, "Clean test set").value == "16 of 16"
    assert int(by_label(at.metric, "Redundant images in Training").value) == 4
    by_label(at.radio, "Show").set_value("all copy groups").run()
    assert any("identical bytes" in c.value or "r128" in c.value for c in at.caption)
    assert len(at.image) == 16 - len(broken) + 5  # the same gallery + the group of 5 copies
    by_label(at.button, "Reshuffle").click().run()
    assert not at.exception


def test_results_page_shows_the_run_metrics(app_env):
    registry, run_id = app_env
    run = registry.get(run_id)
    metrics = run.metrics
    at = start("app_pages/results.py")
    low, high = metrics["intervals"]["accuracy"]
    assert by_label(at.metric, "Test accuracy").value == f"{100 * metrics['accuracy']:.1f}%"
    captions = [c.value for c in at.caption]
    assert f"95% interval {100 * low:.1f}% to {100 * high:.1f}%" in captions  # under the figure
    assert by_label(at.metric, "Test images").value == str(metrics["n"])
    clean_low, clean_high = metrics["clean"]["intervals"]["accuracy"]
    assert f"95% interval {100 * clean_low:.1f}% to {100 * clean_high:.1f}%" in captions
    comparison = at.dataframe[0].value
    assert list(comparison.index) == ["official Testing", "clean test set"]
    table = at.dataframe[1].value
    assert list(table.index) == metrics["classes"]
    assert table.loc["glioma", "support"] == metrics["per_class"]["glioma"]["support"]
    recall_low, recall_high = metrics["intervals"]["per_class"]["glioma"]["recall"]
    assert table.loc["glioma", "recall"].endswith(f"({recall_low:.3f}-{recall_high:.3f})")
    assert any("95% intervals" in c.value for c in at.caption)
    spec = at.get("plotly_chart")[0].proto.spec
    assert '"heatmap"' in spec and "% of true" in spec
    labels = [t.label for t in at.tabs]
    assert {
        "Confusion matrix",
        "Curves",
        "Calibration",
        "Images",
        "Export",
        "Most confidently wrong",
        "Right but least sure",
    } == set(labels)
    specs = " ".join(c.proto.spec for c in at.get("plotly_chart"))
    assert "ROC, one vs rest" in specs and "Precision-recall" in specs and "perfect" in specs
    wrong = sum(r["correct"] == "0" for r in run.predictions())
    assert any(f"{wrong} image(s), misclassified" in c.value for c in at.caption)
    assert len(at.get("download_button")) == 5  # metrics, mistakes, report, model card twice
    kept, epochs = run.read("meta.json")["kept_epoch"], len(run.history)
    assert any(f"weights of epoch {kept} of {epochs}: the last" in c.value for c in at.caption)
    assert '"text":"model"' in specs.replace(" ", "")  # the kept epoch marked on the curves


def test_results_cell_browser_calibration_and_clean_switch(app_env):
    registry, run_id = app_env
    run = registry.get(run_id)
    matrix = run.metrics["confusion_matrix"]
    classes = run.classes
    t, p = max(((i, j) for i in range(4) for j in range(4)), key=lambda c: matrix[c[0]][c[1]])
    at = start("app_pages/results.py")
    assert run.file("calibration.json").is_file()
    assert by_label(at.metric, "ECE after temperature scaling").value
    by_label(at.selectbox, "True class").set_value(classes[t])
    by_label(at.selectbox, "Predicted class").set_value(classes[p]).run()
    assert not at.exception, [e.message for e in at.exception]
    count = matrix[t][p]
    assert any(f"{count} image(s), true {classes[t]}, predicted {classes[p]}" in c.value for c in at.caption)
    by_label(at.toggle, "Saliency overlays").set_value(True).run()
    assert not at.exception, [e.message for e in at.exception]
    by_label(at.radio, "Figures below for").set_value("clean test set").run()
    assert not at.exception
    clean_n = run.metrics["clean"]["n"]
    assert at.dataframe[1].value["support"].sum() == clean_n


def test_deleting_a_run_that_another_session_is_viewing(app_env):
    registry, run_id = app_env
    shutil.copytree(registry.root / run_id, registry.root / "second")
    viewer = start("app_pages/results.py")
    by_label(viewer.selectbox, "Run").set_value("second").run()
    deleter = start("app_pages/results.py")
    by_label(deleter.selectbox, "Run").set_value("second").run()
    assert by_label(deleter.button, "Delete run").disabled  # not before confirming
    by_label(deleter.checkbox, "Yes, delete run second").check().run()
    by_label(deleter.button, "Delete run").click().run()
    assert not deleter.exception, [e.message for e in deleter.exception]
    assert [r.id for r in registry.list()] == [run_id]
    viewer.run()  # the viewer's next interaction
    assert not viewer.exception, [e.message for e in viewer.exception]
    assert by_label(viewer.selectbox, "Run").value == run_id
    # The last run deleted: every page says there is none instead of failing.
    by_label(viewer.checkbox, f"Yes, delete run {run_id}").check().run()
    by_label(viewer.button, "Delete run").click().run()
    assert any("No trained run yet" in i.value for i in viewer.info)
    for page in ("app_pages/classify.py", "app_pages/compare.py"):
        viewer.switch_page(page).run()
        assert not viewer.exception, [e.message for e in viewer.exception]


def test_compare_page_shows_differences(app_env):
    registry, run_id = app_env
    twin = registry.root / "tiny-twin"
    shutil.copytree(registry.root / run_id, twin)
    config = json.loads((twin / "config.json").read_text())
    config["finetune_lr"] = 0.5
    (twin / "config.json").write_text(json.dumps(config))
    rows = (twin / "predictions.csv").read_text().splitlines()
    header = rows[0].split(",")
    first = rows[1].split(",")  # make the twin right (or wrong) where the original is not
    first[header.index("correct")] = "1" if first[header.index("correct")] == "0" else "0"
    probs = [i for i, h in enumerate(header) if h.startswith("p_")]
    true = header.index("p_" + first[header.index("true")])
    for i in probs:
        first[i] = "0.970000" if (i == true) == (first[header.index("correct")] == "1") else "0.010000"
    rows[1] = ",".join(first)
    (twin / "predictions.csv").write_text("\n".join(rows) + "\n")
    at = start("app_pages/compare.py")
    assert at.title[0].value == "Compare runs"
    by_label(at.multiselect, "Runs").set_value([run_id, "tiny-twin"]).run()
    assert not at.exception, [e.message for e in at.exception]
    diff = at.dataframe[0].value
    assert "finetune_lr" in diff.index
    figures = at.dataframe[1].value
    low, high = registry.get(run_id).metrics["intervals"]["accuracy"]
    assert figures.loc[run_id, "accuracy"].endswith(f"({100 * low:.1f}-{100 * high:.1f})")
    assert len(at.get("plotly_chart")) == 2
    counts = [m.value for m in at.markdown if "right only in" in m.value]
    assert sorted(c.split("**")[1] for c in counts) == ["0", "1"]
    (paired,) = [d.value for d in at.dataframe if "verdict" in d.value.columns]
    official = paired.loc["official Testing"]
    assert official["verdict"] == "no detectable difference"  # one image of 16 is within the noise
    assert official[f"right only in {run_id}"] + official["right only in tiny-twin"] == 1
    assert float(official["McNemar p"]) == 1.0


def test_classify_upload_gives_prediction_overlay_and_errors(app_env, capsys):
    at = start("app_pages/classify.py")
    assert "Not a diagnostic device" in at.warning[0].value
    assert "20 MB" in at.caption[0].value
    scan = jpeg_bytes(slice_image(3, np.random.default_rng(5), size=90))
    at.get("file_uploader")[0].set_value(
        [
            ("scan.jpg", scan, "image/jpeg"),
            ("notes.png", b"just text", "image/png"),
        ]
    ).run()
    assert not at.exception, [e.message for e in at.exception]
    assert any("scan.jpg" in m.value and "prediction:" in m.value for m in at.markdown)
    assert any("notes.png" in e.value and "not a readable image" in e.value for e in at.error)
    assert len(at.image) == 2  # the model's view and the overlay
    assert any("Grad-CAM" in str(i.proto) for i in at.image)
    # The server's console gets one line per answered scan (class_bench times the server by
    # it), naming neither the file nor the answer.
    console = capsys.readouterr().err
    lines = [line for line in console.splitlines() if ANSWER_LOG in line]
    assert len(lines) == 1 and "scan.jpg" not in lines[0], lines
    assert not any(c in lines[0] for c in ("glioma", "meningioma", "notumor", "pituitary"))
    [(moment, seconds)] = answers(console)  # as the class bench reads it
    assert abs(moment - time.time()) < TIMEOUT and 0 < seconds < TIMEOUT
    by_label(at.selectbox, "Saliency method").set_value("Grad-CAM++").run()
    assert not at.exception and len(at.image) == 2


def test_classify_dicom_offers_frames_and_window_and_hides_the_patient(app_env):
    at = start("app_pages/classify.py")
    at.get("file_uploader")[0].set_value([("volume.dcm", volume(), "application/dicom")]).run()
    assert not at.exception, [e.message for e in at.exception]
    assert by_label(at.slider, "Frame of volume.dcm").max == 3
    assert by_label(at.number_input, "Window centre").value == 2000
    assert by_label(at.number_input, "Window width").value == 4000
    first = str(at.image[0].proto)
    by_label(at.slider, "Frame of volume.dcm").set_value(3).run()
    third = str(at.image[0].proto)
    by_label(at.number_input, "Window width").set_value(500).run()
    assert len({first, third, str(at.image[0].proto)}) == 3  # each view is a different image
    assert any("volume.dcm" in m.value and "prediction:" in m.value for m in at.markdown)
    assert any("Transfer syntax: Explicit VR Little Endian" in c.value for c in at.caption)
    assert at.get("download_button")[0].label.startswith("Report")
    shown = " ".join(str(e.proto) for e in at.main)
    assert PATIENT_NAME not in shown and PATIENT_ID not in shown


def test_classify_batch_tab_tables_a_zip_and_a_server_folder(app_env, dataset):
    at = start("app_pages/classify.py")
    at.get("file_uploader")[1].set_value([("cases.zip", mixed_zip(), "application/zip")]).run()
    assert not at.exception, [e.message for e in at.exception]
    table = at.dataframe[0].value
    assert len(table) == 8 and table["error"].astype(bool).sum() == 3
    assert any("**8** slices from 6 files" in m.value for m in at.markdown)
    assert any(b.label == "Download CSV" for b in at.get("download_button"))
    # Selecting rows shows their overlays (an unreadable row says why instead).
    at.session_state["batch-table"] = {"selection": {"rows": [0, 5], "columns": [], "cells": []}}
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    assert any("case1/scan.jpg" in str(i.proto) for i in at.image)
    assert any("case2/notes.txt" in e.value for e in at.error)
    # A folder outside the data area is refused; one inside is read.
    by_label(at.text_input, "…or a folder on the server (inside the data area)").set_value("/etc").run()
    assert any("outside the data area" in e.value for e in at.error)
    cases = dataset.parent / "cases"
    cases.mkdir(exist_ok=True)
    (cases / "a.jpg").write_bytes(scan_bytes(1, 9))
    by_label(at.text_input, "…or a folder on the server (inside the data area)").set_value(str(cases)).run()
    assert not at.exception, [e.message for e in at.exception]
    assert len(at.dataframe[0].value) == 9
    assert by_label(at.slider, "Flag when the top probability is below").value == FLAG_BELOW


def test_classify_with_tta_and_an_ensemble_side_by_side(app_env, dataset):
    registry, run_id = app_env
    shutil.copytree(registry.root / run_id, registry.root / "twin")
    from core.training.ensemble import create_ensemble

    create_ensemble(registry, [run_id, "twin"], run_id="ens")
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=TIMEOUT)
    at.session_state["active_run"] = "ens"
    at.run()
    at.switch_page("app_pages/classify.py").run()
    by_label(at.toggle, "Test-time augmentation").set_value(True).run()
    assert by_label(at.multiselect, "Views").value == ["original", "flip", "rotate+10", "rotate-10"]
    by_label(at.toggle, "Members' maps side by side").set_value(True).run()
    scan = jpeg_bytes(slice_image(3, np.random.default_rng(5), size=90))
    at.get("file_uploader")[0].set_value([("scan.jpg", scan, "image/jpeg")]).run()
    assert not at.exception, [e.message for e in at.exception]
    assert any("TTA over 4 views" in m.value for m in at.markdown)
    captions = [str(i.proto) for i in at.image]
    assert len(captions) == 3  # the scan and one overlay per member
    assert any("member_0" in c for c in captions) and any("member_1" in c for c in captions)
    assert all("with TTA" in c for c in captions[1:])


def test_classify_warns_exactly_when_core_finds_the_scan_unusual(app_env, dataset):
    import io

    import pydicom.data
    from PIL import Image

    from core.model.ood import WARNING
    from core.serving.inference import Classifier

    registry, run_id = app_env
    run = registry.get(run_id)
    noise = io.BytesIO()
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (90, 90, 3), dtype=np.uint8)).save(noise, "PNG")
    trained_on = next(f for f in run.read("data.json")["files"]["train"] if f.endswith("-000.jpg"))
    uploads = {"noise.png": noise.getvalue(), "seen.jpg": (dataset / trained_on).read_bytes()}
    classifier = Classifier(run)
    verdict = {n: bool(classifier.outputs(classifier.prepare(d)).unusual[0]) for n, d in uploads.items()}
    assert verdict == {"noise.png": True, "seen.jpg": False}  # the premise: both cases occur
    threshold = f"threshold {classifier.ood.threshold:,.1f}"
    at = start("app_pages/classify.py")
    for name, data in uploads.items():
        at.get("file_uploader")[0].set_value([(name, data, "image/png")]).run()
        assert not at.exception, [e.message for e in at.exception]
        warnings = [w.value for w in at.warning if WARNING in w.value]
        assert len(warnings) == verdict[name], name
        if verdict[name]:
            assert threshold in warnings[0]
            assert any(m.value.startswith(f":gray[{name} — prediction:") for m in at.markdown)
        else:
            assert any(f"**{name}** — prediction:" in m.value for m in at.markdown)
            assert any("Out-of-distribution score" in c.value and threshold in c.value for c in at.caption)
    # A DICOM that says it is a CT is named as such.
    with open(pydicom.data.get_testdata_file("CT_small.dcm"), "rb") as handle:
        ct = handle.read()
    at.get("file_uploader")[0].set_value([("ct.dcm", ct, "application/dicom")]).run()
    assert any(WARNING in w.value and "Modality is CT, not MR" in w.value for w in at.warning)
    # The batch table carries the score and the flag.
    at.get("file_uploader")[1].set_value([(n, d, "image/png") for n, d in uploads.items()]).run()
    table = at.dataframe[0].value.set_index("file")
    assert table["unusual"].to_dict() == verdict and (table["ood_score"] > 0).all()
    # Without the fitted files the page still classifies and says the check is unavailable.
    for name in ("ood.npz", "ood.json"):
        run.file(name).unlink()
    at.get("file_uploader")[0].set_value([("noise.png", uploads["noise.png"], "image/png")]).run()
    assert not at.exception, [e.message for e in at.exception]
    assert not [w for w in at.warning if WARNING in w.value]
    assert any("**noise.png** — prediction:" in m.value for m in at.markdown)
    note = f"check unavailable for this run: python -m core evaluate {run_id}"
    assert any(note in c.value for c in at.caption)


def test_results_and_compare_show_tta_and_make_an_ensemble(app_env):
    registry, run_id = app_env
    run = registry.get(run_id)
    tta = dict(run.metrics, views=["original", "flip"])
    run.write("tta.json", tta)
    shutil.copytree(registry.root / run_id, registry.root / "twin")
    at = start("app_pages/results.py")
    frame = at.dataframe[0].value
    assert "official Testing, TTA (original, flip)" in frame.index
    at.switch_page("app_pages/compare.py").run()
    assert "TTA accuracy" in at.dataframe[0].value.columns
    by_label(at.number_input, f"Weight of {run_id}").set_value(3.0)
    by_label(at.button, "Create ensemble").click().run()
    assert not at.exception, [e.message for e in at.exception]
    (message,) = [s.value for s in at.success]
    ensemble_id = message.split("`")[1]
    ensemble = registry.get(ensemble_id)
    assert wait_for(lambda: ensemble.state == "completed", timeout=600), ensemble.status
    weights = dict(zip(ensemble.config["members"], ensemble.config["member_weights"]))
    assert weights == {run_id: 0.75, "twin": 0.25}
    at.switch_page("app_pages/results.py").run()
    by_label(at.selectbox, "Run").set_value(ensemble_id).run()
    assert any("Ensemble of" in c.value for c in at.caption)


def test_train_page_refuses_a_bad_combination_before_launching(app_env):
    registry, _ = app_env
    before = [r.id for r in registry.list()]
    at = start("app_pages/train.py")
    by_label(at.selectbox, "Devices").set_value("mirrored")
    at.button(key="start").click().run()
    assert any("activation cache runs on one device" in e.value for e in at.error)
    assert [r.id for r in registry.list()] == before


def test_train_page_shows_and_clears_the_activation_cache(app_env):
    registry, run_id = app_env
    (folder,) = [p for p in registry.cache_dir.iterdir() if p.name != "audit"]
    at = start("app_pages/train.py")
    (table,) = at.dataframe
    assert table.value["folder"].tolist() == [folder.name]
    assert "cut at mixed8" in table.value["holds"][0]
    at = by_label(at.button, "Clear the activation cache").click().run()
    assert not at.exception, [e.message for e in at.exception]
    assert not folder.exists() and registry.get(run_id).model_path.is_file()
    assert any("Empty" in c.value for c in at.caption)


def test_train_page_launches_follows_and_stops_a_run(tmp_path, monkeypatch, dataset):
    registry = Registry(tmp_path / "fresh-models")
    monkeypatch.setenv("BTMRI_DATA", str(dataset))
    monkeypatch.setenv("BTMRI_MODELS", str(registry.root))
    at = start("app_pages/train.py")
    by_label(at.selectbox, "Pre-trained weights").set_value("none")
    assert by_label(at.number_input, "Input size (px)").value is None  # the arithmetic's size
    by_label(at.number_input, "Input size (px)").set_value(75)
    by_label(at.number_input, "Batch size").set_value(4)
    by_label(at.number_input, "Head epochs (frozen backbone)").set_value(8)
    by_label(at.number_input, "Early-stopping patience").set_value(20)
    by_label(at.number_input, "Label smoothing").set_value(0.1)
    by_label(at.checkbox, "Drop duplicates in Training").check()
    by_label(at.selectbox, "Arithmetic").set_value("mixed_bfloat16")
    by_label(at.selectbox, "Model kept").set_value("best")
    at.button(key="start").click().run()
    assert not at.exception, [e.message for e in at.exception]
    (run,) = registry.list()
    assert run.config["input_size"] == 75 and run.config["head_epochs"] == 8
    assert run.config["label_smoothing"] == 0.1 and run.config["drop_duplicates"] is True
    assert run.config["precision"] == "mixed_bfloat16" and run.config["keep"] == "best"
    assert any(run.id in i.value for i in at.info)
    # A second session sees the running training and is refused a second one.
    other = start("app_pages/train.py")
    other.button(key="start").click().run()
    assert any(f"already running: {run.id}" in e.value for e in other.error)
    assert wait_for(lambda: len(run.history) >= 1, timeout=300), run.log_tail()
    at.run()
    assert any("epoch" in str(p.proto) for p in at.get("progress"))
    by_label(at.button, "Stop training").click().run()
    assert wait_for(lambda: run.state == "stopped", timeout=120), run.status
    at.run()
    assert any("Stopped" in w.value for w in at.warning)
    assert run.model_path.is_file()


def test_tensorflow_is_kept_out_of_each_reruns_garbage_collection(app_env):
    # Streamlit runs a full gc.collect() after every rerun once Keras is loaded; the app
    # moves TensorFlow's long-lived objects out of its reach when the Classify page loads it.
    from app_pages.shared import settle_tensorflow

    settle_tensorflow.clear()
    gc.unfreeze()
    try:
        start("app_pages/classify.py")
        assert "tensorflow" in sys.modules
        assert gc.get_freeze_count() > 100_000  # TensorFlow alone tracks ~320,000 objects
    finally:
        gc.unfreeze()  # the test process shares the collector with later tests
