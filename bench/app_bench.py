"""Benchmark: how responsive the app is on the full shared dataset.

    .venv/bin/python bench/app_bench.py

Starts the real server (models/ as registry), measures the time until its health check
answers, then in headless chromium (Debian's) the time until the Dataset page has
rendered: the first time (scan, headers and audit computed or read from disk) and again
after a reload (served from Streamlit's caches). Then opens Classify, Results and
Dataset again by address (each a page load), and once more through the sidebar's
navigation (a switch within the session, as a user moves between pages), and reports
each page's render time.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import CHROMIUM_FLAGS, DATASET, OUT, machine, start_app  # noqa: E402


def main() -> None:
    from playwright.sync_api import expect, sync_playwright

    env = {**os.environ, "BTMRI_DATA": str(DATASET)}
    OUT.mkdir(parents=True, exist_ok=True)
    server, url, health = start_app(env, OUT / "app_bench_server.log")
    timings = {}
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_FLAGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            expect.set_options(timeout=600_000)

            def rendered(action, marker: str) -> float:
                """Seconds from the action until the marker shows and the script has finished."""
                t = time.monotonic()
                action()
                expect(page.get_by_text(marker).first).to_be_visible()
                page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')")
                return time.monotonic() - t

            def render(path: str, marker: str) -> float:
                return rendered(lambda: page.goto(f"{url}/{path}"), marker)

            def switch(title: str, marker: str) -> float:
                """A click in the sidebar's navigation: the same session, no page reload."""
                link = page.get_by_test_id("stSidebarNav").get_by_role("link", name=title)
                return rendered(link.click, marker)

            timings["dataset, first visit"] = render("", "Image properties by class")
            timings["dataset, reload (cached)"] = render("", "Image properties by class")
            timings["classify"] = render("classify", "MRI slices")
            timings["results"] = render("results", "Figures below for")
            timings["dataset, after other pages"] = render("", "Image properties by class")
            timings["switch to classify (sidebar)"] = switch("Classify", "MRI slices")
            timings["switch to results (sidebar)"] = switch("Results", "Figures below for")
            timings["switch to dataset (sidebar)"] = switch("Dataset", "Image properties by class")
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    print("=== bench/app_bench.py ===")
    print(f"machine: {machine()}")
    print(f"server health check answered {health:.2f} s after start")
    for name, seconds in timings.items():
        print(f"  {name:28s} {seconds:6.2f} s until rendered")


if __name__ == "__main__":
    main()
