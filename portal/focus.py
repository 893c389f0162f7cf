"""Put the keyboard focus on the field a step is about (the code field of a challenge, the dialog's)."""

from __future__ import annotations

import streamlit as st

_JS = """
export default function (component) {
  const { data } = component;
  if (!data || !data.label) return;
  const done = "mfaPortalFocus" + data.label + data.step;
  if (window[done]) return;  // once per step, not on every rerun
  let tries = 0;
  const timer = setInterval(() => {
    const field = document.querySelector(`input[aria-label="${CSS.escape(data.label)}"]`);
    if (field || ++tries > 40) {
      clearInterval(timer);
      if (field && document.activeElement !== field) { field.focus(); window[done] = true; }
    }
  }, 50);
}
"""
_component = None


def field(label: str, step: str = "") -> None:
    """Focus the text input labelled ``label`` once it is on the page (once per ``step``)."""
    global _component
    if _component is None:
        _component = st.components.v2.component("mfa_portal_focus", js=_JS)
    try:
        _component(data={"label": label, "step": step}, key=f"portal_focus_{label}")
    except Exception:  # no browser behind this run: nothing to focus
        pass
