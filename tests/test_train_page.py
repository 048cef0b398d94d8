"""The Train page: a preset and one Start button, every setting under Advanced settings,
and a run that starts from the Start button alone. Real Streamlit AppTest, real launch."""

from __future__ import annotations

import pytest
from conftest import ROOT
from streamlit.testing.v1 import AppTest

from app_pages.config_form import widgets
from core.config import PRESETS, TrainConfig, preset_config
from core.registry import Registry, wait_for
from core.training.launcher import stop

TIMEOUT = 180  # a launch imports TensorFlow in the page's process (prepare_run)
# The AppTest element types the form's widget kinds become.
ELEMENTS = {"weights": ("selectbox", "text_input")}


@pytest.fixture
def registry(tmp_path, monkeypatch, dataset) -> Registry:
    """An empty registry beside the generated dataset, as the app sees them."""
    registry = Registry(tmp_path / "models")
    monkeypatch.setenv("BTMRI_DATA", str(dataset))
    monkeypatch.setenv("BTMRI_MODELS", str(registry.root))
    return registry


def train_page() -> AppTest:
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=TIMEOUT).run()
    at.switch_page("app_pages/train.py").run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def test_the_page_opens_on_the_presets_and_one_start_button(registry):
    at = train_page()
    preset = at.radio(key="train_preset")
    assert preset.value == "default" and list(preset.options) == list(PRESETS)
    # One button, and it says what the run costs; no form that Enter could submit.
    assert [b.label for b in at.button] == [f"Start: default preset, {PRESETS['default'].cost}"]
    assert not at.get("form_submit_button")


def test_advanced_settings_offer_every_setting_at_the_presets_values(registry):
    at = train_page()
    for name in PRESETS:
        at.radio(key="train_preset").set_value(name).run()
        (advanced,) = [e for e in at.expander if e.label == "Advanced settings"]
        start = preset_config("", name)
        for widget in widgets():
            path = widget.setting.path
            (element,) = [
                e
                for kind in ELEMENTS.get(widget.kind, (widget.kind,))
                for e in advanced.get(kind)
                if e.key == f"{name}:{path}"
            ]
            assert element.label == widget.setting.label
            assert element.value == start.value(path), (name, path)
        assert at.button(key="start").label == f"Start: {name} preset, {PRESETS[name].cost}"


def test_typing_in_a_field_starts_nothing(registry):
    at = train_page()
    at.selectbox(key="default:weights").set_value("local file").run()
    # What Enter does in a text field: the value is applied and the page reruns.
    at.text_input(key="default:weights.file").input("/somewhere/weights.h5").run()
    at.number_input(key="default:head_epochs").set_value(1).run()
    assert not at.exception and not at.error
    assert registry.list() == [] and registry.lock_holder() is None
    assert at.button(key="start").label == "Start: default preset with 2 changed settings"


def test_start_with_the_quick_preset_launches_a_run_with_its_values(registry):
    at = train_page()
    at.radio(key="train_preset").set_value("quick").run()
    at.selectbox(key="quick:weights").set_value("none").run()  # no download in tests
    at.button(key="start").click().run()
    assert not at.exception, [e.message for e in at.exception]
    (run,) = registry.list()
    try:
        config = TrainConfig.from_dict(run.config)
        assert config.preset == "quick" and config.weights == "none"
        for path, value in PRESETS["quick"].overrides.items():
            assert config.value(path) == value, path
    finally:
        stop(run)
        assert wait_for(lambda: run.state in ("stopped", "completed"), timeout=300), run.log_tail()
