"""Issue 20, F8 at the sign-in page: after a spray, a password blocked from new places is
checked with the authentication code typed beside it; without a second factor the block ends
by itself."""

from __future__ import annotations

from .conftest import app, click, code, enroll, errors, inputs, sign_in, texts, type_into


def spray(svc, user: str) -> None:
    """100 wrong passwords from 20 addresses (5 free each): the account limit."""
    for n in range(svc.password_policy.account_limit):
        try:
            svc.attempt_password(user, f"guess-{n}", source=f"198.51.100.{n % 20}")
        except Exception:
            pass
    assert svc.status(user).password_blocked


def test_a_blocked_password_signs_in_with_the_code_beside_it(data_dir, svc, clock):
    secret, _ = enroll(svc, clock)
    spray(svc, "alice")
    at = sign_in(app(), "alice")  # a new place: the password alone is not checked
    assert any("authentication code" in e for e in errors(at))
    assert inputs(at) == ["Username", "Password", "Authentication code"]
    type_into(at, "Username", "alice")
    type_into(at, "Password", "alice-demo")
    type_into(at, "Authentication code", code(secret, clock))
    at = click(at, "Login")
    assert "Welcome, Alice Example" in texts(at)  # both factors at once: no challenge after
    assert not svc.status("alice").password_blocked


def test_a_wrong_code_beside_the_password_says_nothing_about_the_password(data_dir, svc, clock):
    secret, _ = enroll(svc, clock)
    spray(svc, "alice")
    at = sign_in(app(), "alice")
    answers = []
    for password in ("alice-demo", "not-her-password"):
        type_into(at, "Username", "alice")
        type_into(at, "Password", password)
        type_into(at, "Authentication code", "000000" if code(secret, clock) != "000000" else "111111")
        at = click(at, "Login")
        answers.append(errors(at))
    assert answers[0] == answers[1] == ["Username, password or code is incorrect."]


def test_without_a_second_factor_the_block_ends_by_itself(data_dir, svc, clock):
    spray(svc, "bob")
    at = sign_in(app(), "bob")
    assert any("blocked" in e for e in errors(at))
    assert "Authentication code" not in inputs(at)
    clock.advance(svc.password_policy.block_for)
    at = sign_in(app(), "bob")
    assert "Welcome, Bob" in texts(at)
