"""The README's screenshots: each page of the app on the real dataset with a real trained run.

    .venv/bin/python bench/screenshots.py [--models /tmp/exp/models] [--data DATASET] [--out docs/screenshots]

Starts the app as `make app` does (bench.common.start_app) with BTMRI_DATA and BTMRI_MODELS
set, so the sidebar's active run is the registry's newest usable run. Drives Debian's
chromium with Playwright and saves each page cropped to what it shows: Dataset (class
distribution, samples, the copy audit, the shortcut score), Train (the preset choice and
its Start button, never pressed), Results (figures, confusion matrix; top losses with
Grad-CAM; *Beyond this dataset*), Classify (two example scans with their overlays) and
Compare (only when the registry holds two evaluated runs).

A Streamlit page scrolls inside its own container, so the browser's viewport is taller
than any page and each shot is a clip of it. Shots over MAX_BYTES are reduced to 256
colours.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import CHROMIUM_FLAGS, DATASET, OUT, machine, start_app  # noqa: E402
from core.registry import Registry  # noqa: E402

WIDTH = 1400
TALL = 6000  # taller than any page, so nothing scrolls and every element has its place
MAX_BYTES = 300_000
MARGIN = 16
TIMEOUT_MS = 900_000  # the first Dataset visit may compute the shortcut score on 2 busy cores
EXAMPLE_PICKED = "glioma_Te-gl_0074.jpg"  # through "Try an example"
EXAMPLE_UPLOADED = "pituitary_Te-pi_0102.jpg"  # through the uploader


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models", type=Path, default=Path("/tmp/exp/models"), help="registry with a trained run"
    )
    parser.add_argument("--data", type=Path, default=DATASET, help="the dataset folder")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots", help="where the PNGs go")
    return parser.parse_args()


def evaluated_runs(models: Path) -> list[str]:
    """The runs the app can show (saved model, completed or stopped, with metrics), newest first."""
    return [
        r.id
        for r in Registry(models).list()
        if r.model_path.is_file() and r.state in ("completed", "stopped") and r.metrics
    ]


def settle(page) -> None:
    """Wait until the script run has finished (no status widget, no element faded as
    stale), no spinner shows and every image has loaded, then a moment more for plotly."""
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')")
    page.wait_for_function("() => !document.querySelector('[data-stale=\"true\"]')")
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stSpinner\"]')")
    page.wait_for_function(
        "() => [...document.querySelectorAll(\"[data-testid='stImage'] img\")]"
        ".every(img => img.complete && img.naturalWidth > 0)"
    )
    page.wait_for_timeout(2000)


def page_end(page) -> float:
    """The bottom of the page's content (elements and the borders of their containers),
    in viewport pixels."""
    return page.evaluate(
        "() => Math.max(...[...document.querySelectorAll("
        "\"[data-testid='stMainBlockContainer'] [data-testid]\")]"
        ".map(e => e.getBoundingClientRect().bottom))"
    )


def shoot(page, path: Path, top: float, bottom: float, left: float = 0) -> None:
    """Save the viewport's band from top to bottom (from left to the right edge)."""
    top, bottom = max(0, top - MARGIN), min(TALL, bottom + MARGIN)
    png = page.screenshot(clip={"x": left, "y": top, "width": WIDTH - left, "height": bottom - top})
    image = Image.open(io.BytesIO(png))
    if len(png) > MAX_BYTES:  # MRI slices make large PNGs; 256 colours keep them legible
        image = image.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    image.save(path, optimize=True)
    print(
        f"  {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}: {image.width}x{image.height}, "
        f"{path.stat().st_size / 1000:.0f} kB"
    )


def box(locator) -> dict:
    """Where an element lies in the (unscrolled) viewport."""
    locator.wait_for()
    return locator.bounding_box()


def dataset(page, url: str, out: Path) -> None:
    page.goto(url)  # Streamlit serves the default page at the root only
    page.get_by_text("Without looking at the brain", exact=True).wait_for()
    settle(page)
    last = box(page.get_by_text("The properties it leans on most").first)
    shoot(page, out / "dataset.png", 0, last["y"] + last["height"])


def train(page, url: str, out: Path) -> None:
    page.goto(f"{url}/train")
    page.get_by_role("heading", name="New run").wait_for()
    page.get_by_role("heading", name="Activation cache").wait_for()
    settle(page)
    shoot(page, out / "train.png", 0, page_end(page))


def results(page, url: str, out: Path) -> None:
    page.goto(f"{url}/results")
    page.get_by_text("Figures below for").first.wait_for()
    page.locator(".js-plotly-plot").first.wait_for()
    settle(page)
    tabs = box(page.get_by_test_id("stTabs").first)
    shoot(page, out / "results.png", 0, tabs["y"] + tabs["height"])

    beyond = box(page.get_by_role("heading", name="Beyond this dataset"))
    left = box(page.get_by_test_id("stMain"))["x"] + 1  # the main area, without the sidebar's edge
    shoot(page, out / "results-beyond.png", beyond["y"], page_end(page), left)

    page.get_by_role("tab", name="Images").click()
    page.get_by_text("Saliency overlays", exact=True).click()
    page.wait_for_timeout(1500)  # the rerun that draws the overlays has begun
    settle(page)
    top = box(page.get_by_role("heading", name="Top losses"))
    losses = box(page.get_by_test_id("stTabs").nth(1))
    shoot(page, out / "results-losses.png", top["y"], losses["y"] + losses["height"], left)


def classify(page, url: str, out: Path) -> None:
    page.goto(f"{url}/classify")
    page.get_by_text("MRI slices").first.wait_for()
    settle(page)
    page.get_by_test_id("stFileUploaderDropzoneInput").first.set_input_files(
        str(ROOT / "examples" / EXAMPLE_UPLOADED)
    )
    page.get_by_text(f"{EXAMPLE_UPLOADED} — prediction:").wait_for()
    settle(page)
    page.get_by_test_id("stSelectbox").filter(has_text="Try an example").click()
    original = EXAMPLE_PICKED.split("_", 1)
    page.get_by_role("option", name=f"{original[1]} ({original[0]})").click()
    page.get_by_text(f"{EXAMPLE_PICKED} — prediction:").wait_for()
    settle(page)
    shoot(page, out / "classify.png", 0, page_end(page))


def compare(page, url: str, out: Path) -> None:
    page.goto(f"{url}/compare")
    page.get_by_text("Right in one, wrong in the other").first.wait_for()
    settle(page)
    shoot(page, out / "compare.png", 0, page_end(page))


def main() -> None:
    from playwright.sync_api import sync_playwright

    args = arguments()
    runs = evaluated_runs(args.models)
    if not runs:
        raise SystemExit(f"{args.models} holds no evaluated run: train one first (python -m core train)")
    args.out.mkdir(parents=True, exist_ok=True)
    OUT.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "BTMRI_DATA": str(args.data), "BTMRI_MODELS": str(args.models)}
    print("=== bench/screenshots.py ===")
    print(f"machine: {machine()}")
    print(f"dataset {args.data}, registry {args.models}, active run {runs[0]}")
    server, url, _ = start_app(env, OUT / "screenshots_server.log")
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_FLAGS)
            page = browser.new_page(viewport={"width": WIDTH, "height": TALL})
            page.set_default_timeout(TIMEOUT_MS)
            dataset(page, url, args.out)
            train(page, url, args.out)
            results(page, url, args.out)
            classify(page, url, args.out)
            if len(runs) > 1:
                compare(page, url, args.out)
            else:
                print(f"  compare.png not taken: Compare needs two evaluated runs, {args.models} holds one")
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
