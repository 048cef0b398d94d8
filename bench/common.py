"""Shared bits of the benchmarks: where the shared data and weights are, the machine."""

from __future__ import annotations

import gzip
import hashlib
import os
import platform
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
DATASET = SHARED / "datasets" / "brain-tumor-mri"
STANDIN_GZ = SHARED / "weights" / "inception_v3_notop_standin.weights.h5.gz"
STANDIN_SHA256 = "8392fd8560d7a4e75f89028b756e107303e4a782924b522df7b82d06b0b4b017"
OUT = ROOT / "bench" / "out"
# Debian's chromium under Playwright, headless, in a container that allows no sandbox.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def standin_weights() -> Path:
    """Unpack the stand-in InceptionV3 weights once (into bench/out/, ignored by git)."""
    target = OUT / "inception_v3_notop_standin.weights.h5"
    if not target.is_file():
        OUT.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        with gzip.open(STANDIN_GZ, "rb") as src, tmp.open("wb") as dst:
            shutil.copyfileobj(src, dst)
        tmp.replace(target)
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    if digest != STANDIN_SHA256:
        raise SystemExit(f"{target} has sha256 {digest}, expected {STANDIN_SHA256}")
    return target


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{platform.node()}: {cpu}, {os.cpu_count()} cores, {mem:.0f} GiB, {platform.platform()}"


def print_metrics(metrics: dict) -> None:
    """Official and clean test figures and the confusion matrix of a run's metrics.json."""
    print(
        f"Testing accuracy {metrics['accuracy']:.4f}, macro F1 {metrics['macro_f1']:.4f}, "
        f"weighted F1 {metrics['weighted_f1']:.4f}, n={metrics['n']}"
    )
    if clean := metrics.get("clean"):
        print(
            f"clean test set accuracy {clean['accuracy']:.4f}, macro F1 {clean['macro_f1']:.4f}, "
            f"n={clean['n']} ({clean['excluded']} copies of Training images left out)"
        )
    print("confusion matrix (rows true, columns predicted):", metrics["classes"])
    for name, row in zip(metrics["classes"], metrics["confusion_matrix"]):
        print(f"  {name:12s} {row}")


def app_command(port: int) -> list[str]:
    """The command line that serves the app: `make app` runs the same one (a test checks
    that they agree), and every other server setting (headless, no file watching, upload
    limit) comes from .streamlit/config.toml, so all of them serve the same app."""
    return [sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.port", str(port)]


def start_app(env: dict[str, str], log: Path, timeout_s: float = 60) -> tuple[subprocess.Popen, str, float]:
    """Start the app's server on a free port with app_command, as `make app` does; return
    the process, its URL and the seconds until its health check answered. The browser
    tests and bench/app_bench.py both start it this way."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    with log.open("w") as out:
        process = subprocess.Popen(app_command(port), cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return process, url, time.monotonic() - start
        except OSError:
            pass
        if time.monotonic() - start > timeout_s or process.poll() is not None:
            process.kill()
            raise RuntimeError(f"the app's server did not start:\n{log.read_text()[-2000:]}")
        time.sleep(0.05)
