"""The line the server prints for each scan it answers.

A teacher reads the room's load from these lines, and bench/class_bench.py times the
server apart from the browsers with them. A line names neither the file nor the answer:
uploads are not recorded.
"""

from __future__ import annotations

import sys
from datetime import datetime

ANSWER_LOG = "classify: a scan answered"


def log_answer(seconds: float) -> None:
    """One console line: the local time with its offset, and the seconds the answer took."""
    stamp = datetime.now().astimezone().isoformat(timespec="milliseconds")
    print(f"{stamp} {ANSWER_LOG} in {seconds:.2f} s", file=sys.stderr, flush=True)


def answer_times(log: str) -> list[float]:
    """The moments (epoch seconds) of the answer lines in a server's console output."""
    return sorted(
        datetime.fromisoformat(line.split(" ", 1)[0]).timestamp()
        for line in log.splitlines()
        if ANSWER_LOG in line
    )
