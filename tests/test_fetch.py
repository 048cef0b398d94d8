"""Getting the data (core.data.fetch, `python -m core fetch-data`): a real kagglehub download
that cannot reach Kaggle or is refused, and local zips, safe and hostile."""

from __future__ import annotations

import http.server
import socket
import threading
import zipfile
from pathlib import Path

import pytest
from conftest import run_cli
from datagen import make_dataset

from core.data import fetch
from core.data.dataset import scan_dataset
from core.errors import DatasetError


def closed_port() -> int:
    """A local port nothing listens on: connecting to it is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def unreachable_network(port: int) -> dict[str, str]:
    """Environment under which every HTTPS connection goes to a proxy that refuses it: the
    network of an offline machine, whatever this one's (requests reads both spellings)."""
    proxy = f"http://127.0.0.1:{port}"
    return {"HTTPS_PROXY": proxy, "https_proxy": proxy, "NO_PROXY": "", "no_proxy": ""}


def zip_folder(folder: Path, archive: Path, prefix: str = "") -> Path:
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, prefix + path.relative_to(folder).as_posix())
    return archive


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("tiny") / "mri", 3, 2, awkward=False)


def test_fetch_data_offline_fails_fast_with_the_other_ways(tmp_path, monkeypatch):
    target = tmp_path / "data"
    env = unreachable_network(closed_port()) | {"KAGGLEHUB_CACHE": str(tmp_path / "cache")}
    for name, value in env.items():
        monkeypatch.setenv(name, value)  # run_cli passes this process's environment on
    result = run_cli("fetch-data", "--to", str(target), timeout=120)
    assert result.returncode == 2, result.stderr
    assert f"to {target}" in result.stdout  # the target is named before anything is tried
    assert "Kaggle cannot be reached" in result.stderr
    assert "--archive FILE" in result.stderr and "Training/<class>" in result.stderr
    assert "Traceback" not in result.stderr
    assert not target.exists() or not any(target.iterdir())


class Refuse(http.server.BaseHTTPRequestHandler):
    """Answers every request as Kaggle answers one it refuses."""

    def do_POST(self) -> None:
        body = b'{"message": "forbidden"}'
        self.send_response(403)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST

    def log_message(self, *args) -> None:
        pass


@pytest.mark.timeout(60)
def test_a_refused_download_says_how_to_sign_in(tmp_path, monkeypatch):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Refuse)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        # kagglesdk's TEST environment talks plain HTTP to localhost:7777; the proxy
        # delivers those requests to the refusing server instead.
        proxy = f"http://127.0.0.1:{server.server_port}"
        env = {"HTTP_PROXY": proxy, "http_proxy": proxy, "NO_PROXY": "", "no_proxy": ""}
        env |= {"KAGGLE_API_ENVIRONMENT": "TEST", "KAGGLEHUB_CACHE": str(tmp_path / "cache")}
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        with pytest.raises(DatasetError, match=r"refused the download \(HTTP 403\)") as caught:
            fetch.download(tmp_path / "data", report=lambda _: None)
        assert "KAGGLE_API_TOKEN" in str(caught.value) and "--archive FILE" in str(caught.value)
    finally:
        server.shutdown()


def test_a_local_zip_unpacks_to_a_root_the_dataset_loads(tiny, tmp_path):
    # Zips made by hand often wrap the two folders in one more.
    archive = zip_folder(tiny, tmp_path / "mri.zip", prefix="brain-tumor-mri/")
    with zipfile.ZipFile(archive, "a") as zf:
        zf.writestr("__MACOSX/brain-tumor-mri/._Training", b"resource fork")
    target = tmp_path / "data"
    result = run_cli("fetch-data", "--archive", str(archive), "--to", str(target), timeout=120)
    assert result.returncode == 0, result.stderr
    root = target / "brain-tumor-mri"
    index, original = scan_dataset(root), scan_dataset(tiny)
    assert index.classes == original.classes
    assert [index.relative(s) for s in index.training] == [original.relative(s) for s in original.training]
    assert (root / "Testing" / "glioma" / "Te-glioma-000.jpg").read_bytes() == (
        tiny / "Testing" / "glioma" / "Te-glioma-000.jpg"
    ).read_bytes()
    assert f"dataset ready at {root}" in result.stdout
    assert not (target / "__MACOSX").exists()
    # Again: the dataset is there already, nothing is unpacked over it.
    again = fetch.from_local(archive, target, report=lambda _: None)
    assert again.root == root and again.how.startswith("already")


def test_a_local_folder_is_used_where_it_is(tiny):
    fetched = fetch.from_local(tiny.parent, tiny.parent / "unused")
    assert fetched.root == tiny and fetched.how == "used in place"
    assert fetched.size == sum(p.stat().st_size for p in tiny.rglob("*") if p.is_file())
    assert not (tiny.parent / "unused").exists()


@pytest.mark.parametrize(
    "entry", ["../escaped.jpg", "Training/../../escaped.jpg", "/tmp/escaped.jpg", "C:/escaped.jpg"]
)
def test_a_hostile_zip_is_refused_and_writes_nothing(tiny, tmp_path, entry):
    archive = zip_folder(tiny, tmp_path / "hostile.zip")
    with zipfile.ZipFile(archive, "a") as zf:
        zf.writestr(entry, b"payload")
    target = tmp_path / "inner" / "data"
    with pytest.raises(DatasetError, match="outside the target folder"):
        fetch.from_local(archive, target)
    assert list(tmp_path.rglob("escaped.jpg")) == []
    assert not (tmp_path / "inner").exists() or list((tmp_path / "inner").iterdir()) == []


def test_links_bombs_and_wrong_layouts_are_refused(tiny, tmp_path, monkeypatch):
    link = zipfile.ZipInfo("Training/glioma/link.jpg")
    link.external_attr = 0o120777 << 16
    linked = zip_folder(tiny, tmp_path / "link.zip")
    with zipfile.ZipFile(linked, "a") as zf:
        zf.writestr(link, "/etc/passwd")
    with pytest.raises(DatasetError, match="is a link"):
        fetch.from_local(linked, tmp_path / "a")
    # A bomb: the bound is lowered to the size of the tiny dataset, so it counts as one.
    monkeypatch.setattr(fetch, "MAX_UNPACKED_BYTES", 1000)
    with pytest.raises(DatasetError, match="the limit is"):
        fetch.from_local(zip_folder(tiny, tmp_path / "big.zip"), tmp_path / "b")
    monkeypatch.undo()
    flat = zip_folder(tiny / "Training", tmp_path / "flat.zip")  # the classes without Training/
    with pytest.raises(DatasetError, match="no folder with Training/ and Testing/"):
        fetch.from_local(flat, tmp_path / "c")
    text = tmp_path / "notes.zip"
    text.write_text("not a zip")
    with pytest.raises(DatasetError, match="not a readable zip"):
        fetch.from_local(text, tmp_path / "d")
    assert [p for p in tmp_path.iterdir() if p.is_dir()] == []  # nothing left behind


def test_a_target_holding_something_else_is_not_overwritten(tiny, tmp_path):
    target = tmp_path / "data"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    with pytest.raises(DatasetError, match="not empty"):
        fetch.from_local(zip_folder(tiny, tmp_path / "mri.zip"), target)
    assert [p.name for p in target.iterdir()] == ["notes.txt"]
