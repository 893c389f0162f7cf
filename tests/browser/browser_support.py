"""Helpers for the real-browser journeys: the portal server, waiting for Streamlit, TOTP, QR, screenshots.

Nothing here sleeps a fixed time to wait for Streamlit: ``wait_idle`` watches the
app's script state, and the journeys wait for what the page shows. The only
sleeps are for the TOTP clock (``wait_for_next_step``) and for a server process
to come up (polling its health endpoint).
"""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# The portal the journeys run (default: this checkout; a copy elsewhere for debugging).
APP_DIR = Path(os.environ.get("MFA_PORTAL_BROWSER_APP_DIR") or REPO).resolve()
ARTIFACTS = REPO / "test-artifacts" / "browser"
DOCS = REPO / "docs"
DOC_PICTURES = ("sign-in-challenge", "add-totp-qr", "backup-codes", "manage-mfa-enabled",
                "manage-mfa-authenticators")

CHROMIUM = os.environ.get("MFA_PORTAL_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
INSTALL_HINT = ("the browser journeys need Debian's Chromium at /usr/bin/chromium: "
                "install it with `sudo apt-get install chromium` (or point MFA_PORTAL_CHROMIUM "
                "at a Chromium binary); `playwright install` is not needed")

VIEWPORT = {"width": 1100, "height": 860}
TIMEOUT_MS = 20_000          # the longest a journey waits for one thing to show
IDLE_STABLE_MS = 300         # the app must have been idle this long to count as idle
SETTLE_MS = 800              # ... after a page load, sign-in or sign-out (components mount then)
TOTP_PERIOD = 30


def update_docs() -> bool:
    return os.environ.get("MFA_PORTAL_UPDATE_DOCS") == "1"


def browser_required() -> bool:
    return os.environ.get("MFA_PORTAL_REQUIRE_BROWSER") == "1"


def chromium_problem() -> str | None:
    """Why the browser journeys cannot run here, or None when they can."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright (Python) is not installed: `pip install -r requirements-dev.txt`; " + INSTALL_HINT
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        return f"Chromium not found at {CHROMIUM}: " + INSTALL_HINT
    return None


# -- the portal server --------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class PortalServer:
    """``streamlit run app.py`` (the pages and the HTTP routes, as ``make run``) on a loopback port with its own data dir."""

    data_dir: Path
    log_path: Path
    env_extra: dict[str, str] = field(default_factory=dict)
    script: str = "app.py"
    clock_file: Path | None = None  # set: run through portal_launcher.py with this clock offset file
    port: int = 0
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update({"MFA_PORTAL_DATA_DIR": str(self.data_dir), "PYTHONUNBUFFERED": "1"})
        if self.clock_file is not None:
            env["MFA_PORTAL_TEST_CLOCK_FILE"] = str(self.clock_file)
        env.update(self.env_extra)
        return env

    def start(self, timeout: float = 90.0) -> None:
        self.port = free_port()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "wb")
        if self.clock_file is not None:
            launcher = [sys.executable, str(Path(__file__).with_name("portal_launcher.py"))]
        else:
            launcher = [sys.executable, "-m", "streamlit"]
        cmd = [*launcher, "run", self.script,
               "--server.port", str(self.port), "--server.headless", "true",
               "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
               "--server.fileWatcherType", "none", "--server.runOnSave", "false"]
        self.proc = subprocess.Popen(cmd, cwd=APP_DIR, env=self.env(), stdout=log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        health = f"{self.url}/_stcore/health"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"streamlit exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(health, timeout=2) as resp:
                    if resp.status == 200 and resp.read().strip() == b"ok":
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            time.sleep(0.2)  # polling a starting process, not waiting for a page
        self.stop()
        raise RuntimeError(f"streamlit did not become healthy in {timeout:.0f} s:\n{self.log_tail()}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=10)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text("utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def tracebacks(self) -> list[str]:
        """Tracebacks the server printed (they must never happen)."""
        try:
            text = self.log_path.read_text("utf-8", errors="replace")
        except OSError:
            return []
        return [m.group(0) for m in re.finditer(r"Traceback \(most recent call last\):.*?(?=\n\S|\Z)",
                                                text, re.S)]


# -- waiting for Streamlit ----------------------------------------------------

# Installed in every page of a context: follows the app's script state (a
# MutationObserver, plus a 10 ms poll as a safety net), counting runs and
# remembering when the state last changed; and follows the components (iframes):
# a newly mounted component reports back once ("setComponentValue"), which
# reruns the page a moment later - a click landing in that rerun can be lost.
IDLE_TRACKER = """
(() => {
  if (window.top !== window || window.__stTracker) return;
  window.__stTracker = true;
  window.__stStateChangedAt = performance.now();
  window.__stRunStartedAt = -1;
  window.__stValueAt = -1;
  window.__stRuns = 0;
  window.__stMessages = 0;
  window.__stLog = [];
  const log = (what) => { if (window.__stLog.length < 500) window.__stLog.push([Math.round(performance.now()), what]); };
  document.addEventListener('click', (e) => log('click ' + (e.target.innerText || e.target.tagName).slice(0, 20)), true);
  const frames = new WeakMap();
  window.__stFrames = frames;
  let last = null;
  // Every message from the server counts as activity: a run that starts and
  // ends between two renders leaves no trace in the state attribute.
  const NativeWebSocket = window.WebSocket;
  window.WebSocket = class extends NativeWebSocket {
    constructor(...args) {
      super(...args);
      this.addEventListener('message', () => {
        window.__stMessages++;
        window.__stStateChangedAt = performance.now();
        // The server answering after a component reported counts as that rerun.
        if (window.__stValueAt > window.__stRunStartedAt) window.__stRunStartedAt = performance.now();
        log('message');
      });
    }
  };
  const note = () => {
    const now = performance.now();
    const app = document.querySelector('[data-testid="stApp"]');
    const state = app ? app.getAttribute('data-test-script-state') : null;
    if (state !== last) {
      const wasRunning = last !== null && last !== 'notRunning' && last !== 'initial';
      last = state;
      log('state ' + state);
      window.__stStateChangedAt = now;
      const running = state !== null && state !== 'notRunning' && state !== 'initial';
      if (running && !wasRunning) { window.__stRunStartedAt = now; window.__stRuns++; }
    }
    for (const f of document.querySelectorAll('iframe'))
      if (!frames.has(f)) frames.set(f, {seen: now, ready: null, value: null});
  };
  window.addEventListener('message', (event) => {
    const data = event.data || {};
    if (!data.isStreamlitMessage) return;
    note();
    log(data.type);
    const now = performance.now();
    for (const f of document.querySelectorAll('iframe')) {
      if (f.contentWindow !== event.source) continue;
      const info = frames.get(f);
      if (data.type === 'streamlit:componentReady' && info.ready === null) info.ready = now;
      if (data.type === 'streamlit:setComponentValue') { info.value = now; window.__stValueAt = now; }
    }
  });
  setInterval(note, 10);
  const observe = () => new MutationObserver(note).observe(document.documentElement, {
    attributes: true, subtree: true, childList: true, attributeFilter: ['data-test-script-state']});
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', observe);
  else observe();
})();
"""

# Idle: not running and no message from the server for ``stableMs``; every
# component loaded and, if it reported a value, the rerun it causes has started;
# no element still loading.
_IDLE_CHECK = """
(stableMs) => {
  const app = document.querySelector('[data-testid="stApp"]');
  if (!app || !window.__stTracker) return false;
  const now = performance.now();
  if (app.getAttribute('data-test-script-state') !== 'notRunning') return false;
  if (app.getAttribute('data-test-connection-state') !== 'CONNECTED') return false;
  if (now - window.__stStateChangedAt < stableMs) return false;
  for (const f of document.querySelectorAll('iframe')) {
    const info = window.__stFrames.get(f);
    if (info === undefined) return false;
    if (info.ready === null && now - info.seen < 8000) return false;   // still loading
    if (info.ready !== null && info.value === null && now - info.ready < 1000) return false;
  }
  if (window.__stValueAt > window.__stRunStartedAt && now - window.__stValueAt < 3000) return false;
  // Elements whose code is still loading show a grey skeleton meanwhile.
  if (document.querySelector('[data-testid="stSkeleton"], [data-testid="stSkeletonElement"]')) return false;
  return true;
}
"""


_IDLE_REPORT = """
() => {
  const app = document.querySelector('[data-testid="stApp"]');
  const now = performance.now();
  return {
    state: app && app.getAttribute('data-test-script-state'),
    connection: app && app.getAttribute('data-test-connection-state'),
    msSinceChange: Math.round(now - window.__stStateChangedAt),
    runs: window.__stRuns, messages: window.__stMessages,
    valueAfterRun: window.__stValueAt > window.__stRunStartedAt,
    frames: [...document.querySelectorAll('iframe')].map(f => {
      const i = window.__stFrames.get(f) || {};
      return {title: f.title, seen: Math.round(now - i.seen), ready: i.ready, value: i.value};
    }),
    skeletons: document.querySelectorAll('[data-testid="stSkeleton"], [data-testid="stSkeletonElement"]').length,
    log: (window.__stLog || []).slice(-30),
  };
}
"""


def wait_idle(page, stable_ms: int = IDLE_STABLE_MS, timeout: int = TIMEOUT_MS) -> None:
    """Wait until the Streamlit script is not running and has stayed so for ``stable_ms``."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function(_IDLE_CHECK, arg=stable_ms, polling=50, timeout=timeout)
    except PlaywrightTimeout:
        raise AssertionError(f"the app did not become idle in {timeout} ms: "
                             f"{page.evaluate(_IDLE_REPORT)}") from None


def act(page, action, *, stable_ms: int = IDLE_STABLE_MS, rerun: bool = True) -> None:
    """Do ``action()`` (a click, a key press) and wait for the run it causes to finish.

    The app shows the new run a moment after the click: first wait for that run
    to start or the server to answer (``rerun``: the action always causes a run),
    then for the app to be idle.
    """
    before = page.evaluate("() => [window.__stRuns || 0, window.__stMessages || 0]")
    action()
    if rerun:
        page.wait_for_function("([r, m]) => (window.__stRuns || 0) > r || (window.__stMessages || 0) > m",
                               arg=before, polling=10, timeout=TIMEOUT_MS)
    wait_idle(page, stable_ms=stable_ms)


def click(page, locator, **kwargs) -> None:
    act(page, locator.click, **kwargs)


def goto(page, url: str) -> None:
    page.goto(url, wait_until="domcontentloaded")
    page.locator('[data-testid="stApp"]').wait_for(state="attached", timeout=TIMEOUT_MS)
    page.wait_for_function("() => (window.__stRuns || 0) > 0 || (window.__stMessages || 0) > 0",
                           polling=10, timeout=TIMEOUT_MS)
    wait_idle(page, stable_ms=SETTLE_MS)


# -- TOTP ----------------------------------------------------------------------


def current_step(now: float | None = None) -> int:
    return int((time.time() if now is None else now) // TOTP_PERIOD)


def code_at_step(secret: str, step: int) -> str:
    import pyotp
    return pyotp.TOTP(secret).at(for_time=step * TOTP_PERIOD)


def wait_for_step(step: int, clock=time.time) -> None:
    """Sleep until the TOTP clock reaches ``step`` (the clock, not Streamlit)."""
    delay = step * TOTP_PERIOD - clock()
    if delay > 0:
        time.sleep(delay + 0.05)


def fresh_code(secret: str, last_step: int, clock=time.time) -> tuple[int, str]:
    """A code for a step after ``last_step`` that the server accepts now (current step +-1).

    Returns (step, code). Waits for the next TOTP step when it must.
    """
    step = max(last_step + 1, current_step(clock()))
    if step > current_step(clock()) + 1:
        wait_for_step(step - 1, clock)
    return step, code_at_step(secret, step)


# -- QR codes ------------------------------------------------------------------


def decode_qr(png: bytes) -> str:
    """The text of the one QR code in a PNG image (zxing-cpp)."""
    import zxingcpp
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    results = [r for r in zxingcpp.read_barcodes(image) if r.format == zxingcpp.BarcodeFormat.QRCode]
    if len(results) != 1:
        raise AssertionError(f"expected one QR code in the image, found {len(results)}")
    return results[0].text


def scanned_secret(page) -> str:
    """The secret of the QR code on Add TOTP, decoded from the image the page shows inline."""
    image = main_area(page).get_by_role("img", name="QR code to scan with your authentication app")
    image.wait_for()
    uri = decode_qr(base64.b64decode(image.get_attribute("src").split(",", 1)[1]))
    return re.search(r"secret=([A-Z2-7]+)", uri).group(1)


def set_up_first_app(page, clock) -> str:
    """From Add TOTP MFA to the end of a first app's set-up: the QR code scanned, its code
    verified, a backup code typed back. Returns the secret."""
    heading(page, "Add TOTP MFA").wait_for()
    secret = scanned_secret(page)
    click(page, button(page, "Verify"))
    heading(page, "Verify TOTP").wait_for()
    _, code = fresh_code(secret, -1, clock)
    submit(page, "Enter the code from your authentication app", code, "Verify code")
    heading(page, "Verification was a success!").wait_for()
    codes = BACKUP_CODE.findall(main_area(page).locator('[data-testid="stCode"]').first.inner_text())
    submit(page, "To show you saved them, type one of the backup codes", codes[0], "Finish")
    return secret


def assert_no_exception(page) -> None:
    """No traceback box on the page (Streamlit's st.exception / uncaught error element)."""
    boxes = page.locator('[data-testid="stException"]')
    assert boxes.count() == 0, "the page shows an exception:\n" + "\n".join(boxes.all_inner_texts())


# -- screenshots ---------------------------------------------------------------


class Shots:
    """Numbered screenshots of each step of a journey, under test-artifacts/browser/<test>/."""

    def __init__(self, test_name: str) -> None:
        self.dir = ARTIFACTS / re.sub(r"[^A-Za-z0-9_.-]+", "_", test_name)
        if self.dir.exists():
            shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.count = 0

    def __call__(self, page, name: str, doc: str | None = None) -> Path:
        self.count += 1
        path = self.dir / f"{self.count:02d}-{name}.png"
        page.mouse.move(VIEWPORT["width"] - 2, VIEWPORT["height"] - 2)  # no hover effects in the picture
        page.screenshot(path=str(path), full_page=True, animations="disabled", caret="hide")
        assert_no_exception(page)
        if doc is not None:
            assert doc in DOC_PICTURES, doc
            if update_docs():
                DOCS.mkdir(exist_ok=True)
                shutil.copyfile(path, DOCS / f"{doc}.png")
        return path


# -- the portal's screens (texts from DESIGN.md) -----------------------------------

BACKUP_CODE = re.compile(r"\b[a-z0-9]{4}-[a-z0-9]{4}-[a-z0-9]{4}-[a-z0-9]{4}\b")


def main_area(page):
    return page.locator('[data-testid="stMain"]')


def main_text(page) -> str:
    return main_area(page).inner_text()


def heading(page, text: str):
    return page.get_by_role("heading", name=text, exact=True)


def button(page, name: str):
    return page.get_by_role("button", name=name, exact=True)


def row_button(page, action: str):
    """An authenticator row's **Rename** / **Remove**: named after it ("Remove “Work phone”")."""
    return page.get_by_role("button", name=re.compile(rf"^{action} \u201c"))


def submit(page, label: str, value: str, button_name: str, scope=None,
           stable_ms: int = IDLE_STABLE_MS) -> None:
    """Type ``value`` into the text input ``label`` and press ``button_name``.

    Outside a form, Enter commits the value first (its own rerun) so that the
    click is not lost; inside a form the submit button takes the typed value.
    """
    scope = scope or page
    field = scope.get_by_label(label, exact=True)
    field.fill(value)
    in_form = field.evaluate("e => !!e.closest('[data-testid=\"stForm\"]')")
    if not in_form:
        act(page, lambda: field.press("Enter"))
    click(page, scope.get_by_role("button", name=button_name, exact=True), stable_ms=stable_ms)


def sign_in_form_visible(page) -> bool:
    return (page.get_by_label("Username", exact=True).is_visible()
            and page.get_by_label("Password", exact=True).is_visible()
            and button(page, "Login").is_visible())


def sign_in(page, url: str, username: str, password: str) -> None:
    """Open ``url`` signed out and submit the password form."""
    goto(page, url)
    page.get_by_label("Username", exact=True).wait_for()
    page.get_by_label("Username", exact=True).fill(username)
    page.get_by_label("Password", exact=True).fill(password)
    click(page, button(page, "Login"), stable_ms=SETTLE_MS)
    if (sign_in_form_visible(page) and not error_text(page)
            and page.get_by_label("Username", exact=True).input_value() == username):
        # Streamlit drops a click that lands in a rerun it did not announce yet;
        # a person would press Login again. Say so, so a portal that always needs
        # two clicks does not go unnoticed.
        warnings.warn(f"Login for {username!r} was not taken on the first click; pressed it again")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        with open(ARTIFACTS / "lost-clicks.log", "a") as out:
            timeline = page.evaluate("window.__stLog")
            out.write(f"{time.strftime('%H:%M:%S')} Login for {username}: {timeline}\n")
        click(page, button(page, "Login"), stable_ms=SETTLE_MS)


def expect_challenge(page) -> None:
    heading(page, "Two-step verification").wait_for()
    page.get_by_label("Authentication code", exact=True).wait_for()


def enter_code(page, code: str) -> None:
    submit(page, "Authentication code", code, "Continue")


def enter_backup_code(page, code: str) -> None:
    if not page.get_by_label("Backup code", exact=True).is_visible():
        click(page, button(page, "Use a backup code"))
    submit(page, "Backup code", code, "Continue")


def sign_out(page) -> None:
    """The sidebar's **Sign out** (the challenge screen has its own; Manage MFA signs out others)."""
    sidebar = page.locator('[data-testid="stSidebar"]').get_by_role("button", name="Sign out")
    target = sidebar if sidebar.count() else page.get_by_role("button", name="Sign out", exact=True)
    click(page, target.first, stable_ms=SETTLE_MS)
    page.get_by_label("Username", exact=True).wait_for()


def error_text(page) -> str:
    """The text of the error/warning alerts on the page."""
    alerts = page.locator('[data-testid="stAlertContentError"], [data-testid="stAlertContentWarning"]')
    return "\n".join(alerts.all_inner_texts())
