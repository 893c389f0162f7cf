"""Journey: staff sign in with their company-directory password (issue 22), in Chromium.

The portal runs against the run's real slapd (tests/ldap_server.py, StartTLS
with the test CA), configured as a deployment would be: ``MFA_PORTAL_LDAP_*``
in the environment, no demo users. Needs both the browser and slapd: it skips
without either, and fails instead under MFA_PORTAL_REQUIRE_BROWSER=1 /
MFA_PORTAL_REQUIRE_LDAP=1. The people are made fresh here, so other tests'
changes to the shared directory never matter.
"""

from __future__ import annotations

import itertools
import os
import re
import urllib.parse

import pytest
from browser_support import (ARTIFACTS, TOTP_PERIOD, PortalServer, button, click, code_at_step, current_step,
                             enter_code, error_text, expect_challenge, fresh_code, heading, main_area, main_text,
                             sign_in, sign_in_form_visible, sign_out, submit, wait_for_step)
from conftest import Portal

import mfa_core
from tests.ldap_server import ldap_environ

WRONG = "Username or password is incorrect."
_names = itertools.count(1)


@pytest.fixture(scope="module")
def directory(slapd):
    """The run's slapd, started again if an LDAP test stopped it."""
    if slapd.proc is None:
        slapd.start()
    return slapd


@pytest.fixture(scope="module")
def ldap_env(directory) -> dict[str, str]:
    return {**ldap_environ(directory), "MFA_PORTAL_DEMO": "0"}


@pytest.fixture(scope="module")
def portal(browser, directory, ldap_env, tmp_path_factory):
    """The portal on a fresh data dir, its users in the company directory (overrides conftest's)."""
    data_dir = tmp_path_factory.mktemp("portal-directory")
    open_engine(data_dir, ldap_env)  # generates the keys before the server reads them
    server = PortalServer(data_dir=data_dir, log_path=ARTIFACTS / "streamlit-test_browser_directory.log",
                          env_extra=ldap_env)
    server.start()
    try:
        yield Portal(server=server, data_dir=data_dir, users={})
    finally:
        server.stop()


def open_engine(data_dir, env):
    from mfa_core.directory import config as ldap_config
    original = ldap_config.SECRETS_FILE
    ldap_config.SECRETS_FILE = None  # only the environment given here
    try:
        svc = mfa_core.open_service(data_dir, environ=env)
    finally:
        ldap_config.SECRETS_FILE = original
    svc.directory.backend.close()
    return svc


def new_person(directory, password: str, given: str) -> str:
    uid = f"web{next(_names)}x{os.getpid()}"
    directory.add_user(uid, password, given=given, sn="Directory")
    return uid


def open_manage_mfa(page) -> None:
    click(page, main_area(page).get_by_role("link", name=re.compile("Manage MFA")))
    heading(page, "User MFA Settings").wait_for()


def test_directory_user_signs_in_enrolls_and_signs_in_again_with_a_code(portal, directory, new_page):
    uid = new_person(directory, "journey-directory-1", "Dora")
    page = new_page()

    # A wrong directory password: the portal's usual answer, nothing about the directory.
    sign_in(page, portal.url, uid, "not-the-directory-password")
    assert WRONG in error_text(page)
    assert sign_in_form_visible(page)

    # The directory password signs in; the name comes from the entry's cn.
    sign_in(page, portal.url, uid, "journey-directory-1")
    heading(page, "Welcome, Dora Directory").wait_for()
    assert "Two-step verification is off" in main_text(page)

    # Enroll an authenticator app: the secret from the URI the page shows.
    open_manage_mfa(page)
    click(page, button(page, "Add"))
    heading(page, "Add TOTP MFA").wait_for()
    main_area(page).get_by_role("img", name="QR code to scan with your authentication app").wait_for()
    click(page, button(page, "Use URI instead"))
    uri = main_area(page).locator('[data-testid="stCode"]').first.inner_text().strip()
    parsed = urllib.parse.urlparse(uri)
    assert urllib.parse.unquote(parsed.path) == f"/MFA Portal:{uid}"
    secret = urllib.parse.parse_qs(parsed.query)["secret"][0]
    click(page, button(page, "Verify"))
    heading(page, "Verify TOTP").wait_for()
    # The previous step's code (inside the +-1 window) keeps the current and next steps
    # fresh for the sign-in below, so the journey need not wait for the clock.
    if TOTP_PERIOD - portal.clock() % TOTP_PERIOD < 3:
        wait_for_step(current_step() + 1)
    enrolled_step = current_step() - 1
    submit(page, "Enter the code from your authentication app", code_at_step(secret, enrolled_step),
           "Verify code")
    heading(page, "Verification was a success!").wait_for()
    codes = re.findall(r"\b[a-z0-9]{4}-[a-z0-9]{4}-[a-z0-9]{4}-[a-z0-9]{4}\b",
                       main_area(page).locator('[data-testid="stCode"]').first.inner_text())
    assert len(codes) == 10
    submit(page, "To show you saved them, type one of the backup codes", codes[0], "Finish")
    heading(page, "Success!").wait_for()

    # Signed out, the directory password alone no longer gets in: a code is asked for.
    sign_out(page)
    sign_in(page, portal.url, uid, "journey-directory-1")
    expect_challenge(page)
    _step, code = fresh_code(secret, enrolled_step)
    enter_code(page, code)
    heading(page, "Welcome, Dora Directory").wait_for()
    assert "Two-step verification is on" in main_text(page)

    assert open_engine(portal.data_dir, portal.server.env_extra).status(uid).totp_enabled


def test_a_person_locked_in_the_directory_is_refused(portal, directory, new_page):
    uid = new_person(directory, "journey-locked-1", "Lena")
    directory.modify(directory.user_dn(uid), {"pwdAccountLockedTime": "000001010000Z"})  # ppolicy: locked
    page = new_page()
    sign_in(page, portal.url, uid, "journey-locked-1")
    assert WRONG in error_text(page)  # the same answer as a wrong password: nothing to tell a guesser
    assert sign_in_form_visible(page)
    assert heading(page, "Welcome, Lena Directory").count() == 0
