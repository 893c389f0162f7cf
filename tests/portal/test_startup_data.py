"""F16 and F6 in the pages: demo users only in an empty data dir; missing keys are no operator text for users."""

from __future__ import annotations

import mfa_core
import portal.config
from mfa_core import keys

from .conftest import app, errors, texts


def _data_without_directory(tmp_path, monkeypatch, clock):
    """A data dir full of real records whose users.yaml was lost."""
    data = tmp_path / "data"
    svc = mfa_core.open_service(data, clock=clock, environ={})
    svc.create_totp("carol")
    svc.sessions.start("carol", second_factor_passed=True)
    monkeypatch.setenv(portal.config.ENV_DATA_DIR, str(data))
    monkeypatch.delenv("MFA_PORTAL_DEMO", raising=False)  # demo mode at its default
    return data


def test_a_lost_users_yaml_does_not_bring_back_the_demo_admin(tmp_path, monkeypatch, clock, caplog):
    data = _data_without_directory(tmp_path, monkeypatch, clock)
    opened = portal.config.portal()
    assert not (data / "users.yaml").exists()
    assert opened.demo is False  # no banner with passwords
    assert opened.directory.get("admin") is None
    assert "users.yaml" in caplog.text  # the operator is told why
    at = app()
    assert "admin-demo" not in texts(at)


def test_a_fresh_data_dir_gets_the_demo_users(tmp_path, monkeypatch, clock):
    monkeypatch.setenv(portal.config.ENV_DATA_DIR, str(tmp_path / "fresh"))
    monkeypatch.delenv("MFA_PORTAL_DEMO", raising=False)
    opened = portal.config.portal()
    assert opened.demo and opened.directory.get("admin") is not None


def test_data_without_keys_shows_visitors_only_temporarily_unavailable(tmp_path, monkeypatch, clock,
                                                                       caplog):
    data = _data_without_directory(tmp_path, monkeypatch, clock)
    (data / keys.KEY_FILE).unlink()
    at = app()
    shown = " ".join(errors(at))
    assert "temporarily unavailable" in shown
    assert "key" not in shown.lower() and str(tmp_path) not in shown
    assert not (data / keys.KEY_FILE).exists()
    assert str(data / keys.KEY_FILE) in caplog.text  # the operator's log has the detail
