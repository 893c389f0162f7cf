"""portal.users.index: the helpdesk's search index, built once per version of users.yaml."""

from __future__ import annotations

import portal.config
from portal import users


def test_the_index_is_built_once_and_shared_while_the_file_is_unchanged(data_dir):
    p = portal.config.portal()  # the demo users: alice, bob, admin
    first = users.index(p)
    assert first.names == ("admin", "alice", "bob")
    assert users.index(p) is first
    assert users.index(portal.config.portal()) is first
    assert list(first.search("Bob@")) == ["bob"]
    assert first.user("admin") == users.lookup(p, "admin")


def test_a_changed_file_gives_a_new_index_with_the_change(data_dir):
    p = portal.config.portal()
    before = users.index(p)
    p.directory.add("zoe", "zoe-pass-123", name="Zoe Example", email="zoe@example.org")
    after = users.index(p)
    assert after is not before
    assert after.names == ("admin", "alice", "bob", "zoe")
    assert list(after.search("example.org")) == ["zoe"]
    assert before.names == ("admin", "alice", "bob")  # a run still holding it sees its snapshot
    p.directory.remove("bob")
    assert users.index(p).names == ("admin", "alice", "zoe")


def test_the_index_and_the_snapshot_agree(data_dir):
    p = portal.config.portal()
    entries = users.entries(p)
    index = users.index(p)
    assert set(index.names) == {name for name, entry in entries.items() if isinstance(entry, dict)}
    assert index.user("alice").email == entries["alice"]["email"]


def test_an_unreadable_directory_gives_an_empty_index(data_dir):
    p = portal.config.portal()
    assert len(users.index(p)) == 3
    p.directory.path.write_text("credentials: [unclosed", encoding="utf-8")
    empty = users.index(p)
    assert len(empty) == 0 and list(empty.search("")) == []
    p.directory.path.unlink()
    assert len(users.index(p)) == 0
