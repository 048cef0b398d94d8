"""The Dataset page with no dataset yet: the three ways to get one, run for real with AppTest."""

from __future__ import annotations

import socket
import zipfile
from pathlib import Path

import pytest
from conftest import ROOT
from datagen import make_dataset
from streamlit.testing.v1 import AppTest

TIMEOUT = 120


@pytest.fixture
def empty_install(tmp_path, monkeypatch) -> Path:
    """A fresh install: the default dataset folder does not exist yet. Returns it."""
    default = tmp_path / "data" / "brain-tumor-mri"
    monkeypatch.setenv("BTMRI_DATA", str(default))
    monkeypatch.setenv("BTMRI_MODELS", str(tmp_path / "models"))
    monkeypatch.delenv("BTMRI_DATA_ROOTS", raising=False)
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path / "kagglehub"))
    return default


def start() -> AppTest:
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=TIMEOUT).run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def offline(monkeypatch) -> None:
    """Every HTTPS connection goes to a local port that refuses it, as on an offline machine."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        proxy = f"http://127.0.0.1:{s.getsockname()[1]}"
    for name, value in {"HTTPS_PROXY": proxy, "https_proxy": proxy, "NO_PROXY": "", "no_proxy": ""}.items():
        monkeypatch.setenv(name, value)


def test_an_empty_install_offers_three_ways_and_explains_an_offline_download(empty_install, monkeypatch):
    at = start()
    assert at.title[0].value == "Dataset"
    assert any("Pick a dataset folder" in w.value for w in at.warning)
    assert [s.value for s in at.subheader] == ["Get the data"]
    # (a) Kaggle, naming the folder it downloads to
    (download,) = [b for b in at.button if b.label == "Download from Kaggle"]
    assert any(str(empty_install) in c.value and "kagglehub" in c.value for c in at.caption)
    # (b) a path: the sidebar box, or a folder or zip typed here
    assert [t.label for t in at.main.text_input] == ["Folder or .zip on the server"]
    # (c) the layout to unpack by hand
    (tree,) = at.code
    assert "Training/" in tree.value and "Testing/" in tree.value and "pituitary/" in tree.value

    offline(monkeypatch)
    download.click().run()
    assert not at.exception, [e.message for e in at.exception]
    (error,) = at.main.error
    assert "Kaggle cannot be reached" in error.value and "Other ways" in error.value
    assert not empty_install.exists() or not any(empty_install.iterdir())


def test_a_zip_typed_on_the_page_is_unpacked_and_opened(empty_install, tmp_path):
    source = make_dataset(tmp_path / "made" / "mri", 3, 2, awkward=False)
    archive = empty_install.with_suffix(".zip")  # data/brain-tumor-mri.zip, in the data area
    archive.parent.mkdir(parents=True)
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(source.rglob("*")):
            zf.write(path, path.relative_to(source).as_posix())
    at = start()
    at.main.text_input[0].set_value(str(archive)).run()
    assert not at.exception, [e.message for e in at.exception]
    assert any(f"dataset ready at {empty_install}" in s.value for s in at.success)
    assert any(str(empty_install) in c.value and "classes: glioma" in c.value for c in at.caption)
    assert at.session_state["data_dir"] == str(empty_install)
    assert (empty_install / "Training" / "notumor" / "Tr-notumor-002.jpg").is_file()


def test_a_zip_outside_the_data_area_is_not_read(empty_install, tmp_path):
    outside = tmp_path / "elsewhere.zip"
    outside.write_bytes(b"")
    at = start()
    at.main.text_input[0].set_value(str(outside)).run()
    assert any("outside the data area" in e.value for e in at.error)
    assert not outside.with_suffix("").exists()
