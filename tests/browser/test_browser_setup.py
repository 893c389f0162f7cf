"""The browser journeys skip without Chromium, saying how to install it, and fail instead in CI.

These run pytest on a journey module in a subprocess with MFA_PORTAL_CHROMIUM
pointing at a missing binary; they need no browser themselves.
"""

from __future__ import annotations

import os
import subprocess
import sys

from browser_support import REPO

# A journey module: its tests need the browser fixture, so they must skip (or fail) before any server starts.
JOURNEY_PROBE = "tests/browser/test_browser_signed_out.py"


def run_journeys(**env_extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MFA_PORTAL_")}
    env.update(MFA_PORTAL_CHROMIUM="/nonexistent/chromium", **env_extra)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rsfE", "-p", "no:cacheprovider",
                           "-o", "addopts=", JOURNEY_PROBE],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_without_chromium_the_journeys_skip_with_how_to_install():
    result = run_journeys()
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "skipped" in out and "passed" not in out and "failed" not in out, out
    assert "apt-get install chromium" in out, out


def test_in_ci_a_missing_chromium_fails_instead_of_skipping():
    result = run_journeys(MFA_PORTAL_REQUIRE_BROWSER="1")
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert "MFA_PORTAL_REQUIRE_BROWSER=1" in out and "apt-get install chromium" in out, out
    assert "skipped" not in out, out
