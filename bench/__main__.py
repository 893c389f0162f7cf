"""`python -m bench [core|pages|browser] [options]`: run the benchmark, print markdown tables."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path

from . import browser, core, pages

PARTS = ("core", "pages", "browser")
RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("parts", nargs="*", metavar="part",
                        help="core, pages, browser (default: all three)")
    parser.add_argument("--results", metavar="PATH",
                        help="also write the report here (a full default run writes bench/RESULTS.md)")
    core.add_arguments(parser)
    pages.add_arguments(parser)
    browser.add_arguments(parser)
    args = parser.parse_args(argv)
    for part in args.parts:
        if part not in PARTS:
            parser.error(f"unknown part {part!r}: choose from {', '.join(PARTS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    parts = args.parts or list(PARTS)
    started = time.perf_counter()
    sections = [f"# Benchmark results ({dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC)", ""]

    def progress(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    for part in parts:
        progress(f"bench: {part} …")
        if part == "core":
            text = core.main(args, progress)
        elif part == "pages":
            text = pages.main(args, progress)
        else:
            text = browser.main(args, progress)
        print(text, flush=True)
        sections.append(text)
    sections.append(f"Whole run: {time.perf_counter() - started:.0f} s (`python -m bench "
                    f"{' '.join(sys.argv[1:] if argv is None else argv)}`).".replace(" `", " `", 1))
    report = "\n".join(sections) + "\n"
    target = args.results
    if target:
        Path(target).write_text(report, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
