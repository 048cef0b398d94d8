"""The line the server prints for each scan it answers.

A teacher reads the room's load from these lines, and bench/class_bench.py times the
server apart from the browsers with them. A line names neither the file nor the answer:
uploads are not recorded.
"""

from __future__ import annotations

import re
import sys
from datetime import datetime

ANSWER_LOG = "classify: a scan answered"
_LINE = re.compile(r"(\d{4}-\d\d-\d\dT[\d:.]+[+-]\d\d:\d\d) " + ANSWER_LOG + r" in ([\d.]+) s")


def log_answer(seconds: float) -> None:
    """One console line: the local time with its offset, and the seconds the answer took.
    Written in one call: sessions answer from threads of their own, and print's separate
    write of the newline lets two lines run together."""
    stamp = datetime.now().astimezone().isoformat(timespec="milliseconds")
    sys.stderr.write(f"{stamp} {ANSWER_LOG} in {seconds:.2f} s\n")
    sys.stderr.flush()


def answers(log: str) -> list[tuple[float, float]]:
    """(moment in epoch seconds, seconds taken) of each answer in a server's console output,
    in order of time; two answers run together on one line are both read."""
    return sorted(
        (datetime.fromisoformat(stamp).timestamp(), float(seconds)) for stamp, seconds in _LINE.findall(log)
    )
