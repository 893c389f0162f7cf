"""Start ``streamlit run`` with the portal's clock injected (the only thing the journeys fake).

Usage: python tests/browser/portal_launcher.py run app.py [streamlit options]

The portal reads its clock from ``portal.config.CLOCK``. This launcher sets it to
real time plus an offset (seconds) read from the file named by
``MFA_PORTAL_TEST_CLOCK_FILE``, so a journey can move the server 11 minutes
ahead (e.g. to make a verification stale) without waiting. Streamlit runs the
script in this same process, so the module-level setting holds for every run.

Nothing of the portal is imported before Streamlit starts (components declared
before the runtime exists are never served): an import hook sets the clock
when the app itself first imports ``portal.config``.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, os.getcwd())  # the app dir (the server's working directory)

OFFSET_FILE = os.environ.get("MFA_PORTAL_TEST_CLOCK_FILE")
CLOCKED_MODULE = "portal.config"


def offset() -> float:
    """The offset in the file (read on every call: a journey may change it at any time)."""
    if not OFFSET_FILE:
        return 0.0
    try:
        return float(Path(OFFSET_FILE).read_text().strip() or 0)
    except (OSError, ValueError):
        return 0.0


def test_clock() -> float:
    return time.time() + offset()


class _SetClockOnImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != CLOCKED_MODULE:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        load = spec.loader.exec_module

        def exec_module(module):
            load(module)
            module.CLOCK = test_clock

        spec.loader.exec_module = exec_module
        return spec


def main() -> None:
    sys.meta_path.insert(0, _SetClockOnImport())
    from streamlit.web import cli

    sys.argv = ["streamlit", *sys.argv[1:]]
    cli.main()


if __name__ == "__main__":
    main()
