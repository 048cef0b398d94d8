"""Progress reports of long command-line work: a bar on a terminal, log lines elsewhere."""

from __future__ import annotations

import io
import json
import time

from core.progress import ProgressLog, TrainingLog, describe_training


def test_off_a_terminal_progress_is_plain_lines_with_an_estimate():
    out = io.StringIO()
    log = ProgressLog("reading", stream=out, interval=0.0, tty=False)
    log(0, 4)
    time.sleep(0.05)
    log(2, 4)
    log(4, 4)
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and "\r" not in out.getvalue()
    assert lines[1].startswith("reading: 2/4 (50%)") and "left" in lines[1]
    assert lines[2].startswith("reading: 4/4 (100%), done in 0:00:00")


def test_off_a_terminal_lines_are_throttled_but_the_end_is_always_said():
    out = io.StringIO()
    log = ProgressLog("reading", stream=out, interval=3600, tty=False)
    for done in range(1, 101):
        log(done, 100)
    assert out.getvalue().splitlines() == [
        out.getvalue().splitlines()[0],
        "reading: 100/100 (100%), done in 0:00:00",
    ]
    assert out.getvalue().startswith("reading: 1/100 (1%)")


def test_on_a_terminal_progress_is_one_redrawn_bar():
    out = io.StringIO()
    log = ProgressLog("reading", stream=out, tty=True)
    for done in range(1, 11):
        log(done, 10)
    text = out.getvalue()
    assert text.count("\r") == 10 and text.count("\n") == 1
    assert "[" + "#" * 30 + "] 10/10" in text


def test_a_training_log_reports_each_new_stage_of_progress_json(tmp_path):
    progress = tmp_path / "progress.json"
    out = io.StringIO()
    log = TrainingLog(progress, stream=out, interval=0.05)
    log.start()
    for state in (
        {"stage": "caching", "batch": 10, "batches": 40},
        {
            "stage": "training",
            "phase": "head",
            "epoch": 1,
            "epochs": 4,
            "batch": 3,
            "batches": 9,
            "eta_s": 75,
        },
    ):
        progress.write_text(json.dumps(state))
        time.sleep(0.4)
    log.stop()
    log.join(2)
    lines = out.getvalue().splitlines()
    assert [line.split("] ", 1)[1] for line in lines] == [
        "caching activations: 10/40 images",
        "training: head epoch 1/4, batch 3/9, about 0:01:15 left",
    ]
    assert describe_training({"stage": "evaluating"}) == "evaluating the kept model on Testing"
