"""``python -m mfa_core pam``: pam_exec's helper, a client of the verification API.

Called by ``mfa_core.cli`` (imported inside its ``pam`` command, so that
``mfa_core`` never imports this package at module level). ``ctx`` is the
CLI's ``Context``: ``args`` (``url``, ``key_file``, ``timeout``, ``ca_file``),
``environ``, ``stdin`` and ``stderr``. No Streamlit here, and nothing of the
server: the code goes to the API over HTTP (httpx, imported only when asked).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any


class UsageError(ValueError):
    """Bad input on the command line; its text is the one line printed (exit 2)."""


PAM_MAX_INPUT = 4096


def run(ctx: Any) -> int:
    """pam_exec's helper: 0 only when the API answered ``{"ok": true}``; every error denies.

    The user is ``$PAM_USER``; the code is standard input, as ``pam_exec
    expose_authtok`` writes it (the token, then a NUL or a newline).
    """
    err = ctx.stderr
    try:
        return _pam(ctx)
    except UsageError as exc:
        err.write(f"pam: {_one_line(exc)}\n")
        return 2
    except Exception as exc:  # deny, with one line: never a traceback in the auth log
        err.write(f"pam: denied: {type(exc).__name__}: {_one_line(exc)}\n")
        return 1


def _pam(ctx: Any) -> int:
    a, err = ctx.args, ctx.stderr
    user = ctx.environ.get("PAM_USER", "")
    if not user:
        raise UsageError("PAM_USER is not set (run me from pam_exec).")
    url = a.url.rstrip("/")
    if not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", url):
        raise UsageError(f"--url {a.url!r} is not an http(s) URL like http://127.0.0.1:8501.")
    if not url.endswith("/api/v1/verify"):
        url += "/api/v1/verify"
    if not (a.timeout > 0 and a.timeout <= 300):
        raise UsageError("--timeout is 0 to 300 seconds.")
    try:
        st = os.stat(a.key_file)
        if st.st_mode & 0o004:
            raise UsageError(f"The key file {a.key_file} is readable by everyone: chmod 600 it.")
        key = Path(a.key_file).read_text("utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"The key file {a.key_file} cannot be read.") from exc
    if not key:
        raise UsageError(f"The key file {a.key_file} is empty.")
    stream = getattr(ctx.stdin, "buffer", None)
    raw = stream.read(PAM_MAX_INPUT + 1) if stream is not None else \
        (ctx.stdin.read(PAM_MAX_INPUT + 1) or "").encode("utf-8")
    if len(raw) > PAM_MAX_INPUT:
        err.write("pam: denied: the code on standard input is too long\n")
        return 1
    code = raw.decode("utf-8", errors="strict").split("\0", 1)[0].strip("\r\n")
    if not code.strip():
        err.write("pam: denied: no code on standard input\n")
        return 1

    import httpx  # only this command needs it

    verify: str | bool = True
    if a.ca_file:
        verify = a.ca_file
    response = httpx.post(url, json={"username": user, "code": code},
                          headers={"Authorization": f"Bearer {key}"}, timeout=a.timeout,
                          verify=verify, follow_redirects=False)
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code == 200 and isinstance(body, dict) and body.get("ok") is True:
        return 0
    if response.status_code == 200:
        err.write(f"pam: denied: the code was not accepted for {user}\n")
    elif response.status_code == 429:
        err.write(f"pam: denied: too many attempts, retry after "
                  f"{response.headers.get('Retry-After', '?')} s\n")
    else:
        err.write(f"pam: denied: the API answered HTTP {response.status_code}\n")
    return 1


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
