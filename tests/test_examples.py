"""The example scans in examples/ and the Classify page's *Try an example*, with AppTest
and the tiny trained run."""

from __future__ import annotations

import re

from conftest import ROOT
from datagen import CLASSES
from streamlit.testing.v1 import AppTest

from core.data.images import decode

EXAMPLES = ROOT / "examples"
TIMEOUT = 180  # TensorFlow imports and model loads take seconds on a 2-core machine


def test_two_documented_readable_examples_per_class():
    files = sorted(EXAMPLES.glob("*.jpg"))
    assert sorted(f.name.split("_", 1)[0] for f in files) == sorted(CLASSES * 2)
    notes = (EXAMPLES / "README.md").read_text()
    for f in files:
        cls, original = f.name.split("_", 1)
        # Each file's row names its source in the dataset and a licence.
        (row,) = [line for line in notes.splitlines() if line.startswith(f"| `{f.name}`")]
        assert f"`Testing/{cls}/{original}`" in row and re.search(r"CC (BY 4\.0|0 1\.0)|CC0 1\.0", row)
        assert min(decode(f).size) >= 150
    assert sum(f.stat().st_size for f in files) < 500_000


def prediction(at: AppTest) -> str:
    lines = [m.value for m in at.markdown if "prediction:" in m.value]
    assert len(lines) == 1, lines
    return lines[0]


def test_an_example_is_classified_as_its_upload_would_be(app_env):
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=TIMEOUT).run()
    at.switch_page("app_pages/classify.py").run()
    assert not at.exception, [e.message for e in at.exception]
    (example,) = [s for s in at.selectbox if s.label == "Try an example"]
    assert example.value is None and len(example.options) == 8
    name = "pituitary_Te-pi_0119.jpg"
    example.set_value(name).run()
    assert not at.exception, [e.message for e in at.exception]
    chosen = prediction(at)
    assert name in chosen
    assert len(at.image) == 2  # the model's view and the overlay, as for an upload
    assert any(b.label.startswith("Report") for b in at.get("download_button"))
    # The same bytes uploaded give the same answer.
    (example,) = [s for s in at.selectbox if s.label == "Try an example"]
    example.set_value(None)
    data = (EXAMPLES / name).read_bytes()
    at.get("file_uploader")[0].set_value([(name, data, "image/jpeg")]).run()
    assert not at.exception, [e.message for e in at.exception]
    assert prediction(at) == chosen
