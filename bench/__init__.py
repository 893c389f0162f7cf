"""`make bench`: speed measured, never asserted in timed tests.

Three parts, each printing markdown tables: ``core`` (the engine on three
storage backends), ``pages`` (server-side run time of each page with AppTest)
and ``browser`` (navigation to the first interactive widget in Chromium).
Every number is compared with a baseline measured in the same run, because
this machine is shared and noisy.
"""

from __future__ import annotations

import json
import math
import os
import signal
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterable, Sequence

REPO = Path(__file__).resolve().parent.parent
TMP_ROOT = Path("/tmp")


def percentile(samples: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); with 5 samples p95 is the slowest."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def p50(samples: Sequence[float]) -> float:
    return statistics.median(samples) if samples else math.nan


def ms(value: float) -> str:
    """Milliseconds with a precision that suits the size."""
    if value is None or math.isnan(value):
        return "–"
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def ratio(a: float, b: float) -> str:
    if a is None or b is None or math.isnan(a) or math.isnan(b) or b == 0:
        return "–"
    return f"{a / b:.2f}×"


SUMMARY: list[tuple[str, str, str, str]] = []
"""(part, target, measured, verdict) of every target, for the summary at the top of the report."""


def note_target(part: str, target: str, measured: str, ok: bool | None) -> str:
    """Remember a target's outcome for the summary; returns its verdict cell."""
    SUMMARY.append((part, target, measured, verdict(ok)))
    return verdict(ok)


def verdict(ok: bool | None) -> str:
    if ok is None:
        return "n/a"
    return "**pass**" if ok else "**FAIL**"


def table(header: Sequence[str], rows: Iterable[Sequence[Any]], align: str | None = None) -> str:
    """A markdown table; ``align`` is one letter a column, l or r (default: first l, rest r)."""
    align = align or "l" + "r" * (len(header) - 1)
    marks = [":---" if a == "l" else "---:" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(marks) + " |"]
    for row in rows:
        lines.append("| " + " | ".join(str(c) for c in row) + " |")
    return "\n".join(lines)


def peak_rss_mb() -> float:
    """This process's peak resident set size (VmHWM) in MB."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("PYTHONHASHSEED", "0")
    if extra:
        env.update(extra)
    return env


def stop_group(proc: subprocess.Popen | None, grace: float) -> None:
    """Stop a server started with ``start_new_session=True``: SIGTERM to its process group,
    SIGKILL after ``grace`` seconds (its children, e.g. a check process, go with it)."""
    if proc is None or proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def run_child(module: str, args: Sequence[str], timeout: float = 1800) -> dict[str, Any]:
    """Run ``python -m module args`` and return the JSON object it prints last."""
    proc = subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=child_env(),
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{module} {' '.join(args)} failed ({proc.returncode}):\n"
                           f"{proc.stderr[-3000:]}")
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"{module} {' '.join(args)} printed no result:\n{proc.stdout[-2000:]}"
                           f"\n{proc.stderr[-2000:]}")
    return json.loads(lines[-1])


def machine_note() -> str:
    """One line saying what the run ran on, so noisy numbers can be read fairly."""
    try:
        load = Path("/proc/loadavg").read_text().split()[:3]
    except OSError:
        load = ["?"] * 3
    return (f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
            f"load average {' / '.join(load)} at start of part")
