"""The helpdesk's user search: mfa_core.users.UserIndex over parsed directory entries."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mfa_core.users import User, UserDirectory, UserIndex, search_text, user_from_entry

ENTRIES = {
    "bob": {"first_name": "Bob", "last_name": "Example", "email": "bob@example.com",
            "password": "$2b$hash", "roles": ["user"]},
    "alice": {"name": "Alice Example", "email": "Alice@Example.COM", "roles": ["user"]},
    "admin": {"first_name": "Helpdesk", "last_name": "Admin", "email": "admin@example.com",
              "roles": ["user", "admin"]},
    "carol": {},  # a bare entry: her name is her username
    "broken": "not a mapping",
    "nothing": None,
}


def test_the_index_holds_every_valid_entry_sorted_by_username():
    index = UserIndex(ENTRIES)
    assert index.names == ("admin", "alice", "bob", "carol")
    assert len(index) == 4


@pytest.mark.parametrize("query, expected", [
    ("bob", ["bob"]), ("ALICE", ["alice"]), ("example.com", ["admin", "alice", "bob"]),
    ("helpdesk", ["admin"]), ("  bob@  ", ["bob"]), ("admin", ["admin"]),
    ("example", ["admin", "alice", "bob"]), ("car", ["carol"]), ("nobody-here", []),
    ("password", []), ("$2b", []),  # the hash and the field names are not searched
    ("user", []),  # nor the roles
])
def test_search_matches_username_name_and_email_case_insensitively(query, expected):
    assert list(UserIndex(ENTRIES).search(query)) == expected


@pytest.mark.parametrize("query", ["", "   ", None])
def test_a_blank_search_lists_everyone(query):
    index = UserIndex(ENTRIES)
    assert list(index.search(query)) == ["admin", "alice", "bob", "carol"]


def test_user_builds_the_user_of_one_entry_or_none():
    index = UserIndex(ENTRIES)
    assert index.user("admin") == User("admin", "Helpdesk Admin", "admin@example.com", ["user", "admin"])
    assert index.user("admin").is_admin
    assert index.user("alice").name == "Alice Example"
    assert index.user("carol") == User("carol", "carol", "", [])
    assert index.user("broken") is None and index.user("nobody") is None
    assert index.user(None) is None  # type: ignore[arg-type]


def test_building_and_searching_never_change_the_entries():
    entries = copy.deepcopy(ENTRIES)
    index = UserIndex(entries)
    index.search("example")
    index.user("alice").roles.append("admin")  # a User's roles are its own list
    assert entries == ENTRIES
    assert not index.user("alice").is_admin


def test_the_index_reads_the_entries_given_at_build_time():
    entries = copy.deepcopy(ENTRIES)
    index = UserIndex(entries)
    entries["zed"] = {"name": "Zed"}
    assert "zed" not in index.names and list(index.search("zed")) == []


def test_search_text_and_user_from_entry():
    assert search_text("bob", ENTRIES["bob"]) == "bob bob example bob@example.com"
    assert search_text("alice", ENTRIES["alice"]) == "alice alice example alice@example.com"
    assert search_text("carol", {}) == "carol"
    assert user_from_entry("bob", ENTRIES["bob"]).name == "Bob Example"
    assert UserDirectory._user("bob", ENTRIES["bob"]) == user_from_entry("bob", ENTRIES["bob"])


def test_the_directory_index_reads_users_yaml(directory: UserDirectory):
    index = directory.index()
    assert index.names == ("admin", "alice", "bob")
    assert list(index.search("bob@")) == ["bob"]
    assert index.user("admin") == directory.get("admin")
    directory.add("zoe", "zoe-pass-123", name="Zoe Example")
    assert "zoe" not in index.names  # an index is a snapshot
    assert directory.index().names == ("admin", "alice", "bob", "zoe")


def test_an_empty_directory_gives_an_empty_index(data_dir):
    index = UserDirectory(data_dir).index()
    assert len(index) == 0 and list(index.search("")) == [] and list(index.search("a")) == []


_names = st.text("abcxyz0._@-", min_size=1, max_size=8)
_words = st.one_of(st.none(), st.text("abcXYZ .@", max_size=10))


@given(st.dictionaries(_names, st.fixed_dictionaries(
    {}, optional={"name": _words, "first_name": _words, "last_name": _words, "email": _words}),
    max_size=12), st.text("abcXYZ .@", max_size=4))
def test_search_is_a_substring_filter_over_the_sorted_users(entries, query):
    """Whatever the directory and query: the index gives what a full scan gives."""
    needle = query.strip().lower()
    expected = [name for name in sorted(entries)
                if needle in " ".join(str(v) for v in (name, *(entries[name].get(k) for k in
                                      ("name", "first_name", "last_name", "email"))) if v).lower()]
    assert list(UserIndex(entries).search(query)) == expected
