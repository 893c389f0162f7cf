"""Which usernames the verification API answers 400 and which it looks up (issue 21).

400 only for a name the engine itself refuses (mfa_core.validate.name: empty, over 128
characters, blanks around it, a non-printable character, a colon). Any other string is
looked up as given -- names are case-sensitive, and the directory's own rule (lower-case
letters, digits, '.', '_', '@', '-') is not applied here -- so "ALICE" or a name with an
emoji is an unknown user: 200 {"ok": false}, like every other refusal.
"""

from __future__ import annotations

import pytest

REFUSED = ["", " alice", "alice ", "a" * 129, "al:ice", "al\nice", "al\u200bice", "al\x00ice"]
LOOKED_UP = ["ALICE", "Alice", "al\U0001F600ce", "Ålice", "a" * 128, "alice smith"]


@pytest.mark.parametrize("username", REFUSED, ids=repr)
def test_a_name_the_engine_refuses_is_400(portal, username):
    answer = portal.post({"username": username, "code": "123456"})
    assert answer.status_code == 400, answer.text
    assert answer.json()["ok"] is False and "user name" in answer.json()["error"]


@pytest.mark.parametrize("username", LOOKED_UP, ids=repr)
def test_any_other_name_is_an_unknown_user(portal, username):
    answer = portal.post({"username": username, "code": "123456"})
    assert (answer.status_code, answer.json()) == (200, {"ok": False})
