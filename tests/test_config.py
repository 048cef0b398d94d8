"""TrainConfig as the one source of the options: the command line, the Train page's form,
the presets and the README's table are generated from its fields."""

from __future__ import annotations

import re
from dataclasses import asdict

import pytest
from conftest import ROOT

from app_pages.config_form import widgets
from core.cli import _config_from_args, build_parser
from core.config import (
    PRESETS,
    Setting,
    TrainConfig,
    as_ran,
    defaults_table,
    framing_of,
    preset_config,
    settings,
)
from core.errors import ConfigError


def leaf_paths(values: dict, prefix: str = "") -> set[str]:
    """Every leaf of a config's dictionary, nested ones as "outer.inner"."""
    paths = set()
    for name, value in values.items():
        paths |= leaf_paths(value, f"{prefix}{name}.") if isinstance(value, dict) else {prefix + name}
    return paths


def other_value(s: Setting):
    """A value of the setting other than its default, as the command line would give it."""
    if s.kind is bool:
        return not s.default
    if s.choices:
        return next(c for c in s.choices if c != s.default)
    if s.kind is str:
        return "none" if s.default != "none" else "imagenet"
    base = s.default if s.default is not None else s.bounds[0]
    return base + (1 if s.kind is int else 0.125)


def parse(*argv: str) -> TrainConfig:
    return _config_from_args(build_parser().parse_args(["train", "data-folder", *argv]))


def test_every_field_is_a_setting_with_its_help_and_label():
    assert {s.path for s in settings()} | {"data_dir"} == leaf_paths(asdict(TrainConfig(data_dir="")))
    for s in settings():
        assert s.help and s.label, s.path


@pytest.mark.parametrize("setting", settings(), ids=lambda s: s.path)
def test_every_setting_can_be_set_from_the_command_line(setting):
    value = other_value(setting)
    if setting.kind is bool:
        argv = [setting.flag] if value else [f"--no-{setting.flag[2:]}"]
    else:
        argv = [setting.flag, str(value)]
    config = parse(*argv)
    assert config.value(setting.path) == value
    # Nothing else moved from where the preset puts it.
    start = preset_config(config.data_dir, config.preset)
    for other in settings():
        if other.path != setting.path:
            assert config.value(other.path) == start.value(other.path), other.path


def test_the_names_users_know_still_work():
    config = parse("--no-augment", "--drop-duplicates", "--no-train-batchnorm", "--input-size", "200")
    assert not config.augment.enabled and config.drop_duplicates and not config.train_batchnorm
    assert config.input_size == 200


def test_options_given_on_the_command_line_override_the_preset():
    quick = PRESETS["quick"].overrides
    config = parse("--preset", "quick", "--head-epochs", "7")
    assert config.preset == "quick" and config.head_epochs == 7
    for path, value in quick.items():
        if path != "head_epochs":
            assert config.value(path) == value
    assert parse().preset == "default" and parse() == preset_config(parse().data_dir)


@pytest.mark.parametrize("name", PRESETS)
def test_each_preset_names_real_settings_and_validates(name, tmp_path):
    config = preset_config(str(tmp_path), name).validate()
    assert config.preset == name
    for path, value in PRESETS[name].overrides.items():
        assert config.value(path) == value
    assert PRESETS[name].cost and PRESETS[name].purpose


def test_a_preset_of_unknown_settings_or_name_is_refused():
    with pytest.raises(ConfigError, match="unknown settings: epochs"):
        TrainConfig(data_dir="x").changed({"epochs": 3})
    with pytest.raises(ConfigError, match="preset must be one of"):
        preset_config("x", "slow")
    with pytest.raises(ConfigError, match="preset must be one of"):
        TrainConfig(data_dir="x", preset="slow").validate()
    # A config.json written without a preset reads as the defaults it ran with.
    assert TrainConfig.from_dict({"data_dir": "x"}).preset == "default"
    # ... and one without a framing saw whole images, padded, whatever the current default is.
    assert TrainConfig.from_dict({"data_dir": "x"}).framing == "pad"
    assert framing_of({"input_size": 128}) == "pad"
    old = as_ran({"data_dir": "x", "input_size": 128})
    assert (old["framing"], old["preset"], old["keep"]) == ("pad", "default", "best")
    assert as_ran({"kind": "ensemble", "members": ["a", "b"]}) == {"kind": "ensemble", "members": ["a", "b"]}
    assert framing_of(TrainConfig(data_dir="x").to_dict()) == TrainConfig(data_dir="x").framing


def test_nested_settings_change_only_their_own_value():
    config = TrainConfig(data_dir="x").changed({"augment.rotation": 0.2, "seed": 3})
    assert config.augment.rotation == 0.2 and config.seed == 3
    assert config.augment.zoom == TrainConfig(data_dir="x").augment.zoom


def test_the_form_offers_every_setting_but_the_preset_it_starts_from():
    offered = [w.setting.path for w in widgets()]
    assert sorted(offered) == sorted(s.path for s in settings() if s.path != "preset")
    for w in widgets():
        if w.kind in ("selectbox", "radio"):
            # A choice widget can show the setting's default.
            assert w.setting.default in w.options, w.setting.path


def test_the_app_offers_one_machine_strategies_only():
    (devices,) = [w for w in widgets() if w.setting.path == "strategy"]
    assert "multi_worker" not in devices.options and "multi_worker" in devices.setting.choices


def test_the_readme_table_of_defaults_is_the_generated_one():
    readme = (ROOT / "README.md").read_text()
    found = re.search(r"<!-- train-defaults.*?-->\n(.*?)\n<!-- /train-defaults -->", readme, re.S)
    assert found, "README.md lost its train-defaults markers"
    assert found.group(1) == defaults_table(), (
        "README.md's table of train defaults is out of date; `python -m core.config` prints it"
    )
