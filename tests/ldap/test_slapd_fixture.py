"""The test slapd itself: plain, StartTLS and ldaps answer; memberOf and ppolicy work."""

from __future__ import annotations

import ssl

import ldap3

from ..ldap_server import HELPDESK_DN, SERVICE_DN, SERVICE_PASSWORD


def _tls(slapd):
    return ldap3.Tls(ca_certs_file=str(slapd.ca_file), validate=ssl.CERT_REQUIRED)


def test_starttls_and_ldaps_with_the_test_ca(slapd):
    server = ldap3.Server(slapd.url, tls=_tls(slapd))
    conn = ldap3.Connection(server, SERVICE_DN, SERVICE_PASSWORD)
    conn.open()
    assert conn.start_tls()
    assert conn.bind()
    conn.unbind()
    conn = ldap3.Connection(ldap3.Server(slapd.ldaps_url, use_ssl=True, tls=_tls(slapd)),
                            SERVICE_DN, SERVICE_PASSWORD, auto_bind=True)
    assert conn.bound
    conn.unbind()


def test_memberof_and_entryuuid(slapd):
    conn = ldap3.Connection(ldap3.Server(slapd.url), SERVICE_DN, SERVICE_PASSWORD, auto_bind=True)
    conn.search(slapd.user_dn("carol"), "(objectClass=*)", ldap3.BASE, attributes=["memberOf", "entryUUID"])
    entry = conn.entries[0]
    assert HELPDESK_DN.lower() in [v.lower() for v in entry.memberOf.values]
    assert len(str(entry.entryUUID)) == 36
    conn.unbind()


def test_ppolicy_lock_refuses_the_bind(slapd, new_user):
    uid, dn = new_user("locked-pass-1")
    assert ldap3.Connection(ldap3.Server(slapd.url), dn, "locked-pass-1").bind()
    slapd.modify(dn, {"pwdAccountLockedTime": "000001010000Z"})
    assert not ldap3.Connection(ldap3.Server(slapd.url), dn, "locked-pass-1").bind()
