"""Helpers for the real-browser journeys: the portal server, waiting for Streamlit, TOTP, QR, screenshots.

Nothing here sleeps a fixed time to wait for Streamlit: ``wait_idle`` watches the
app's script state, and the journeys wait for what the page shows. The only
sleeps are for the TOTP clock (``wait_for_next_step``) and for a server process
to come up (polling its health endpoint).
"""

from __future__ import annotations

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
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "browser"
DOCS = REPO / "docs"
DOC_PICTURES = ("sign-in-challenge", "add-totp-qr", "backup-codes", "manage-mfa-enabled")

CHROMIUM = os.environ.get("MFA_PORTAL_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
INSTALL_HINT = ("the browser journeys need Debian's Chromium at /usr/bin/chromium: "
                "install it with `sudo apt-get install chromium` (or point MFA_PORTAL_CHROMIUM "
                "at a Chromium binary); `playwright install` is not needed")

VIEWPORT = {"width": 1100, "height": 860}
TIMEOUT_MS = 20_000          # the longest a journey waits for one thing to show
IDLE_STABLE_MS = 400         # the app must have been idle this long to count as idle
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
    """``streamlit run streamlit_app.py`` on a loopback port with its own data dir."""

    data_dir: Path
    log_path: Path
    env_extra: dict[str, str] = field(default_factory=dict)
    script: str = "streamlit_app.py"
    port: int = 0
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update({"MFA_PORTAL_DATA_DIR": str(self.data_dir), "PYTHONUNBUFFERED": "1"})
        env.update(self.env_extra)
        return env

    def start(self, timeout: float = 90.0) -> None:
        self.port = free_port()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "wb")
        cmd = [sys.executable, "-m", "streamlit", "run", self.script,
               "--server.port", str(self.port), "--server.headless", "true",
               "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
               "--server.fileWatcherType", "none", "--server.runOnSave", "false"]
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=self.env(), stdout=log,
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

# Installed in every page of a context: remembers when the app's script state
# last changed, so that a short rerun between two polls is not missed.
IDLE_TRACKER = """
(() => {
  window.__stStateChangedAt = performance.now();
  const observer = new MutationObserver((records) => {
    for (const r of records) {
      if (r.type === 'attributes' && r.attributeName === 'data-test-script-state') {
        window.__stStateChangedAt = performance.now();
        window.__stRuns = (window.__stRuns || 0) + 1;
      }
    }
  });
  const start = () => observer.observe(document.documentElement, {
    attributes: true, subtree: true, attributeFilter: ['data-test-script-state']});
  if (document.documentElement) start(); else document.addEventListener('DOMContentLoaded', start);
})();
"""

_IDLE_CHECK = """
(stableMs) => {
  const app = document.querySelector('[data-testid="stApp"]');
  if (!app) return false;
  const now = performance.now();
  if (app.getAttribute('data-test-script-state') !== 'notRunning') {
    window.__stIdleSince = null;
    return false;
  }
  if (!window.__stIdleSince) window.__stIdleSince = now;
  const since = Math.max(window.__stIdleSince, window.__stStateChangedAt || 0);
  if (document.querySelector('[data-testid="stStatusWidget"] [data-testid="stStatusWidgetRunningIcon"]'))
    return false;
  return now - since >= stableMs;
}
"""


def wait_idle(page, stable_ms: int = IDLE_STABLE_MS, timeout: int = TIMEOUT_MS) -> None:
    """Wait until the Streamlit script is not running and has stayed so for ``stable_ms``."""
    page.evaluate("() => { window.__stIdleSince = null; }")
    page.wait_for_function(_IDLE_CHECK, arg=stable_ms, polling=50, timeout=timeout)


def goto(page, url: str) -> None:
    page.goto(url, wait_until="domcontentloaded")
    page.locator('[data-testid="stApp"]').wait_for(state="attached", timeout=TIMEOUT_MS)
    wait_idle(page)


# -- TOTP ----------------------------------------------------------------------


def current_step(now: float | None = None) -> int:
    return int((time.time() if now is None else now) // TOTP_PERIOD)


def code_at_step(secret: str, step: int) -> str:
    import pyotp
    return pyotp.TOTP(secret).at(for_time=step * TOTP_PERIOD)


def wait_for_step(step: int) -> None:
    """Sleep until the TOTP clock reaches ``step`` (the clock, not Streamlit)."""
    delay = step * TOTP_PERIOD - time.time()
    if delay > 0:
        time.sleep(delay + 0.05)


def fresh_code(secret: str, last_step: int) -> tuple[int, str]:
    """A code for a step after ``last_step`` that the server accepts now (current step ±1).

    Returns (step, code). Waits for the next TOTP step when it must.
    """
    step = max(last_step + 1, current_step())
    if step > current_step() + 1:
        wait_for_step(step - 1)
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
        page.screenshot(path=str(path), full_page=True, animations="disabled", caret="hide")
        if doc is not None:
            assert doc in DOC_PICTURES, doc
            if update_docs():
                DOCS.mkdir(exist_ok=True)
                shutil.copyfile(path, DOCS / f"{doc}.png")
        return path
