"""`users list` reads everyone from the company directory, a page at a time (the paged results
control, RFC 2696): never stopped at the first 1,000, never the whole directory in one answer."""

from __future__ import annotations

import io
import json

import pytest

from mfa_core import cli

from .. import ldap_server
from ..ldap_server import PEOPLE, SlapdServer
from ..support import running
from .conftest import ldap_environ


def _uids(server) -> set[str]:
    with server._conn(None) as admin:  # the manager: no size limit
        admin.search(PEOPLE, "(objectClass=inetOrgPerson)", attributes=["uid"])
        return {e.uid.value.lower() for e in admin.entries}


def test_everyone_page_by_page(ldap_svc, running_slapd, new_user):
    for _ in range(3):
        new_user()
    backend = ldap_svc.directory.backend
    expected = _uids(running_slapd)
    before = backend.searches
    accounts, complete = backend.all_accounts(page_size=3)
    assert complete
    assert [a.username for a in accounts] == sorted(expected)
    pages = -(-len(expected) // 3)
    assert backend.searches - before in (pages, pages + 1)  # one search a page (and an empty last one)
    assert {a.username for a in ldap_svc.directory.users()} == expected


@pytest.fixture(scope="module")
def crowded_slapd():
    with running(SlapdServer, require="MFA_PORTAL_REQUIRE_LDAP", what="slapd",
                 hint=ldap_server.INSTALL_HINT, close="close") as server:
        with server._conn(None) as admin:
            for i in range(1100):
                server.add_user(f"crowd{i:04d}", "crowd-directory-1", conn=admin)
        yield server


def test_users_list_goes_past_a_thousand(crowded_slapd, tmp_path):
    env = {**ldap_environ(crowded_slapd), "MFA_PORTAL_DATA_DIR": str(tmp_path / "data")}
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(["users", "list", "--json"], environ=env, stdin=io.StringIO(""), stdout=out, stderr=err)
    assert code == 0, err.getvalue()
    listed = [u["username"] for u in json.loads(out.getvalue())]
    assert len(listed) == 1104 == len(set(listed))  # 1,100 and the four the server starts with
    assert "crowd1099" in listed and err.getvalue() == ""


def test_a_listing_the_server_stops_says_so(crowded_slapd, tmp_path):
    """An account without the limits the portal's has (the server's 500 for everyone): the
    listing ends early, and the command says so instead of passing 500 off as everyone."""
    env = {**ldap_environ(crowded_slapd), "MFA_PORTAL_DATA_DIR": str(tmp_path / "data"),
           "MFA_PORTAL_LDAP_BIND_DN": crowded_slapd.user_dn("alice"),
           "MFA_PORTAL_LDAP_BIND_PASSWORD": "alice-directory-1"}
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(["users", "list", "--json"], environ=env, stdin=io.StringIO(""), stdout=out, stderr=err)
    assert code == 0
    assert len(json.loads(out.getvalue())) == 500
    assert err.getvalue().startswith("Only the first 500 users: the directory stopped the listing")
