"""Benchmark: a class opens the app together, right after the teacher starts it.

    .venv/bin/python bench/class_bench.py --models MODELS [--sessions 30]

Starts the server cold, as `make app` does (bench.common.start_app), with MODELS as the
registry (its newest usable run becomes every session's active run) and the shared
dataset. Then N browser sessions (one headless chromium, one context each: separate
Streamlit sessions) open /classify within a few seconds, each uploads a different real
Testing scan, and each waits for its prediction and its Grad-CAM overlay. Reports the
time until every session has its answer (from the last upload), the answers that are
wrong (the model's error, against the scan's folder) or missing (none within the
timeout), the server's peak resident memory (sampled every 0.2 s) and the CPU time the
server and the browsers spent from the last upload to the last answer.

The browsers run on the same cores as the server, as they would not in a classroom, so
they run at the lowest CPU priority: the server's work comes first, and the browsers' share
of the CPU shows how much of the wait is theirs. The server's side comes from the line it
prints for each scan it answers (core.serving.console): when it sent the last answer, and
the longest page run of one scan. (Pinning the browsers to one core and the server to the
other does not separate the two: the browsers then send their uploads minutes late.)
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import CHROMIUM_FLAGS, DATASET, OUT, machine, start_app  # noqa: E402
from core.data.dataset import scan_dataset  # noqa: E402
from core.serving import console  # noqa: E402


class PeakMemory(threading.Thread):
    """The largest resident set of a process and its children, sampled until stopped."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        import psutil

        self.process, self.peak = psutil.Process(pid), 0
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(0.2):
            try:
                processes = [self.process, *self.process.children(recursive=True)]
                self.peak = max(self.peak, sum(p.memory_info().rss for p in processes))
            except Exception:  # a child that ended between the listing and the reading
                continue

    def stop(self) -> int:
        self._done.set()
        return self.peak


def cpu_seconds(processes) -> float:
    """User and system CPU time of processes that are still alive."""
    total = 0.0
    for p in processes:
        try:
            times = p.cpu_times()
            total += times.user + times.system
        except Exception:  # ended since it was listed
            continue
    return total


def browser_processes() -> list:
    import psutil

    return [p for p in psutil.Process().children(recursive=True) if "chrom" in p.name()]


def lower_priority(processes) -> None:
    """Lowest CPU priority; renderers that chromium forks later inherit it."""
    for p in processes:
        try:
            p.nice(19)
        except Exception:
            continue


def pick_scans(n: int, seed: int) -> list[tuple[Path, str]]:
    """n Testing scans, classes in turn, chosen reproducibly: (path, true class)."""
    index = scan_dataset(DATASET)
    rng = random.Random(seed)
    by_class = {c: [s.path for s in index.testing if index.classes[s.label] == c] for c in index.classes}
    for paths in by_class.values():
        rng.shuffle(paths)
    return [(by_class[c][i // len(by_class)], c) for i, c in zip(range(n), list(by_class) * n)]


def answer_of(text: str, classes: list[str]) -> str | None:
    """The class named first in a prediction's text."""
    found = [(text.find(c), c) for c in classes if c in text]
    return min(found)[1] if found else None


def main() -> int:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", type=Path, default=ROOT / "models", help="registry with a trained run")
    parser.add_argument("--sessions", type=int, default=30)
    parser.add_argument(
        "--timeout", type=float, default=300, help="seconds a session may wait for its answer"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    scans = pick_scans(args.sessions, args.seed)
    classes = sorted({c for _, c in scans} | set(scan_dataset(DATASET).classes))
    env = {**os.environ, "BTMRI_DATA": str(DATASET), "BTMRI_MODELS": str(args.models.resolve())}
    OUT.mkdir(parents=True, exist_ok=True)
    log = OUT / "class_bench_server.log"
    began = time.time()
    server, url, health = start_app(env, log)
    memory = PeakMemory(server.pid)
    memory.start()
    answers: dict[int, str | None] = {}
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_FLAGS)
            lower_priority(browser_processes())
            start = time.monotonic()
            pages = []
            for _ in scans:  # every session opens the page before any has rendered it
                page = browser.new_context(viewport={"width": 1200, "height": 900}).new_page()
                page.goto(f"{url}/classify", wait_until="commit")
                pages.append(page)
            opened = time.monotonic() - start
            for page, (scan, _) in zip(pages, scans):
                uploader = page.locator("[data-testid='stFileUploaderDropzoneInput']").first
                uploader.wait_for(state="attached", timeout=args.timeout * 1000)
                uploader.set_input_files(str(scan))
            last_upload, last_upload_epoch = time.monotonic(), time.time()
            server_processes = [memory.process, *memory.process.children(recursive=True)]
            server_cpu, browsers = cpu_seconds(server_processes), browser_processes()
            browser_cpu = cpu_seconds(browsers)
            ready = last_upload - start
            for i, (page, (scan, _)) in enumerate(zip(pages, scans)):
                left = max(1.0, args.timeout - (time.monotonic() - last_upload))
                try:
                    page.get_by_text("Grad-CAM for").first.wait_for(timeout=left * 1000)
                    answer = page.get_by_text(f"{scan.name} — prediction").first
                    answer.wait_for(timeout=left * 1000)  # a browser at low priority renders late
                    answers[i] = answer_of(answer.inner_text(), classes)
                except PlaywrightTimeout:
                    answers[i] = None
            answered = time.monotonic() - last_upload
            server_cpu = cpu_seconds(server_processes) - server_cpu
            browser_cpu = cpu_seconds(browsers) - browser_cpu
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
        peak = memory.stop()
    logged = [a for a in console.answers(log.read_text(errors="replace")) if a[0] >= began]
    missing = [scans[i][0].name for i, a in answers.items() if a is None]
    wrong = [(scans[i][0].name, scans[i][1], a) for i, a in answers.items() if a and a != scans[i][1]]
    print("=== bench/class_bench.py ===")
    print(f"machine: {machine()}")
    print(f"{args.sessions} sessions; server health check {health:.1f} s after start")
    print(f"all sessions opened within {opened:.1f} s; all uploads sent {ready:.1f} s after the first opened")
    if logged:
        print(
            f"server: {len(logged)} answers sent, the last {logged[-1][0] - last_upload_epoch:.1f} s after "
            f"the last upload; the longest page run of one scan {max(t for _, t in logged):.1f} s"
        )
    print(
        f"browsers: every answer drawn {answered:.1f} s after the last upload (timeout {args.timeout:.0f} s)"
    )
    print(f"CPU after the last upload: server {server_cpu:.1f} s, browsers {browser_cpu:.1f} s")
    print(f"missing answers: {len(missing)} {missing}")
    print(f"wrong answers (the model's errors): {len(wrong)} {wrong}")
    print(f"server peak RSS: {peak / 2**30:.2f} GiB")
    return 0 if not missing else 1


if __name__ == "__main__":
    sys.exit(main())
