"""Fixtures for the real-browser journeys (Playwright + Debian's Chromium).

Without Chromium the journeys skip, saying how to install it; with
MFA_PORTAL_REQUIRE_BROWSER=1 (CI) they fail instead. Each test module gets its
own portal server on a fresh data dir; a module lists the extra users it needs
in ``BROWSER_USERS`` (username -> password), created before the server starts.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from browser_support import (ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, IDLE_TRACKER, TIMEOUT_MS, VIEWPORT,
                             TOTP_PERIOD, PortalServer, Shots, browser_required, chromium_problem,
                             code_at_step, current_step, wait_for_step)

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config, items):
    for item in items:
        if Path(str(item.fspath)).resolve().is_relative_to(HERE):
            item.add_marker(pytest.mark.browser)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture(scope="session")
def browser():
    problem = chromium_problem()
    if problem:
        if browser_required():
            pytest.fail(f"MFA_PORTAL_REQUIRE_BROWSER=1 but {problem}", pytrace=False)
        pytest.skip(problem)
    from playwright.sync_api import sync_playwright

    shutil.rmtree(ARTIFACTS / "failures", ignore_errors=True)

    with sync_playwright() as pw:
        try:
            chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        except Exception as exc:  # a broken Chromium install: same rule as a missing one
            message = f"Chromium at {CHROMIUM} does not start ({exc}); {problem or 'reinstall it'}"
            if browser_required():
                pytest.fail(message, pytrace=False)
            pytest.skip(message)
        yield chromium
        chromium.close()


@dataclass
class Portal:
    server: PortalServer
    data_dir: Path
    users: dict[str, str]

    @property
    def url(self) -> str:
        return self.server.url

    def at(self, path: str = "") -> str:
        return f"{self.server.url}/{path.lstrip('/')}"

    clock_file: Path | None = None

    def clock(self) -> float:
        """The server's clock: real time plus the offset this module set (see portal_launcher)."""
        return time.time() + self.clock_offset()

    def clock_offset(self) -> float:
        if self.clock_file is None or not self.clock_file.exists():
            return 0.0
        return float(self.clock_file.read_text() or 0)

    def move_clock(self, seconds: float) -> None:
        """Move the server's clock ahead (needs BROWSER_CLOCK = True in the module)."""
        assert self.clock_file is not None, "set BROWSER_CLOCK = True in the test module"
        tmp = self.clock_file.with_suffix(".tmp")
        tmp.write_text(repr(self.clock_offset() + seconds))
        os.replace(tmp, self.clock_file)

    def service(self):
        import mfa_core
        return mfa_core.open_service(self.data_dir, clock=self.clock)

    def enroll(self, username: str) -> tuple[str, int]:
        """Turn on TOTP for ``username`` through the engine; returns (secret, last accepted step)."""
        svc = self.service()
        resource = svc.create_totp(username)
        # Enrolled with the previous step's code (inside the +-1 window): the current
        # and next steps stay fresh, so a journey need not wait for the clock.
        if TOTP_PERIOD - self.clock() % TOTP_PERIOD < 2:
            wait_for_step(current_step(self.clock()) + 1, self.clock)
        step = current_step(self.clock()) - 1
        svc.verify_totp(username, code_at_step(resource.secret, step))
        return resource.secret, step

    def backup_codes(self, username: str) -> list[str]:
        return list(self.service().create_backup_codes(username).codes)


@pytest.fixture(scope="module")
def portal(request, browser, tmp_path_factory):
    """A portal server for this module, on a fresh data dir with the demo users and the module's users."""
    import mfa_core
    from mfa_core.users import UserDirectory

    name = request.module.__name__.rsplit(".", 1)[-1]
    data_dir = tmp_path_factory.mktemp(f"portal-{name}")
    users = dict(getattr(request.module, "BROWSER_USERS", {}))
    if users:  # otherwise the portal creates the demo users itself, as on a first run
        UserDirectory(data_dir).ensure_demo_users()
    for username, password in users.items():
        directory = UserDirectory(data_dir)
        directory.add(username, password, name=username.capitalize() + " Browser",
                      email=f"{username}@example.com")
    mfa_core.open_service(data_dir)  # generates the keys before the server reads them
    clock_file = data_dir / "test-clock-offset" if getattr(request.module, "BROWSER_CLOCK", False) else None
    server = PortalServer(data_dir=data_dir, log_path=ARTIFACTS / f"streamlit-{name}.log",
                          env_extra={"MFA_PORTAL_DEMO": "1", **getattr(request.module, "BROWSER_ENV", {})},
                          clock_file=clock_file)
    server.start()
    try:
        yield Portal(server=server, data_dir=data_dir, users=users, clock_file=clock_file)
    finally:
        server.stop()


@pytest.fixture
def shots(request):
    return Shots(request.node.name)


@pytest.fixture
def new_page(request, browser, portal):
    """A factory of pages, each in its own browser context (no shared cookies unless given)."""
    contexts = []
    tracebacks_before = len(portal.server.tracebacks())

    def make(storage_state=None, ignore_https_errors=False):
        context = browser.new_context(viewport=VIEWPORT, accept_downloads=True,
                                      storage_state=storage_state, locale="en-US",
                                      timezone_id="UTC", ignore_https_errors=ignore_https_errors)
        context.set_default_timeout(TIMEOUT_MS)
        context.add_init_script(IDLE_TRACKER)
        contexts.append(context)
        return context.new_page()

    yield make

    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        out = ARTIFACTS / "failures"
        out.mkdir(parents=True, exist_ok=True)
        for i, context in enumerate(contexts):
            for j, page in enumerate(context.pages):
                try:
                    page.screenshot(path=str(out / f"{request.node.name}-{i}-{j}.png"), full_page=True)
                except Exception:
                    pass
    shown = []
    for context in contexts:
        for open_page in context.pages:
            shown += open_page.locator('[data-testid="stException"]').all_inner_texts()
        context.close()
    assert not shown, "a page showed an exception:\n" + "\n".join(shown)
    new_tracebacks = portal.server.tracebacks()[tracebacks_before:]
    assert not new_tracebacks, "the portal printed a traceback:\n" + "\n\n".join(new_tracebacks)


@pytest.fixture
def page(new_page):
    return new_page()


def pytest_report_header(config):
    problem = chromium_problem()
    return f"browser journeys: {'Chromium ' + CHROMIUM if not problem else 'unavailable - ' + problem}"
