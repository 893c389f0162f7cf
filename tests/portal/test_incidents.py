"""Unexpected errors: one friendly line with an incident id on screen, the traceback in the log."""

from __future__ import annotations

import logging
import re
import tomllib

from streamlit.testing.v1 import AppTest

from portal import incidents

from .conftest import ROOT


def _page_that_fails() -> None:
    import streamlit as st

    from portal import incidents

    st.title("A page")
    try:
        open("/nonexistent/secret/keys.json")
    except Exception as exc:  # what Streamlit hands to on_script_error
        incidents.on_script_error(exc)


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_an_unexpected_error_shows_one_line_with_an_incident_id_that_the_log_has_too():
    collect = _Collect()
    incidents.LOGGER.addHandler(collect)
    try:
        at = AppTest.from_function(_page_that_fails).run()
    finally:
        incidents.LOGGER.removeHandler(collect)
    [shown] = [e.value for e in at.error]
    assert not at.exception
    found = re.search(r"incident ([2-9A-Z]{3}-[2-9A-Z]{4})\.$", shown)
    assert found, shown
    assert "keys.json" not in shown and "nonexistent" not in shown and "Error" not in shown
    [record] = collect.records
    logged = logging.Formatter().format(record)
    assert found.group(1) in logged
    assert "Traceback" in logged and "/nonexistent/secret/keys.json" in logged


def test_the_handler_tells_streamlit_to_show_nothing_of_its_own():
    assert incidents.on_script_error(RuntimeError("boom")) is True  # no page: logged only


def test_incident_ids_are_short_and_differ():
    ids = {incidents.new_incident_id() for _ in range(200)}
    assert len(ids) == 200
    assert all(re.fullmatch(r"[2-9A-HJ-NP-Z]{3}-[2-9A-HJ-NP-Z]{4}", i) for i in ids)


def test_streamlit_shows_no_error_details_and_the_app_installs_the_handler():
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["client"]["showErrorDetails"] == "none"
    import app  # the server make run starts
    assert app.app._on_script_error is incidents.on_script_error
