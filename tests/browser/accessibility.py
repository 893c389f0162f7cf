"""axe-core in the browser journeys: no serious or critical violation on any page state.

``assert_accessible(page, state)`` runs axe-core (the copy that the
``axe-playwright-python`` package ships) on the page as it is, writes every
violation (whatever its impact) to ``test-artifacts/browser/axe/<state>.json``
and fails on those of impact serious or critical, and on ``heading-order``
(a skipped heading level, moderate: the portal's pages must not have one).
"""

from __future__ import annotations

import json
import re

from browser_support import ARTIFACTS, wait_idle

FAILING_IMPACTS = {"serious", "critical"}
FAILING_RULES = {"heading-order"}
_axe = None


def _engine():
    global _axe
    if _axe is None:
        from axe_playwright_python.sync_playwright import Axe
        _axe = Axe()
    return _axe


def violations(page) -> list[dict]:
    """Every axe-core violation on the page now (``resultTypes: violations``)."""
    wait_idle(page)
    return _engine().run(page).response["violations"]


def describe(found: list[dict]) -> str:
    lines = []
    for v in found:
        lines.append(f"{v['impact']}: {v['id']} — {v['help']}")
        for node in v["nodes"][:5]:
            lines.append(f"    {node['target']}: {node.get('failureSummary', '').splitlines()[-1:]}")
    return "\n".join(lines)


def assert_accessible(page, state: str, allow: set[str] = frozenset()) -> list[dict]:
    """Fail on serious/critical violations (and skipped heading levels) in this page state.

    ``allow``: rule ids of impact moderate or minor let through for this state
    (never a serious or critical one).
    """
    found = violations(page)
    out = ARTIFACTS / "axe"
    out.mkdir(parents=True, exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", state)
    (out / f"{name}.json").write_text(json.dumps(
        [{k: v[k] for k in ("id", "impact", "help", "nodes")} for v in found], indent=1))
    failing = [v for v in found if v["impact"] in FAILING_IMPACTS
               or (v["id"] in FAILING_RULES and v["id"] not in allow)]
    assert not failing, f"axe-core on {state!r}:\n{describe(failing)}"
    return found
