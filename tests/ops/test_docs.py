"""The documentation stays true: its links resolve, its commands exist, the README stays short.

README.md and docs/*.md: every relative link points to a file that exists and,
with an ``#anchor``, to a heading of that file (GitHub's anchors); every
``python -m mfa_core …`` / ``mfa-portal …`` shown in code answers ``--help``;
the security model's rule numbers are unique and every one cited exists.
"""

from __future__ import annotations

import contextlib
import io
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mfa_core import cli

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
DOCS = [README, *sorted((REPO / "docs").glob("*.md"))]
README_MAX_LINES = 80

_FENCE = re.compile(r"^\s*(```|~~~)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
# [text](target) and ![alt](target); the target ends at a blank or the closing parenthesis.
_LINK = re.compile(r"!?\[(?:[^\]\\]|\\.)*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_INLINE_CODE = re.compile(r"(`+)(.+?)\1")
# The command line as the docs show it: `python -m mfa_core …` (any python) or the console script.
_CLI = re.compile(r"(?:-m\s+mfa_core|(?<![\w/.-])mfa-portal(?![\w/.-]))((?:[ \t]+[^\s|;&)#`]+)*)")


def _split(path: Path) -> tuple[list[str], list[str]]:
    """(prose lines, code lines): fenced blocks are code; inline code stays in the prose."""
    prose, code, fenced = [], [], False
    for line in path.read_text(encoding="utf-8").splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            continue
        (code if fenced else prose).append(line)
    return prose, code


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup dropped, lower case, punctuation gone, blanks to '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text only
    text = text.replace("`", "").replace("*", "")
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found: set[str] = set()
    seen: dict[str, int] = {}
    for line in _split(path)[0]:
        match = _HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(2))
        n = seen.get(base, 0)
        seen[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    return found


def links(path: Path) -> list[str]:
    """Every link target in the prose (not in fenced code, not inside inline code)."""
    targets = []
    for line in _split(path)[0]:
        line = _INLINE_CODE.sub("", line)
        targets += _LINK.findall(line)
    return targets


def _relative(target: str) -> bool:
    return not re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) and not target.startswith("//")


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_points_to_a_file_and_heading(doc):
    broken = []
    for target in filter(_relative, links(doc)):
        file_part, _, anchor = target.partition("#")
        dest = (doc.parent / file_part).resolve() if file_part else doc
        if not dest.exists():
            broken.append(f"{target}: no file {dest.relative_to(REPO) if dest.is_relative_to(REPO) else dest}")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading #{anchor} in {dest.relative_to(REPO)}")
    assert not broken, f"{doc.relative_to(REPO)}:\n" + "\n".join(broken)


def test_every_guide_is_reachable_from_the_readme():
    reached, todo = set(), [README]
    while todo:
        doc = todo.pop()
        if doc in reached:
            continue
        reached.add(doc)
        for target in filter(_relative, links(doc)):
            dest = (doc.parent / target.partition("#")[0]).resolve()
            if dest.suffix == ".md" and dest.exists() and dest.parent in (REPO, REPO / "docs"):
                todo.append(dest)
    assert not set(DOCS) - reached, sorted(str(p.relative_to(REPO)) for p in set(DOCS) - reached)


def test_readme_fits_on_two_screens():
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines <= README_MAX_LINES, (
        f"README.md has {lines} lines (at most {README_MAX_LINES}): move the details into docs/")


# -- the command lines the docs show ------------------------------------------------

def _command_tree() -> dict[str, set[str]]:
    """Each command of the CLI and its sub-commands (empty for a command without any)."""
    def choices(parser) -> dict:
        for action in parser._actions:  # argparse keeps subparsers here, no public accessor
            if action.__class__.__name__ == "_SubParsersAction":
                return action.choices
        return {}
    return {name: set(choices(sub)) for name, sub in choices(cli.build_parser()).items()}


def documented_commands() -> dict[tuple[str, ...], str]:
    """Each distinct ``<cmd> [<sub>]`` the docs show, with one place it is shown."""
    tree = _command_tree()
    found: dict[tuple[str, ...], str] = {}
    for doc in DOCS:
        prose, code = _split(doc)
        snippets = code + [m.group(2) for line in prose for m in _INLINE_CODE.finditer(line)]
        for snippet in snippets:
            for match in _CLI.finditer(snippet):
                words = [w for w in match.group(1).split()]
                # Global options come before the command: --data-dir DIR.
                while words[:1] == ["--data-dir"]:
                    words = words[2:]
                if not words or words[0].startswith("-"):
                    command: tuple[str, ...] = ()
                elif tree.get(words[0]) and len(words) > 1 and not words[1].startswith("-"):
                    command = (words[0], words[1])
                else:
                    command = (words[0],)
                found.setdefault(command, f"{doc.relative_to(REPO)}: {snippet.strip()}")
    return found


COMMANDS = documented_commands()


def test_the_docs_show_the_command_line():
    """The extraction works: the guides show the helpdesk's and the database's commands."""
    assert {("mfa", "reset"), ("users", "add"), ("db", "copy"), ("clients", "add"), ("pam",)} <= set(COMMANDS)


@pytest.mark.parametrize("command", sorted(COMMANDS), ids=lambda c: " ".join(c) or "(none)")
def test_every_documented_command_exists(command, capsys):
    """``<cmd> [<sub>] --help`` exits 0 (in-process: the console script and -m run this main)."""
    status = cli.main([*command, "--help"], environ={})
    out = capsys.readouterr()
    assert status == 0, f"{COMMANDS[command]}\n{out.err}"
    assert "usage:" in out.out


def test_python_m_mfa_core_answers_help():
    """The module entry point itself, as the docs run it: ``python -m mfa_core … --help``."""
    done = subprocess.run([sys.executable, "-m", "mfa_core", "mfa", "reset", "--help"], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "--reason" in done.stdout


# -- the security model's numbers -----------------------------------------------------

SECURITY = REPO / "docs" / "security.md"


def test_security_rules_are_numbered_once_and_every_cited_rule_exists():
    text = SECURITY.read_text(encoding="utf-8")
    defined = [int(n) for n in re.findall(r"^\*\*S(\d+) — ", text, re.M)]
    assert defined == list(range(1, len(defined) + 1)), defined
    duties = [int(n) for n in re.findall(r"^\*\*D(\d+) — ", text, re.M)]
    assert duties == list(range(1, len(duties) + 1)), duties
    findings = [int(n) for n in re.findall(r"^\| F(\d+) \|", text, re.M)]
    assert findings == list(range(1, 18)), findings
    for doc in DOCS:
        body = doc.read_text(encoding="utf-8")
        cited = {int(n) for n in re.findall(r"\bS(\d+)\b", body)}
        assert cited <= set(defined), f"{doc.relative_to(REPO)} cites {sorted(cited - set(defined))}"
        cited = {int(n) for n in re.findall(r"\bD(\d+)\b", body)}
        assert cited <= set(duties), f"{doc.relative_to(REPO)} cites D{sorted(cited - set(duties))}"


# -- the port option the README documents --------------------------------------------------

@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_run_passes_mfa_portal_port_to_streamlit():
    def recipe(*assignments: str) -> str:
        done = subprocess.run(["make", "-n", "-o", ".venv/.installed-stamp", "run", *assignments],
                              cwd=REPO, capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        return done.stdout
    assert '--server.port "8612"' in recipe("MFA_PORTAL_PORT=8612")
    assert "--server.port" not in recipe()
