"""The command line with a rotation that stops half-way, for the interruption tests.

    python -m tests.ops._paused_cli READY_FILE AFTER -- ARGS...

runs ``mfa_core.cli.main(ARGS)`` with ``KeyRing.reencrypt`` patched: after AFTER secrets
were re-encrypted, the next call creates READY_FILE and waits there (an hour) for the
test's signal. The new key is on file and some secrets have moved, others not: the
interruption lands at that point whatever the machine's speed. The exit status is
main's (130 when SIGINT interrupted it).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from mfa_core import cli
from mfa_core.keys import KeyRing


def main(argv: list[str]) -> int:
    ready, after, separator, *args = argv
    assert separator == "--", "usage: READY_FILE AFTER -- ARGS..."
    ready_file, after = Path(ready), int(after)
    original = KeyRing.reencrypt
    calls = 0

    def reencrypt(self: KeyRing, token: str) -> str:
        nonlocal calls
        if calls == after:
            ready_file.touch()
            time.sleep(3600)  # the test's SIGINT or SIGKILL ends this
        calls += 1
        return original(self, token)

    KeyRing.reencrypt = reencrypt  # type: ignore[method-assign]
    return cli.main(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
