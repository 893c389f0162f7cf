"""Fixtures for the AppTest page tests: a data dir in tmp_path, an injected clock, real engine.

AppTest runs the page scripts in this process, so the portal's clock hook
(``portal.config.CLOCK``) and its one cookie read (``portal.signin.read_cookie``)
are the only things a test sets; the engine, the TinyDB files, bcrypt and the
authenticator are real.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
from streamlit.testing.v1 import AppTest

import mfa_core
import portal.config
import portal.signin
from mfa_core import totp

ROOT = Path(__file__).resolve().parents[2]
START = 1_800_000_000.0  # a step boundary: codes are predictable
PASSWORDS = {"alice": "alice-demo", "bob": "bob-demo", "admin": "admin-demo"}


class Clock:
    """The injected clock: time stands still until a test moves it."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(portal.config, "CLOCK", fake)
    return fake


@pytest.fixture
def data_dir(tmp_path, monkeypatch, clock) -> Path:
    path = tmp_path / "data"
    monkeypatch.setenv("MFA_PORTAL_DATA_DIR", str(path))
    monkeypatch.delenv("MFA_PORTAL_DEMO", raising=False)
    monkeypatch.delenv("MFA_PORTAL_COOKIE_KEY", raising=False)
    portal.config.portal()  # first run of the portal: demo users, keys
    return path


@pytest.fixture
def svc(data_dir, clock) -> mfa_core.MFAService:
    """The engine on the same data dir, as another process (the helpdesk, a CLI) sees it."""
    return mfa_core.open_service(data_dir, clock=clock)


@pytest.fixture
def cookie(monkeypatch) -> Callable[[str | None], None]:
    """Make the browser present this session cookie (the one read the portal makes)."""
    def present(token: str | None) -> None:
        monkeypatch.setattr(portal.signin, "read_cookie", lambda: token)
    return present


def make_cookie(username: str, *, passed: bool = False, verified_at: float | None = None) -> str:
    """A real server-side session of ``username`` (as a sign-in in another tab made it): its token."""
    return portal.config.service().sessions.start(username, second_factor_passed=passed,
                                                   verified_at=verified_at)


class Media:
    """The media files (images, downloads) the runs handed to the browser, by URL."""

    def __init__(self) -> None:
        self.files: dict[str, tuple[bytes, str]] = {}

    def _id(self, url: str) -> str:
        return url.rsplit("/", 1)[-1].split(".", 1)[0]

    def read(self, url: str) -> bytes:
        return self.files[self._id(url)][0]

    def mimetype(self, url: str) -> str:
        return self.files[self._id(url)][1]


@pytest.fixture
def media(monkeypatch) -> Media:
    """AppTest shows an image or a download only as a media URL: keep the bytes behind it."""
    seen = Media()
    original = MemoryMediaFileStorage.load_and_get_id

    def load_and_get_id(self, path_or_data, mimetype, kind, filename=None):
        file_id = original(self, path_or_data, mimetype, kind, filename)
        seen.files[file_id] = (self._files_by_id[file_id].content, mimetype)
        return file_id

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", load_and_get_id)
    return seen


# -- driving a page --------------------------------------------------------------

def app(page: str = "streamlit_app.py") -> AppTest:
    """A new browser session opening ``page`` by its URL (the entrypoint stays the main script)."""
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=30)
    if page != "streamlit_app.py":
        at.switch_page(page)
    return run(at)


def app_direct(page: str) -> AppTest:
    """The page file run on its own as the main script."""
    return run(AppTest.from_file(str(ROOT / page), default_timeout=30))


def run(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def click(at: AppTest, label: str) -> AppTest:
    buttons = [b for b in at.button if b.label == label]
    assert len(buttons) == 1, f"{label!r} among {[b.label for b in at.button]}"
    buttons[0].click()
    return run(at)


def generate(at: AppTest) -> AppTest:
    """**Generate**, then **Yes, generate new codes** when the page asks first (unused codes left)."""
    at = click(at, "Generate")
    if "Yes, generate new codes" in labels(at):
        at = click(at, "Yes, generate new codes")
    return at


def type_into(at: AppTest, label: str, text: str) -> None:
    fields = [t for t in at.text_input if t.label == label]
    assert len(fields) == 1, f"{label!r} among {[t.label for t in at.text_input]}"
    fields[0].input(text)


def labels(at: AppTest) -> list[str]:
    return [b.label for b in at.button]


def inputs(at: AppTest) -> list[str]:
    return [t.label for t in at.text_input]


def texts(at: AppTest) -> str:
    """Every visible text of the run, one per line (headings, markdown, alerts, code)."""
    parts: list[str] = []
    for kind in ("title", "header", "subheader", "markdown", "caption", "info", "warning",
                 "error", "success", "code"):
        parts.extend(str(e.value) for e in getattr(at, kind))
    return "\n".join(parts)


def errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error]


def page_links(at: AppTest) -> list[str]:
    """The links drawn in the sidebar."""
    return [e.proto.label for e in at.sidebar.get("page_link")]


def sign_in(at: AppTest, username: str, password: str | None = None) -> AppTest:
    type_into(at, "Username", username)
    type_into(at, "Password", password if password is not None else PASSWORDS[username])
    return click(at, "Login")


def code(secret: str, clock: Clock, offset_steps: int = 0) -> str:
    return totp.code_at_step(secret, totp.step_at(clock()) + offset_steps)


def enroll(svc: mfa_core.MFAService, clock: Clock, username: str = "alice") -> tuple[str, list[str]]:
    """Give ``username`` an authenticator and backup codes through the engine; the clock
    moves to the next step so the next code is fresh."""
    resource = svc.create_totp(username)
    svc.verify_totp(username, code(resource.secret, clock))
    codes = svc.create_backup_codes(username).codes
    clock.advance(30)
    return resource.secret, codes


def add_app(svc: mfa_core.MFAService, clock: Clock, label: str, username: str = "alice") -> str:
    """One more authentication app called ``label`` for ``username``; returns its secret (the
    clock moves to the next step)."""
    secret = svc.create_totp(username, label=label).secret
    svc.verify_totp(username, code(secret, clock))
    clock.advance(30)
    return secret


def ids(svc: mfa_core.MFAService, username: str = "alice") -> dict[str, str]:
    """The user's authenticators' ids, by name."""
    return {a.label: a.id for a in svc.status(username).authenticators}


def pass_challenge(at: AppTest, secret: str, clock: Clock) -> AppTest:
    type_into(at, "Authentication code", code(secret, clock))
    at = click(at, "Continue")
    clock.advance(30)
    return at


def signed_in(username: str = "alice", secret: str | None = None, clock: Clock | None = None,
              page: str | None = None) -> AppTest:
    """A new browser session signed in (password, then the code when ``secret`` is given)."""
    at = sign_in(app(), username)
    if secret is not None:
        at = pass_challenge(at, secret, clock)
    assert "Welcome" in texts(at), texts(at)
    if page:
        at.switch_page(page)
        run(at)
    return at
