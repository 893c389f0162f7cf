"""Issue 20, F8 at the sign-in page: after a spray, a password blocked from new places is
checked with the authentication code (or the helpdesk's temporary pass, issue 24) typed beside
it; without a second factor the block ends by itself."""

from __future__ import annotations

from portal import session as portal_session

from .conftest import app, click, code, enroll, errors, inputs, labels, run, sign_in, texts, type_into

MANAGE = "pages/1_Manage_MFA.py"
HELPDESK = "pages/3_Helpdesk.py"


def cheap_passwords(data_dir) -> None:
    """The demo users' hashes at a low bcrypt cost: a spray is 100 checks (the rules under
    test do not depend on the cost)."""
    import bcrypt
    import yaml
    path = data_dir / "users.yaml"
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    for name, entry in doc["credentials"]["usernames"].items():
        password = {"alice": "alice-demo", "bob": "bob-demo", "admin": "admin-demo"}[name]
        entry["password"] = bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode()
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")


def spray(svc, user: str) -> None:
    """100 wrong passwords from 20 addresses (5 free each): the account limit."""
    for n in range(svc.password_policy.account_limit):
        try:
            svc.attempt_password(user, f"guess-{n}", source=f"198.51.100.{n % 20}")
        except Exception:
            pass
    assert svc.status(user).password_blocked


def test_a_blocked_password_signs_in_with_the_code_beside_it(data_dir, svc, clock):
    cheap_passwords(data_dir)
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
    cheap_passwords(data_dir)
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
    cheap_passwords(data_dir)
    spray(svc, "bob")
    at = sign_in(app(), "bob")
    assert any("blocked" in e for e in errors(at))
    assert "Authentication code" not in inputs(at)
    clock.advance(svc.password_policy.block_for)
    at = sign_in(app(), "bob")
    assert "Welcome, Bob" in texts(at)


def issue(svc, name="alice"):
    return svc.issue_temporary_pass(name, valid_for=3600, actor="helen", reason="lost phone")


def blocked_with_pass(username: str, password: str, shown: str):
    """The blocked form, switched to the temporary pass, filled in and sent."""
    at = sign_in(app(), username)
    assert "Use a temporary pass" in labels(at)
    at = click(at, "Use a temporary pass")
    assert inputs(at) == ["Username", "Password", "Temporary pass"]
    assert "Use your authenticator" in labels(at)
    type_into(at, "Username", username)
    type_into(at, "Password", password)
    type_into(at, "Temporary pass", shown)
    return click(at, "Login")


def test_a_lost_phone_and_a_blocked_password_sign_in_with_the_pass(data_dir, svc, clock):
    cheap_passwords(data_dir)
    enroll(svc, clock)  # the phone that is lost
    shown = issue(svc)
    spray(svc, "alice")
    at = blocked_with_pass("alice", "alice-demo", shown)
    assert not errors(at), errors(at)
    # A pass's session, as after the challenge: Manage MFA only, restricted, ending with the pass.
    assert "temporary pass from the helpdesk" in texts(at)
    assert "Welcome" not in texts(at)
    found = svc.sessions.find(at.session_state[portal_session.TOKEN])
    assert found.restricted and found.ends_at == clock() + 3600
    at.switch_page(MANAGE)
    at = run(at)
    assert "Add another authentication app" in labels(at)
    assert "Remove" not in labels(at) and "Generate" not in labels(at)
    at.switch_page(HELPDESK)
    at = run(at)
    assert "Reset MFA" not in labels(at)
    assert not svc.status("alice").temporary_pass_active  # single use: spent


def test_a_wrong_pass_beside_the_blocked_password_is_one_answer(data_dir, svc, clock):
    cheap_passwords(data_dir)
    enroll(svc, clock)
    issue(svc)
    spray(svc, "alice")
    at = blocked_with_pass("alice", "alice-demo", "kq7m-3xzp-w9df-4hnr")
    assert errors(at) == ["Username, password or code is incorrect."]
    assert portal_session.TOKEN not in at.session_state or not at.session_state[portal_session.TOKEN]


def test_the_pass_is_offered_without_saying_whether_there_is_one(data_dir, svc, clock):
    cheap_passwords(data_dir)
    enroll(svc, clock)
    spray(svc, "alice")  # no pass issued: the form looks the same to whoever typed the name
    at = sign_in(app(), "alice")
    assert "Use a temporary pass" in labels(at)
    at = click(at, "Use a temporary pass")
    at = click(at, "Use your authenticator")
    assert inputs(at) == ["Username", "Password", "Authentication code"]
