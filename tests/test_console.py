"""The server's answer lines: written whole, read back even when two run together."""

from __future__ import annotations

import threading
import time

from core.serving.console import ANSWER_LOG, answers, log_answer


def test_answer_lines_from_many_threads_are_each_read_back(capsys):
    threads = [threading.Thread(target=log_answer, args=(i / 10,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    console = capsys.readouterr().err
    assert console.count(ANSWER_LOG) == 40
    found = answers(console)
    assert sorted(s for _, s in found) == [round(i / 10, 2) for i in range(40)]
    assert all(abs(moment - time.time()) < 60 for moment, _ in found)


def test_two_answers_run_together_on_one_line_are_both_read():
    line = (
        "2026-12-02T03:14:01.250+00:00 classify: a scan answered in 2.10 s"
        "2026-12-02T03:14:01.300+00:00 classify: a scan answered in 3.25 s\n\n"
        "2026-12-02T03:14:00.100+00:00 classify: a scan answered in 1.00 s\nother output\n"
    )
    assert [s for _, s in answers(line)] == [1.0, 2.1, 3.25]  # in order of time
