"""The README's screenshots: each page of the app on the real dataset with real trained runs.

    .venv/bin/python bench/screenshots.py [--models /tmp/exp/models] [--run RUN] [--data DATASET]
                                          [--out docs/screenshots]

Starts the app as `make app` does (bench.common.start_app) with BTMRI_DATA and BTMRI_MODELS
set, and picks RUN (by default the registry's most accurate evaluated run) as the
sidebar's active run on every page. Drives Debian's chromium with Playwright and saves
each page cropped to what it shows: Dataset (class distribution, samples, the copy audit,
the shortcut score), Train (a quick run in progress, started with the stand-in weights,
then stopped and deleted with the partial activation cache it wrote, so the registry is
left as it was), Results (figures, confusion matrix; top losses with Grad-CAM; *Beyond
this dataset*), Classify (two example scans with their overlays) and Compare (the page's
default pair, the two newest evaluated runs; only when the registry holds two).

A Streamlit page scrolls inside its own container, so the browser's viewport is taller
than any page and each shot is a clip of it. Shots over MAX_BYTES are reduced to 256
colours.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import CHROMIUM_FLAGS, DATASET, OUT, machine, standin_weights, start_app  # noqa: E402
from core.registry import Registry, Run  # noqa: E402
from core.training.cache_usage import cache_folders  # noqa: E402

WIDTH = 1400
TALL = 6000  # taller than any page, so nothing scrolls and every element has its place
MAX_BYTES = 300_000
MARGIN = 16
TIMEOUT_MS = 900_000  # the first Dataset visit may compute the shortcut score on 2 busy cores
EXAMPLE_PICKED = "glioma_Te-gl_0074.jpg"  # through "Try an example"
EXAMPLE_UPLOADED = "pituitary_Te-pi_0102.jpg"  # through the uploader
IN_PROGRESS = "screenshot-in-progress"  # the Train shot's run, deleted after the shot
LIVE_PROGRESS = re.compile(r"Building the activation cache: [1-9]|epoch \d+/\d+, batch [1-9]")


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models", type=Path, default=Path("/tmp/exp/models"), help="registry with a trained run"
    )
    parser.add_argument("--run", help="the active run (default: the most accurate evaluated run)")
    parser.add_argument("--data", type=Path, default=DATASET, help="the dataset folder")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots", help="where the PNGs go")
    return parser.parse_args()


def evaluated_runs(models: Path) -> list[Run]:
    """The runs the app can show (saved model, completed or stopped, with metrics), newest first."""
    return [
        r
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
    """The bottom of the page's visible content (elements and the borders of their
    containers; a closed expander keeps its hidden content laid out), in viewport pixels."""
    return page.evaluate(
        "() => Math.max(...[...document.querySelectorAll("
        "\"[data-testid='stMainBlockContainer'] [data-testid]\")]"
        ".filter(e => e.checkVisibility()).map(e => e.getBoundingClientRect().bottom))"
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


def visit(page, address: str, run_id: str) -> None:
    """Open a page with run_id as the active run: each visit is a new session, which
    starts on the registry's newest run."""
    page.goto(address)
    picker = page.get_by_test_id("stSidebar").get_by_role("combobox", name="Active run")
    picker.wait_for()
    if picker.input_value().startswith(f"{run_id} ("):
        return
    picker.click()
    page.get_by_role("option", name=re.compile(rf"^{re.escape(run_id)} \(")).click()
    picker.blur()  # no focus ring in the shots
    page.wait_for_timeout(1500)  # the rerun for the new run has begun
    settle(page)


def dataset(page, url: str, out: Path, run_id: str) -> None:
    visit(page, url, run_id)  # Streamlit serves the default page at the root only
    page.get_by_text("Without looking at the brain", exact=True).wait_for()
    settle(page)
    last = box(page.get_by_text("The properties it leans on most").first)
    shoot(page, out / "dataset.png", 0, last["y"] + last["height"])


def core_command(models: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "core", "--models", str(models), *args]


def train(page, url: str, out: Path, run_id: str, models: Path, data: Path) -> None:
    """A quick run in progress: started here as `python -m core train` (the page's Start
    launches the same command), shot once the page shows its progress, then stopped and
    deleted, with the activation cache folders it began."""
    caches = {f.key for f in cache_folders(Registry(models).cache_dir)}
    command = core_command(
        models,
        "train",
        str(data),
        "--preset",
        "quick",
        "--weights",
        str(standin_weights()),
        "--run-id",
        IN_PROGRESS,
    )
    log = OUT / "screenshots_train.log"
    with log.open("w") as handle:
        training = subprocess.Popen(command, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT)
    try:
        # The page follows the run that holds the training lock when the page opens.
        while Registry(models).lock_holder() != IN_PROGRESS:
            still_running(training, log)
            time.sleep(1)
        visit(page, f"{url}/train", run_id)
        page.get_by_test_id("stRadio").first.get_by_text("quick", exact=True).click()  # the run's preset
        progress = page.get_by_text(LIVE_PROGRESS)
        while not progress.count():
            still_running(training, log)
            page.wait_for_timeout(1000)
        page.get_by_role("heading", name="Activation cache").wait_for()
        settle(page)
        shoot(page, out / "train.png", 0, page_end(page))
    finally:
        remove_run(training, models, caches)


def still_running(training: subprocess.Popen, log: Path) -> None:
    if training.poll() is not None:
        raise SystemExit(f"the Train shot's run ended before showing progress: see {log}")


def remove_run(training: subprocess.Popen, models: Path, caches: set[str]) -> None:
    """Stop the Train shot's run (SIGTERM, as `python -m core stop` and the page's Stop
    send) and delete it and the cache folders it began."""
    training.terminate()
    try:
        training.wait(timeout=120)
    except subprocess.TimeoutExpired:
        training.kill()
        training.wait()
    if (models / IN_PROGRESS).is_dir():
        subprocess.run(core_command(models, "delete", IN_PROGRESS), cwd=ROOT, check=True)
    begun = sorted({f.key for f in cache_folders(Registry(models).cache_dir)} - caches)
    if begun:
        subprocess.run(core_command(models, "cache", "--clear", *begun), cwd=ROOT, check=True)


def results(page, url: str, out: Path, run_id: str) -> None:
    visit(page, f"{url}/results", run_id)
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


def classify(page, url: str, out: Path, run_id: str) -> None:
    visit(page, f"{url}/classify", run_id)
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


def compare(page, url: str, out: Path, run_id: str) -> None:
    visit(page, f"{url}/compare", run_id)
    page.get_by_text("Right in one, wrong in the other").first.wait_for()
    settle(page)
    shoot(page, out / "compare.png", 0, page_end(page))


def main() -> None:
    from playwright.sync_api import sync_playwright

    args = arguments()
    runs = evaluated_runs(args.models)
    if not runs:
        raise SystemExit(f"{args.models} holds no evaluated run: train one first (python -m core train)")
    active = args.run or max(runs, key=lambda r: r.metrics["accuracy"]).id
    if active not in {r.id for r in runs}:
        raise SystemExit(f"{args.models} holds no evaluated run {active}")
    args.out.mkdir(parents=True, exist_ok=True)
    OUT.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "BTMRI_DATA": str(args.data), "BTMRI_MODELS": str(args.models)}
    print("=== bench/screenshots.py ===")
    print(f"machine: {machine()}")
    print(f"dataset {args.data}, registry {args.models}, active run {active}")
    server, url, _ = start_app(env, OUT / "screenshots_server.log")
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_FLAGS)
            page = browser.new_page(viewport={"width": WIDTH, "height": TALL})
            page.set_default_timeout(TIMEOUT_MS)
            dataset(page, url, args.out, active)
            train(page, url, args.out, active, args.models, args.data)
            results(page, url, args.out, active)
            classify(page, url, args.out, active)
            if len(runs) > 1:
                print(f"  Compare: {runs[0].id} vs {runs[1].id}")
                compare(page, url, args.out, active)
            else:
                print(f"  compare.png not taken: Compare needs two evaluated runs, {args.models} holds one")
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
