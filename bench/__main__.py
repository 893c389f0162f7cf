"""`python -m bench [core] [pages] [browser] [api] [radius] [coverage] [options]`: run the benchmark, print markdown tables.

With no part named, all four run. A full run with default sizes also writes
bench/RESULTS.md; `--results PATH` writes the report of any run to PATH.
Quick check: `python -m bench --sizes 100,1000 --rounds 1 --page-runs 5
--page-users 1000 --browser-runs 3 --browser-users 1000`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path

from . import SUMMARY, api, browser, core, coverage, pages, radius, table
from . import ldap as ldap_part

PARTS = ("core", "pages", "browser", "api", "radius", "coverage")
NAMED_ONLY = ("ldap",)  # run only when named: it needs slapd
RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("parts", nargs="*", metavar="part",
                   help="core, pages, browser, api, radius, coverage (default: all)")
    p.add_argument("--results", metavar="PATH",
                   help="also write the report here (a full default run writes bench/RESULTS.md)")
    core.add_arguments(p)
    pages.add_arguments(p)
    browser.add_arguments(p)
    api.add_arguments(p)
    radius.add_arguments(p)
    coverage.add_arguments(p)
    ldap_part.add_arguments(p)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = parser()
    args = p.parse_args(argv)
    for part in args.parts:
        if part not in PARTS + NAMED_ONLY:
            p.error(f"unknown part {part!r}: choose from {', '.join(PARTS + NAMED_ONLY)}")
    parts = [part for part in PARTS + NAMED_ONLY if part in args.parts] if args.parts else list(PARTS)
    defaults = {a.dest: a.default for a in p._actions if a.dest not in ("help", "parts", "results")}
    full = parts == list(PARTS) and all(getattr(args, k) == v for k, v in defaults.items())

    started = time.perf_counter()
    command = "python -m bench" + ("".join(f" {a}" for a in argv))
    sections = [f"# Benchmark results", "",
                f"`{command}` — {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC", ""]
    print("\n".join(sections), flush=True)

    def progress(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    runners = {"core": core.main, "pages": pages.main, "browser": browser.main, "api": api.main,
               "radius": radius.main, "coverage": coverage.main, "ldap": ldap_part.main}
    failed = False
    for part in parts:
        progress(f"bench: {part} …")
        t = time.perf_counter()
        try:
            text = runners[part](args, progress)
        except Exception as exc:  # one broken part must not hide the others' tables
            failed = True
            text = f"## {part}\n\n**The {part} part failed:** {type(exc).__name__}: {exc}\n"
        progress(f"bench: {part} done in {time.perf_counter() - t:.0f} s")
        print(text, flush=True)
        sections.append(text)
    tail = f"Whole run: {time.perf_counter() - started:.0f} s."
    summary = ["## Targets at a glance", "",
               table(["part", "target", "measured", "pass/fail"], SUMMARY, "llrr"), ""]
    print("\n".join(summary))
    print(tail)
    sections[4:4] = summary  # after the title and the command line
    sections.append(tail)
    report = "\n".join(sections) + "\n"
    targets = [Path(args.results)] if args.results else []
    if full and not failed:
        targets.append(RESULTS)
    for target in targets:
        target.write_text(report, encoding="utf-8")
        progress(f"bench: report written to {target}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
