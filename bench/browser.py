"""Browser benchmark (issue 4): navigation to the first interactive widget, beside "hello".

Two servers started the same way (``streamlit run`` on a free loopback port,
headless, no file watcher): the portal on a data dir with 10,000 users, and
the one-line hello page. Playwright drives Debian's Chromium (headless).
Each run navigates a page and records, from inside the page, the time since
navigation start (``performance.now()``) at which the target element is first
visible and enabled *and* the app's script state is ``notRunning`` (checked
on every DOM mutation). Pages are interleaved run by run; each case keeps
its own browser context (assets cached, like a returning visitor), and its
first navigation is an untimed warm-up.

* sign-in page: ``/`` signed out, target the **Username** input;
* Manage MFA: ``/Manage_MFA`` signed in (the session cookie of a user
  with no second factor, so the page itself renders), target **Add**;
* hello: ``/`` of the hello server, target the text "hello" (it has no widget);
* reference, not a target: ``bench/form_app.py``, the sign-in form's widgets
  alone (title, form, two text inputs, button) on a third server, target its
  **Username** input: what Streamlit itself costs for such a form, so the
  sign-in page's ratio can be read as form cost plus the portal's own.

Child: ``python -m bench.browser child <runs> <users>``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable

from . import REPO, TMP_ROOT, child_env, machine_note, ms, note_target, p50, percentile, ratio, \
    run_child, stop_group, table

CHROMIUM = os.environ.get("MFA_PORTAL_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
RUNS = 7
USERS = 10_000
RATIO_MAX = 1.3
TIMEOUT_MS = 30_000

# Installed before any page script: records when the target first became usable.
READY_TRACKER = """
(() => {
  const target = %s;
  const ready = () => {
    const app = document.querySelector('[data-testid="stApp"]');
    if (!app || app.getAttribute('data-test-script-state') !== 'notRunning') return false;
    const el = target();
    if (!el || el.disabled) return false;
    const r = el.getBoundingClientRect();
    if (r.width === 0 || r.height === 0) return false;
    const style = getComputedStyle(el);
    return style.visibility !== 'hidden' && style.display !== 'none';
  };
  const check = () => {
    if (window.__benchReadyAt === undefined && ready()) {
      window.__benchReadyAt = performance.now();
      observer.disconnect();
    }
  };
  const observer = new MutationObserver(check);
  const start = () => {
    observer.observe(document.documentElement, {attributes: true, childList: true, subtree: true,
                                                characterData: true});
    check();
  };
  if (document.documentElement) start(); else document.addEventListener('DOMContentLoaded', start);
})();
"""
TARGETS = {
    "username": "() => document.querySelector('input[aria-label=\"Username\"]')",
    "add": "() => Array.from(document.querySelectorAll('[data-testid=\"stMain\"] button'))"
           ".find(b => b.innerText.trim() === 'Add')",
    "hello": "() => Array.from(document.querySelectorAll('[data-testid=\"stMarkdownContainer\"]'))"
             ".find(e => e.innerText.trim() === 'hello')",
}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """``streamlit run <script>`` on a free loopback port, stopped by its process group."""

    def __init__(self, script: str, data_dir: Path, log: Path) -> None:
        self.script, self.data_dir, self.log = script, data_dir, log
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 90.0) -> None:
        env = child_env({"MFA_PORTAL_DATA_DIR": str(self.data_dir), "MFA_PORTAL_DEMO": "0",
                         "PYTHONUNBUFFERED": "1"})
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "streamlit", "run", self.script,
                 "--server.port", str(self.port), "--server.address", "127.0.0.1",
                 "--server.headless", "true", "--browser.gatherUsageStats", "false",
                 "--server.fileWatcherType", "none", "--server.runOnSave", "false"],
                cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.script} exited: {self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as resp:
                    if resp.read().strip() == b"ok":
                        return
            except OSError:
                pass
            time.sleep(0.2)  # polling a starting server
        raise RuntimeError(f"{self.script} did not become healthy")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        stop_group(proc, 10)


def _sign_in(page, url: str, username: str, password: str) -> None:
    """Password sign-in of a user without a second factor; waits for the cookie."""
    page.goto(url, wait_until="domcontentloaded")
    page.get_by_label("Username", exact=True).fill(username)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Login", exact=True).click()
    page.get_by_role("heading", name="Welcome", exact=False).first.wait_for(timeout=TIMEOUT_MS)
    deadline = time.monotonic() + 30
    while not any(c["name"].endswith("mfa_portal_session") for c in page.context.cookies()):
        if time.monotonic() > deadline:
            raise RuntimeError("the session cookie was never set")
        page.wait_for_timeout(100)  # the cookie component writes it a moment later


def child(runs: int, users: int) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    from bench import pages

    root = Path(tempfile.mkdtemp(prefix="mfa-bench-browser-", dir=TMP_ROOT))
    servers: list[Server] = []
    try:
        data_dir = root / "data"
        data_dir.mkdir()
        pages._prepare(data_dir, users)
        portal_server = Server("app.py", data_dir, root / "portal.log")
        hello_server = Server("bench/hello_app.py", root / "hello-data", root / "hello.log")
        form_server = Server("bench/form_app.py", root / "form-data", root / "form.log")
        servers = [portal_server, hello_server, form_server]
        for server in servers:
            server.start()
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                         args=CHROMIUM_ARGS)
            cases = {
                "hello": (hello_server.url + "/", "hello"),
                "sign-in": (portal_server.url + "/", "username"),
                "manage": (portal_server.url + "/Manage_MFA", "add"),
                "form": (form_server.url + "/", "username"),
            }
            contexts = {}
            for name, (_, target) in cases.items():
                ctx = browser.new_context(viewport={"width": 1100, "height": 860})
                ctx.add_init_script(READY_TRACKER % TARGETS[target])
                contexts[name] = ctx
            _sign_in(contexts["manage"].new_page(), portal_server.url + "/", pages.NEW,
                     "bench-password")

            def measure(name: str) -> tuple[float, float]:
                url, _ = cases[name]
                page = contexts[name].new_page()
                try:
                    t = time.perf_counter()
                    page.goto(url, wait_until="commit")
                    page.wait_for_function("() => window.__benchReadyAt !== undefined",
                                           polling=20, timeout=TIMEOUT_MS)
                    wall = (time.perf_counter() - t) * 1000
                    return page.evaluate("window.__benchReadyAt"), wall
                finally:
                    page.close()

            for name in cases:  # warm-up: assets into each context's cache
                measure(name)
            samples: dict[str, dict[str, list[float]]] = {n: {"nav": [], "wall": []} for n in cases}
            for _ in range(runs):
                for name in cases:
                    nav, wall = measure(name)
                    samples[name]["nav"].append(nav)
                    samples[name]["wall"].append(wall)
            browser.close()
        tracebacks = "Traceback" in portal_server.log.read_text(errors="replace")
        return {"samples": samples, "tracebacks": tracebacks}
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(root, ignore_errors=True)


# -- the parent -----------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("browser")
    g.add_argument("--browser-runs", type=int, default=RUNS, help="runs a page (default %(default)s)")
    g.add_argument("--browser-users", type=int, default=USERS,
                   help="users in the portal's store (default %(default)s)")


def main(args: argparse.Namespace, out: Callable[[str], None] = print) -> str:
    head = machine_note()
    started = time.perf_counter()
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        return ("## Browser (issue 4)\n\nSkipped: no Chromium at "
                f"{CHROMIUM} (`sudo apt-get install chromium`).\n")
    res = run_child("bench.browser", ["child", str(args.browser_runs), str(args.browser_users)])
    return render(res, args, head, time.perf_counter() - started)


def render(res: dict[str, Any], args, head: str, seconds: float) -> str:
    s = res["samples"]
    hello = p50(s["hello"]["nav"])
    lines = ["## Browser (issue 4): navigation to the first interactive widget", "",
             f"{head}. Headless Chromium ({CHROMIUM}) via Playwright; every server started "
             f"the same way (`streamlit run`, free loopback port). ms from navigation start "
             f"until the target is visible and enabled and the app's script state is "
             f"`notRunning` (seen in the page on every DOM mutation); median (p50) and p95 of "
             f"{args.browser_runs} runs, cases interleaved, assets cached per case (first "
             f"navigation untimed). Portal data dir: {args.browser_users:,} users.", ""]
    header = ["page", "target", "p50 / p95", "hello p50", "ratio", f"≤ {RATIO_MAX:g}× hello",
              "wall p50 (Playwright)"]
    rows = []
    for name, label, target in (("sign-in", "sign-in page `/` (signed out)", "Username input"),
                                ("manage", "Manage MFA `/Manage_MFA` (signed in by cookie)",
                                 "Add button")):
        nav = s[name]["nav"]
        mid = p50(nav)
        rows.append([label, target, f"{ms(mid)} / {ms(percentile(nav, 95))}", ms(hello),
                     ratio(mid, hello),
                     note_target("browser", f"{label}: p50 ≤ {RATIO_MAX:g}× hello", ratio(mid, hello),
                                 mid <= RATIO_MAX * hello),
                     ms(p50(s[name]["wall"]))])
    nav = s["hello"]["nav"]
    rows.append(["hello `/` (baseline)", "text \"hello\"", f"{ms(hello)} / {ms(percentile(nav, 95))}",
                 ms(hello), "1.00×", "", ms(p50(s["hello"]["wall"]))])
    form = s["form"]["nav"]
    rows.append(["reference: the sign-in form's widgets alone (`bench/form_app.py`)",
                 "Username input", f"{ms(p50(form))} / {ms(percentile(form, 95))}", ms(hello),
                 ratio(p50(form), hello), "(not a target)", ms(p50(s["form"]["wall"]))])
    lines += [table(header, rows, "llrrrrr"), "",
              f"- The sign-in page takes {ratio(p50(s['sign-in']['nav']), p50(form))} the time of "
              f"the bare form (the portal's own cost); the bare form takes "
              f"{ratio(p50(form), hello)} the time of hello (Streamlit's form widgets).", ""]
    if res.get("tracebacks"):
        lines += ["- **The portal server printed a traceback** during the run.", ""]
    lines += [f"Browser part took {seconds:.0f} s.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    if sys.argv[1:2] == ["child"]:
        print(json.dumps(child(int(sys.argv[2]), int(sys.argv[3]))))
    else:
        raise SystemExit("usage: python -m bench.browser child <runs> <users>")
