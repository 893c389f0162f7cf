"""The company directory's settings (environment over [ldap] in secrets.toml) and its commands."""

from __future__ import annotations

import io

import pytest

from mfa_core import cli
from mfa_core.directory import config
from mfa_core.directory.config import DirectorySettingsError

from ..ldap_server import HELPDESK_DN


def _run(argv, env):
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(argv, environ=env, stdin=io.StringIO("new-password-1\n"), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


BASE_ENV = {"MFA_PORTAL_LDAP_BIND_DN": "cn=portal,dc=example,dc=com",
            "MFA_PORTAL_LDAP_BIND_PASSWORD": "pw", "MFA_PORTAL_LDAP_BASE_DN": "dc=example,dc=com"}


def test_nothing_set_means_no_company_directory(tmp_path):
    assert config.load({}, tmp_path / "none.toml") is None


def test_secrets_table_and_the_environment_wins(tmp_path):
    secrets = tmp_path / "secrets.toml"
    secrets.write_text('[ldap]\nurl = "ldaps://dc1.example.com"\npreset = "active-directory"\n'
                       'bind_dn = "cn=svc"\nbind_password = "from-file"\nbase_dn = "dc=example,dc=com"\n'
                       f'admin_group = "{HELPDESK_DN}"\n')
    loaded = config.load({}, secrets)
    assert loaded.urls == ("ldaps://dc1.example.com",) and loaded.preset.name == "active-directory"
    assert loaded.admin_group == HELPDESK_DN
    loaded = config.load({"MFA_PORTAL_LDAP_URL": "ldaps://a.example.com, ldaps://b.example.com",
                          "MFA_PORTAL_LDAP_BIND_PASSWORD": "from-env"}, secrets)
    assert loaded.urls == ("ldaps://a.example.com", "ldaps://b.example.com")
    assert loaded.bind_password == "from-env"
    assert "from-env" not in repr(loaded) and "from-env" not in loaded.describe()


@pytest.mark.parametrize("url,start_tls,ok", [
    ("ldap://ldap.example.com", "0", False),   # the password in the clear over a network
    ("ldap://ldap.example.com", "1", True),    # StartTLS
    ("ldaps://ldap.example.com", "0", True),
    ("ldap://127.0.0.1:3890", "0", True),      # loopback may go without
    ("ldap://localhost", "0", True),
    ("ldap://[::1]:389", "0", True),
    ("http://ldap.example.com", "1", False),
    ("ldap://ldap.example.com/dc=x?uid", "1", False),
])
def test_plain_ldap_without_starttls_refused_unless_loopback(url, start_tls, ok, tmp_path):
    env = {**BASE_ENV, "MFA_PORTAL_LDAP_URL": url, "MFA_PORTAL_LDAP_START_TLS": start_tls}
    if ok:
        assert config.load(env, None) is not None
    else:
        with pytest.raises(DirectorySettingsError):
            config.load(env, None)


@pytest.mark.parametrize("key,value", [("PRESET", "novell"), ("BIND_DN", ""), ("CA_FILE", "/nonexistent/ca.pem"),
                                       ("USER_FILTER", "objectClass=person"), ("TIMEOUT", "0")])
def test_bad_settings_refused_at_start(key, value):
    env = {**BASE_ENV, "MFA_PORTAL_LDAP_URL": "ldaps://ldap.example.com", f"MFA_PORTAL_LDAP_{key}": value}
    if key == "BIND_DN":
        env.pop("MFA_PORTAL_LDAP_BIND_DN")
    with pytest.raises(DirectorySettingsError):
        config.load(env, None)


def test_directory_test_command(ldap_env, data_dir, running_slapd, new_user):
    env = {**ldap_env, "MFA_PORTAL_DATA_DIR": str(data_dir)}
    code, out, err = _run(["directory", "test"], env)
    assert code == 0, err
    code, out, err = _run(["directory", "test", "carol"], env)
    assert code == 0 and "roles: user, admin" in out and "state: active" in out
    code, out, err = _run(["directory", "test", "nobody-at-all"], env)
    assert code == 2 and "nobody-at-all" in err
    uid, dn = new_user("cli-locked-1")
    running_slapd.modify(dn, {"pwdAccountLockedTime": "000001010000Z"})
    code, out, err = _run(["directory", "test", uid], env)
    assert code == 2 and "state: locked" in out


def test_directory_test_unusable(ldap_env, data_dir):
    from ..ldap_server import free_port
    env = {**ldap_env, "MFA_PORTAL_DATA_DIR": str(data_dir),
           "MFA_PORTAL_LDAP_URL": f"ldap://127.0.0.1:{free_port()}"}
    code, _out, err = _run(["directory", "test"], env)
    assert code == 1 and "cannot be reached" in err
    code, _out, err = _run(["directory", "test"], {**env, "MFA_PORTAL_LDAP_BIND_PASSWORD": "wrong"})
    assert code == 1
    code, _out, err = _run(["directory", "test"], {"MFA_PORTAL_DATA_DIR": str(data_dir)})
    assert code == 1 and "MFA_PORTAL_LDAP_URL" in err
    code, _out, err = _run(["directory", "test"], {**env, "MFA_PORTAL_LDAP_URL": "ldap://ldap.example.com",
                                                   "MFA_PORTAL_LDAP_START_TLS": "0"})
    assert code == 1 and "clear" in err


def test_directory_test_wrong_service_password(ldap_env, data_dir):
    env = {**ldap_env, "MFA_PORTAL_DATA_DIR": str(data_dir), "MFA_PORTAL_LDAP_BIND_PASSWORD": "wrong"}
    code, _out, err = _run(["directory", "test"], env)
    assert code == 1 and "service account" in err


@pytest.mark.parametrize("argv", [["users", "add", "zed", "--password-stdin"],
                                  ["users", "passwd", "alice", "--password-stdin"],
                                  ["users", "remove", "alice"],
                                  ["users", "roles", "alice", "user", "admin"]])
def test_user_changes_answer_that_the_company_directory_manages_users(ldap_env, data_dir, argv):
    env = {**ldap_env, "MFA_PORTAL_DATA_DIR": str(data_dir)}
    code, _out, err = _run(argv, env)
    assert code == 2 and "managed in the company directory" in err
    assert not (data_dir / "users.yaml").exists()


def test_users_roles_shows_the_directory_roles(ldap_env, data_dir):
    env = {**ldap_env, "MFA_PORTAL_DATA_DIR": str(data_dir)}
    code, out, err = _run(["users", "roles", "carol"], env)
    assert code == 0 and "admin" in out, err


def test_no_settings_no_change(data_dir, clock, tmp_path, monkeypatch):
    """`make run` with no settings: the data dir's users.yaml, no ldap3 imported."""
    import subprocess
    import sys

    import mfa_core
    from mfa_core.users import UserDirectory
    monkeypatch.setattr(config, "SECRETS_FILE", tmp_path / "absent.toml")
    svc = mfa_core.open_service(data_dir, clock=clock, environ={})
    assert type(svc.directory) is UserDirectory
    probe = "import sys, mfa_core, mfa_core.cli, mfa_core.directory; print('ldap3' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(config.Path(__file__).resolve().parents[2])})
    assert out.stdout.strip() == "False"


def test_ldap3_is_imported_only_by_the_directory_package():
    from pathlib import Path
    root = Path(__file__).resolve().parents[2]
    offenders = [str(p.relative_to(root)) for folder in ("mfa_core", "portal", "pages")
                 for p in (root / folder).rglob("*.py")
                 if "ldap3" in p.read_text(encoding="utf-8") and "directory" not in p.parts]
    assert offenders == []


def test_a_settings_error_shows_no_host_to_the_public(data_dir, clock, monkeypatch, tmp_path):
    import mfa_core
    monkeypatch.setattr(config, "SECRETS_FILE", tmp_path / "absent.toml")
    env = {**BASE_ENV, "MFA_PORTAL_LDAP_URL": "ldap://dc1.corp.example.com", "MFA_PORTAL_LDAP_START_TLS": "0"}
    with pytest.raises(mfa_core.StoreUnavailable) as caught:
        mfa_core.open_service(data_dir, clock=clock, environ=env)
    assert "dc1.corp" not in str(caught.value) and "dc1.corp" in caught.value.detail
    code, _out, err = _run(["users", "list"], {**env, "MFA_PORTAL_DATA_DIR": str(data_dir)})
    assert code == 1 and "in the clear" in err
