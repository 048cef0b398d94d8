"""Real browser sessions: the real server, headless Debian chromium driven by Playwright.

Opens every page, uploads a scan on Classify and checks that the prediction and the
overlay appear, and saves a screenshot of each page (tests/artifacts/ by default, or
$SCREENSHOT_DIR; the README's come from bench/screenshots.py). Opens many sessions at once
on a cold server, and checks that `make app` and these tests serve the app the same way.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT
from datagen import slice_image

from bench.common import CHROMIUM_FLAGS, app_command, start_app

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium. Missing, the test fails (a green run must have run it), unless
    the environment opts out with BTMRI_SKIP_BROWSER=1. Session-scoped, so it is checked
    before the session's dataset and trained run are made."""
    if os.environ.get("BTMRI_SKIP_BROWSER") == "1":
        pytest.skip("BTMRI_SKIP_BROWSER=1: the browser tests are skipped on request")
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"Debian's chromium is not installed ({CHROMIUM}): install it (make test does, with "
            "apt-get as root), or set BTMRI_SKIP_BROWSER=1 to run the tests without the browser"
        )
    return CHROMIUM


needs_chromium = pytest.mark.usefixtures("chromium")
# The app's navigation, in its order, and the labels of Streamlit's automatic page list
# that a folder of page files named pages/ would produce instead.
NAVIGATION = ["Dataset", "Train", "Results", "Classify", "Compare runs"]
AUTOMATIC_PAGE_LIST = ["streamlit app", "shared", "charts"]
NAV_LABELS = "[data-testid='stSidebarNavLink'] [data-testid='stMarkdownContainer']"


@pytest.fixture
def server(tmp_path, dataset, trained):
    models, _ = trained
    registry_root = tmp_path / "models"
    shutil.copytree(models, registry_root)
    shutil.copytree(registry_root / "tiny", registry_root / "tiny-copy")  # for the Compare page
    env = {**os.environ, "BTMRI_DATA": str(dataset), "BTMRI_MODELS": str(registry_root)}
    try:
        process, url, _ = start_app(env, tmp_path / "server.log")
    except RuntimeError as exc:
        pytest.fail(str(exc))
    yield url
    process.terminate()
    process.wait(timeout=20)


@needs_chromium
def test_every_page_and_classify_in_a_real_browser(server, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    shots = Path(os.environ.get("SCREENSHOT_DIR", ROOT / "tests" / "artifacts"))
    shots.mkdir(parents=True, exist_ok=True)
    scan = tmp_path / "scan.png"
    slice_image(3, np.random.default_rng(7), size=96).save(scan)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(120_000)
        expect.set_options(timeout=120_000)  # first loads import TensorFlow on 2 cores

        # A deep link as a fresh server's first request still runs through the app's
        # navigation and sidebar, not the page file alone.
        page.goto(f"{server}/results")
        expect(page.get_by_role("heading", name="Results")).to_be_visible()
        expect(page.locator("[data-testid='stSidebar']").get_by_text("Dataset folder")).to_be_visible()
        expect(page.get_by_text("Page not found")).to_have_count(0)

        page.goto(server)  # Streamlit serves the default page at the root only
        expect(page.get_by_role("heading", name="Dataset")).to_be_visible()
        expect(page.get_by_text("Class distribution")).to_be_visible()
        expect(page.locator("[data-testid='stSidebar']").get_by_text("54 Training")).to_be_visible()
        page.locator(".js-plotly-plot").first.wait_for()
        page.screenshot(path=str(shots / "dataset.png"), full_page=True)

        for path, heading, marker in [
            ("train", "Train", "New run"),
            ("results", "Results", "Confusion matrix"),
            ("compare", "Compare runs", "Right in one, wrong in the other"),
        ]:
            page.goto(f"{server}/{path}")
            expect(page.get_by_role("heading", name=heading)).to_be_visible()
            expect(page.get_by_text(marker).first).to_be_visible()
            expect(page.get_by_text("Page not found")).to_have_count(0)  # each page has its address
            page.wait_for_timeout(1500)  # let plotly draw before the screenshot
            page.screenshot(path=str(shots / f"{path}.png"), full_page=True)

        page.goto(f"{server}/classify")
        expect(page.get_by_text("Not a diagnostic device")).to_be_visible()
        page.locator("[data-testid='stFileUploaderDropzoneInput']").first.set_input_files(str(scan))
        expect(page.get_by_text("prediction:")).to_be_visible()
        expect(page.get_by_text("Grad-CAM for")).to_be_visible()
        images = page.locator("[data-testid='stImage'] img")
        expect(images).to_have_count(2)
        page.wait_for_function(
            "() => [...document.querySelectorAll(\"[data-testid='stImage'] img\")]"
            ".every(img => img.complete && img.naturalWidth > 0)"
        )
        assert images.nth(1).evaluate("img => img.naturalWidth") == 75  # the overlay, at input size
        # The sidebar is still there after the rerun that the upload caused.
        expect(page.locator("[data-testid='stSidebar']").get_by_text("Active run")).to_be_visible()
        page.screenshot(path=str(shots / "classify.png"), full_page=True)
        browser.close()


@needs_chromium
def test_concurrent_sessions_each_get_their_answer(server, tmp_path):
    """A bounded load: several browser sessions upload at once to the same server."""
    import psutil
    from playwright.sync_api import expect, sync_playwright

    sessions = 4
    scans = []
    for i in range(sessions):
        scans.append(tmp_path / f"scan{i}.png")
        slice_image(i % 4, np.random.default_rng(100 + i), size=96).save(scans[-1])
    port = int(server.rsplit(":", 1)[1])
    (process,) = [c for c in psutil.net_connections("tcp") if c.laddr.port == port and c.status == "LISTEN"]
    server_process = psutil.Process(process.pid)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        expect.set_options(timeout=240_000)
        pages = []
        for _ in range(sessions):
            page = browser.new_context().new_page()
            page.goto(f"{server}/classify")
            expect(page.get_by_text("MRI slices")).to_be_visible()
            pages.append(page)
        rss_before = server_process.memory_info().rss
        for page, scan in zip(pages, scans):  # all uploads go out before any answer is awaited
            page.locator("[data-testid='stFileUploaderDropzoneInput']").first.set_input_files(str(scan))
        for page, scan in zip(pages, scans):
            expect(page.get_by_text(f"{scan.name} — prediction:")).to_be_visible()
        rss_after = server_process.memory_info().rss
        # A second round of new sessions (a reload starts a new session).
        for page, scan in zip(pages, scans):
            page.reload()
            expect(page.get_by_text("MRI slices")).to_be_visible()
            page.locator("[data-testid='stFileUploaderDropzoneInput']").first.set_input_files(str(scan))
        for page, scan in zip(pages, scans):
            expect(page.get_by_text(f"{scan.name} — prediction:")).to_be_visible()
        rss_again = server_process.memory_info().rss
        browser.close()
    # Bounded: the server with its model and visualisers stays within the product's 2 GB
    # budget after two rounds of concurrent sessions (sessions share one loaded model).
    assert max(rss_after, rss_again) < 2 * 2**30, (rss_before, rss_after, rss_again)


def inotify_watches(pid: int) -> int:
    """How many inotify watches the process holds (each watched folder is one)."""
    watches = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            if os.readlink(fd) == "anon_inode:inotify":
                info = Path(f"/proc/{pid}/fdinfo/{fd.name}").read_text()
                watches += sum(line.startswith("inotify wd:") for line in info.splitlines())
        except OSError:  # a descriptor closed while we looked
            pass
    return watches


@pytest.fixture
def cold_server(tmp_path, dataset):
    """A server that no browser has reached yet, started as `make app` starts it."""
    models = tmp_path / "models"
    models.mkdir()
    env = {**os.environ, "BTMRI_DATA": str(dataset), "BTMRI_MODELS": str(models)}
    try:
        process, url, _ = start_app(env, tmp_path / "server.log")
    except RuntimeError as exc:
        pytest.fail(str(exc))
    yield process, url
    process.terminate()
    process.wait(timeout=20)


@needs_chromium
def test_a_cold_server_gives_every_concurrent_session_the_apps_navigation(cold_server):
    """Sessions that all arrive before the server's first script run has finished, on
    different pages, each get the app: its navigation, its sidebar, the page asked for."""
    from playwright.sync_api import expect, sync_playwright

    process, url = cold_server
    links = {"classify": "Classify", "results": "Results", "train": "Train", "compare": "Compare runs"}
    links |= {"dataset": "Dataset", "": "Dataset"}  # the root serves the default page
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        expect.set_options(timeout=180_000)  # the first runs import TensorFlow on 2 cores
        pages = {}
        for path in links:  # no load is awaited, so every session opens within a second or two
            pages[path] = browser.new_context().new_page()
            pages[path].goto(f"{url}/{path}", wait_until="commit")
        for path, title in links.items():
            sidebar = pages[path].locator("[data-testid='stSidebar']")
            current = sidebar.locator("[data-testid='stSidebarNavLink'][aria-current='page']")
            expect(current.locator("[data-testid='stMarkdownContainer']")).to_have_text(title)
            labels = sidebar.locator(NAV_LABELS).all_inner_texts()
            assert [label for label in labels if label in NAVIGATION] == NAVIGATION, (path, labels)
            assert not set(labels) & set(AUTOMATIC_PAGE_LIST), (path, labels)
            expect(sidebar.get_by_text("Dataset folder")).to_be_visible()
            expect(pages[path].get_by_role("heading", name=title)).to_be_visible()
        # Served with .streamlit/config.toml as `make app` serves it: the open sessions
        # watch no file (a session drops its watches when it closes, so count now).
        assert inotify_watches(process.pid) == 0
        browser.close()


def test_make_app_serves_the_app_as_the_tests_and_benchmarks_do():
    """`make app` runs app_command's command line (start_app's, for the browser tests and
    bench/app_bench.py), so every server setting comes from .streamlit/config.toml."""
    recipe = subprocess.run(
        [
            "make",
            "--no-print-directory",
            "--dry-run",
            "--old-file=.venv/.installed",
            "app",
            "PORT=8765",
            "PY=PYTHON",
        ],
        cwd=ROOT,
        # Under `make test` the parent make's variables would make this one a sub-make.
        env={k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert shlex.split(recipe) == ["PYTHON", *app_command(8765)[1:]], recipe
