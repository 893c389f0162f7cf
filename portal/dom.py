"""Attributes Streamlit has no parameter for, set on the page's HTML: a field's ``inputmode``, a button's accessible name.

A small component (no HTML of its own) keeps a list per browser tab and
applies it whenever Streamlit redraws: a text input is found by its label
(``aria-label``), a button by its widget key (Streamlit's ``st-key-<key>``
class on the element around it).
"""

from __future__ import annotations

import streamlit as st

_JS = """
export default function (component) {
  const { data } = component;
  if (!data) return;
  const wanted = (window.mfaPortalDom ||= { inputs: {}, buttons: {}, observer: null });
  Object.assign(wanted.inputs, data.inputs || {});
  Object.assign(wanted.buttons, data.buttons || {});
  const apply = () => {
    for (const [label, attrs] of Object.entries(wanted.inputs)) {
      for (const field of document.querySelectorAll(`input[aria-label="${CSS.escape(label)}"]`)) {
        for (const [name, value] of Object.entries(attrs)) {
          if (field.getAttribute(name) !== value) field.setAttribute(name, value);
        }
      }
    }
    for (const [key, name] of Object.entries(wanted.buttons)) {
      // Streamlit's own class name for a key (its characters outside [a-zA-Z0-9_-] become "-")
      const cls = "st-key-" + key.trim().replaceAll(/[^a-zA-Z0-9_-]/g, "-");
      for (const button of document.querySelectorAll(`.${CSS.escape(cls)} button`)) {
        if (button.getAttribute("aria-label") !== name) button.setAttribute("aria-label", name);
      }
    }
  };
  apply();
  if (!wanted.observer) {  // Streamlit redraws elements: apply again after each change
    wanted.observer = new MutationObserver(apply);
    wanted.observer.observe(document.body, { childList: true, subtree: true });
  }
}
"""
_component = None


def _send(key: str, data: dict) -> None:
    global _component
    if _component is None:
        _component = st.components.v2.component("mfa_portal_dom", js=_JS)
    try:
        _component(data=data, key=key)
    except Exception:  # no browser behind this run (a test of the script): nothing to set
        pass


def input_attributes(label: str, attributes: dict[str, str]) -> None:
    """Set ``attributes`` on the text input labelled ``label`` (call outside a form)."""
    _send(f"portal_dom_input_{label}", {"inputs": {label: attributes}})


def button_names(names: dict[str, str], key: str) -> None:
    """Give the buttons with these widget keys these accessible names (one call per page part).

    Each name should start with the button's visible text ("Remove “Work phone”"),
    so speech input and screen readers agree with what is on screen.
    """
    _send(f"portal_dom_buttons_{key}", {"buttons": names})
