"""The Train page's settings form, generated from TrainConfig's settings.

`widgets()` says which widget each setting gets (pure, so tests can read it); `render()`
draws them and returns the values. A new field of TrainConfig appears here without a
change to this file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import streamlit as st

from core.config import SECTIONS, Setting, TrainConfig, settings

# The weights widget: a choice, and a path when the choice is a local file.
WEIGHT_KINDS = ("imagenet", "none", "local file")
COLUMNS = 3


@dataclass(frozen=True)
class Widget:
    """The widget one setting gets: a Streamlit element name, or "weights"."""

    setting: Setting
    kind: str

    @property
    def options(self) -> tuple[Any, ...]:
        """A choice widget's options; None (first) stands for the setting's `auto`."""
        choices = self.setting.app_choices
        return (None, *choices) if self.setting.optional else choices


def widgets() -> list[Widget]:
    """One widget per setting, in the order of SECTIONS; the preset is chosen above the
    form, so it has none here."""
    found = [Widget(s, _kind(s)) for s in settings() if s.widget != "preset"]
    return sorted(found, key=lambda w: SECTIONS.index(w.setting.section))


def _kind(s: Setting) -> str:
    if s.widget in ("radio", "slider", "weights"):
        return s.widget
    if s.kind is bool:
        return "checkbox"
    if s.choices:
        return "selectbox"
    return "number_input"


def render(start: TrainConfig, key: str) -> dict[str, Any]:
    """Draw every widget, starting at `start`'s values; return the value of each setting.

    `key` prefixes the widgets' keys: a new prefix (another preset) starts them afresh.
    """
    values: dict[str, Any] = {}
    for section in SECTIONS:
        in_section = [w for w in widgets() if w.setting.section == section]
        st.markdown(f"**{section}**")
        columns = st.columns(COLUMNS)
        for i, widget in enumerate(in_section):
            with columns[i % COLUMNS]:
                values[widget.setting.path] = _draw(widget, start.value(widget.setting.path), key)
    return values


def _draw(widget: Widget, value: Any, key: str) -> Any:
    s, kind = widget.setting, widget.kind
    common = {"label": s.label, "help": s.help, "key": key + s.path}
    if kind == "weights":
        return _weights(value, common)
    if kind == "checkbox":
        return st.checkbox(value=value, **common)
    if kind in ("selectbox", "radio"):
        options = widget.options
        extra = {"horizontal": True} if kind == "radio" else {}
        return getattr(st, kind)(
            options=options, index=options.index(value), format_func=_auto_text(s), **extra, **common
        )
    low, high = (s.kind(b) for b in s.bounds)
    if kind == "slider":
        return st.slider(min_value=low, max_value=high, value=value, **common)
    placeholder = f"auto: {s.auto}" if s.optional else None
    step = s.step if s.kind is float else 1  # None: Streamlit's own step for floats
    return st.number_input(
        min_value=low,
        max_value=high,
        value=value,
        step=step,
        format=s.format,
        placeholder=placeholder,
        **common,
    )


def _auto_text(s: Setting):
    return lambda option: f"auto: {s.auto}" if option is None else str(option)


def _weights(value: str, common: dict[str, Any]) -> str:
    kind = value if value in WEIGHT_KINDS else "local file"
    chosen = st.selectbox(options=WEIGHT_KINDS, index=WEIGHT_KINDS.index(kind), **common)
    path = st.text_input(
        "Local weights file",
        value="" if value in WEIGHT_KINDS else value,
        placeholder="/path/inception_v3_notop.weights.h5",
        key=common["key"] + ".file",
        disabled=chosen != "local file",
    )
    return path.strip() if chosen == "local file" else chosen
