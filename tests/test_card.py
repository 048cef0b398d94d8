"""The model card: written by the command line from a real tiny run, its figures checked
against the run's own files, and what it says when parts of the run are missing."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, run_cli

from core.data.audit import describe_left_out
from core.evaluation.card import NOT_A_DEVICE, build_card
from core.evaluation.external import external_entries
from core.evaluation.interpret import Interpretation
from core.intervals import format_interval
from core.registry import Registry, Run


@pytest.fixture
def run_copy(tmp_path, trained) -> Run:
    """A copy of the tiny run (model file left out: a card never loads it) that a test may change."""
    models, run_id = trained
    target = tmp_path / "models"
    shutil.copytree(models, target, ignore=shutil.ignore_patterns("*.keras"))
    return Registry(target).get(run_id)


def edit_json(run: Run, name: str, change) -> None:
    data = run.read(name)
    change(data)
    run.write(name, data)


def table_rows(markdown: str, first_header: str, after: str = "") -> list[list[str]]:
    """The body rows of the first Markdown table whose header starts with `first_header`
    (the first one below the line `after`, when given)."""
    lines = markdown.splitlines()
    begin = lines.index(after) if after else 0
    start = next(i for i, line in enumerate(lines) if i > begin and line.startswith(f"| {first_header} |"))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split(" | ")])
    return rows


def test_cli_writes_both_files_into_the_run_folder_and_to_out(run_copy, tmp_path):
    result = run_cli("card", run_copy.id, models=run_copy.path.parent)
    assert result.returncode == 0, result.stderr
    md, page = run_copy.file(f"{run_copy.id}-model-card.md"), run_copy.file(f"{run_copy.id}-model-card.html")
    assert f"model card written to {md}" in result.stdout
    assert md.read_text().startswith(f"# Model card: run {run_copy.id}\n")
    assert page.read_text().startswith("<!doctype html>")
    assert "not available" not in result.stdout  # this run and its dataset supply everything
    out = tmp_path / "cards"
    result = run_cli("card", run_copy.id, "--out", str(out), "--format", "html", models=run_copy.path.parent)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == [f"{run_copy.id}-model-card.html"]


def test_card_figures_are_the_runs_own(run_copy):
    metrics = run_copy.metrics
    md = build_card(run_copy).markdown()
    summary = {row[0]: row for row in table_rows(md, "test set")}
    for name, m in (("official Testing", metrics), ("clean test set", metrics["clean"])):
        ci = m["intervals"]
        assert summary[name] == [
            name,
            str(m["n"]),
            format_interval(m["accuracy"], ci["accuracy"]),
            format_interval(m["macro_f1"], ci["macro_f1"], percent=False),
        ]
    official = {row[0]: row for row in table_rows(md, "class", after="### Per class: official Testing")}
    glioma = metrics["per_class"]["glioma"]
    recall = format_interval(glioma["recall"], metrics["intervals"]["per_class"]["glioma"]["recall"], False)
    assert official["glioma"][2] == recall
    assert official["glioma"][5] == str(glioma["support"])


def test_card_states_use_split_and_calibration(run_copy):
    md = build_card(run_copy).markdown()
    assert NOT_A_DEVICE in md
    assert "research and teaching" in md
    split = run_copy.read("data.json")["split"]
    assert (
        f"Validation: {split['validation_share']:.1%} of the Training pool, drawn with {split['method']}"
        in md
    )
    assert "copy-free, not patient-disjoint" in md
    counts = run_copy.read("data.json")["counts"]
    total = table_rows(md, "class")[-1]
    assert total == ["total", *(str(sum(counts[s].values())) for s in ("train", "validation", "test"))]
    cal = run_copy.read("calibration.json")
    # The errors recorded beside the temperature are the run's real ones: on Testing they
    # are predictions.csv's wrong rows.
    wrong = sum(row["correct"] == "0" for row in run_copy.predictions())
    assert cal["test"]["errors"] == wrong
    n, errors = cal["validation"]["n"], cal["validation"]["errors"]
    assert 0 <= errors <= n
    assert f"fitted on {n} validation images ({errors} of them misclassified" in md
    assert f"T = {cal['temperature']:.3f}" in md


def test_most_confused_pair_is_the_largest_off_diagonal_cell(run_copy):
    cm = np.array(run_copy.metrics["confusion_matrix"])
    classes = run_copy.metrics["classes"]
    off = cm - np.diag(np.diag(cm))
    md = build_card(run_copy).markdown()
    if off.max() == 0:
        assert "No misclassified image on official Testing." in md
        return
    t, p = np.unravel_index(off.argmax(), off.shape)  # the first largest cell, in class order
    first = table_rows(md, "true")[0]
    assert first[:3] == [classes[t], classes[p], str(off[t, p])]
    # Its examples are the images of that cell, most confident first.
    interp = Interpretation.from_rows(run_copy.predictions(), run_copy.classes)
    examples = [interp.files[i] for i in interp.cell(classes[t], classes[p])[:3]]
    line = next(x for x in md.splitlines() if x.startswith(f"- true {classes[t]}, predicted {classes[p]}"))
    assert line.endswith(", ".join(f"`{f}`" for f in examples))


def test_html_embeds_its_thumbnails_and_names_no_external_url(run_copy):
    page = build_card(run_copy).html()
    links = re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', page)
    # Every link is an embedded PNG (base64 can spell "http" by chance, a URL it cannot hold).
    assert all(re.fullmatch(r"data:image/png;base64,[A-Za-z0-9+/]+=*", link) for link in links)
    assert "http" not in re.sub(r"data:image/png;base64,[A-Za-z0-9+/]+=*", "", page)
    interp = Interpretation.from_rows(run_copy.predictions(), run_copy.classes)
    shown = sum(min(3, n) for _, _, n in interp.most_confused())
    assert len(re.findall(r'<img src="data:image/png;base64,', page)) == shown
    assert "<script" not in page and "<link" not in page
    assert html.escape(NOT_A_DEVICE) in page


def test_card_without_calibration_and_dataset_says_what_is_missing(run_copy, tmp_path):
    run_copy.file("calibration.json").unlink()
    gone = str(tmp_path / "moved-away")
    edit_json(run_copy, "config.json", lambda c: c.update(data_dir=gone))
    edit_json(run_copy, "data.json", lambda d: d.update(root=gone))
    shutil.rmtree(run_copy.cache_dir)  # no cached audit to fall back on either
    result = run_cli("card", run_copy.id, "--format", "md", models=run_copy.path.parent)
    assert result.returncode == 0, result.stderr
    assert "not available for this card: dataset audit (dataset not available)" in result.stdout
    assert "calibration (no calibration.json)" in result.stdout
    md = run_copy.file(f"{run_copy.id}-model-card.md").read_text()
    assert f"The dataset is not available here (dataset folder not found: {gone}" in md
    clean = run_copy.metrics["clean"]
    left_out = describe_left_out(clean["left_out"])
    assert f"Clean test set at evaluation: {clean['n']} images ({left_out} left out)" in md
    assert "No temperature fitted: the run has no calibration.json" in md
    assert "Thumbnails left out: the dataset is not available here." in md
    accuracy = run_copy.metrics["accuracy"]
    assert format_interval(accuracy, run_copy.metrics["intervals"]["accuracy"]) in md


def test_older_run_without_intervals_split_or_recorded_errors(run_copy):
    def strip(m: dict) -> None:
        m.pop("intervals")
        m["clean"].pop("intervals")

    edit_json(run_copy, "metrics.json", strip)
    edit_json(run_copy, "data.json", lambda d: d.pop("split"))
    edit_json(run_copy, "calibration.json", lambda c: c["validation"].pop("errors"))
    card = build_card(run_copy)
    md = card.markdown()
    official = {row[0]: row for row in table_rows(md, "test set")}["official Testing"]
    assert official[2] == f"{100 * run_copy.metrics['accuracy']:.1f}% (interval not computed)"
    assert f"interval not computed: run `python -m core evaluate {run_copy.id}`" in md
    assert "Validation was drawn per file" in md
    assert "their errors not recorded" in md
    assert "number of validation errors (not recorded)" in card.gaps


def test_external_figures_appear_in_figures_and_limits(run_copy):
    metrics = run_copy.metrics
    entry = {key: metrics[key] for key in ("n", "accuracy", "macro_f1", "per_class", "intervals")}
    entry |= {"name": "hospital-x", "slug": "hospital-x-0000", "chance": 0.25, "missing_classes": []}
    entry["accuracy"], entry["intervals"]["accuracy"] = 0.5, [0.4, 0.6]
    folder = run_copy.file("external") / entry["slug"]
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps(entry))
    assert external_entries(run_copy) == [entry]
    md = build_card(run_copy).markdown()
    row = {r[0]: r for r in table_rows(md, "test set")}["external: hospital-x"]
    assert row[2] == "50.0% (40.0-60.0)"
    assert "On external sets: hospital-x: accuracy 50.0% (40.0-60.0) against" in md


def test_card_module_needs_no_tensorflow():
    code = "import sys, core.evaluation.card; print(sorted({'tensorflow', 'keras'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_most_confused_hand_made():
    classes = ["a", "b", "c"]
    # true a: 2 right, 1 as b;  true b: 3 as c, 1 as a;  true c: 1 as b, 1 right
    y_true = [0, 0, 0, 1, 1, 1, 1, 2, 2]
    y_pred = [0, 0, 1, 2, 2, 2, 0, 1, 2]
    probs = np.eye(3)[y_pred] * 0.8 + 0.2 / 3
    interp = Interpretation([f"f{i}" for i in range(9)], np.array(y_true), probs, classes)
    assert interp.most_confused() == [("b", "c", 3), ("a", "b", 1), ("b", "a", 1), ("c", "b", 1)]
    assert interp.most_confused(min_count=2) == [("b", "c", 3)]
    assert Interpretation([], np.array([], int), np.zeros((0, 3)), classes).most_confused() == []


def test_card_of_a_run_without_predictions_or_metrics(run_copy):
    run_copy.file("predictions.csv").unlink()
    run_copy.file("metrics.json").unlink()
    card = build_card(run_copy)
    md = card.markdown()
    assert f"No test figures: this run has no metrics.json (`python -m core evaluate {run_copy.id}`" in md
    assert "No predictions.csv" in md
    assert {"test figures (no metrics.json)", "failure modes (no predictions.csv)"} <= set(card.gaps)


def test_the_limits_say_whether_the_run_has_an_out_of_distribution_check(run_copy):
    assert run_copy.file("ood.json").is_file()  # fitted at the end of training
    assert "An out-of-distribution check (the Mahalanobis distance" in build_card(run_copy).markdown()
    run_copy.file("ood.json").unlink()
    assert "No out-of-distribution check is fitted for this run" in build_card(run_copy).markdown()
