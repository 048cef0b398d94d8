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


def answers(log: str) -> list[tuple[float, float]]:
    """(moment in epoch seconds, seconds taken) of each answer line in a server's console
    output, in order of time."""
    found = []
    for line in log.splitlines():
        if ANSWER_LOG in line:
            stamp, _, rest = line.partition(" ")
            found.append(
                (datetime.fromisoformat(stamp).timestamp(), float(rest.split(" in ")[-1].split()[0]))
            )
    return sorted(found)
