"""users.yaml under threads and processes: no change is lost; reads share a parse until the file changes.

Real files in tmp_path, real bcrypt, the real CLI in subprocesses. New
passwords are hashed at bcrypt's default cost (~0.25 s each here), so each
test hashes at most a dozen; users that only need to exist are written to the
file with a cost-4 hash, as another writer (an operator's script) could.
"""

from __future__ import annotations

import concurrent.futures
import copy
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import bcrypt
import pytest
import yaml
from filelock import FileLock

from mfa_core.users import USERS_FILE, UserDirectory, UserDirectoryError

from .conftest import REPO, cli_env

THREADS = 12


def run_together(tasks: list[Callable[[], None]]) -> None:
    """Run every task in its own thread, all released at once; re-raise the first failure."""
    barrier = threading.Barrier(len(tasks))
    failures: list[BaseException] = []

    def run(task: Callable[[], None]) -> None:
        try:
            barrier.wait(timeout=30)
            task()
        except BaseException as exc:  # reported by the test thread below
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(task,)) for task in tasks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    if failures:
        raise failures[0]


def check_all(directory: UserDirectory, passwords: dict[str, str]) -> dict[str, bool]:
    """check_password of every (user, password), in parallel (bcrypt releases the GIL)."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        return dict(zip(passwords, pool.map(directory.check_password, passwords, passwords.values())))


def seed(data_dir: Path, names: list[str]) -> dict[str, str]:
    """users.yaml with ``names`` (password "<name>-pass-0", cost-4 hash); returns the passwords."""
    data_dir.mkdir(parents=True, exist_ok=True)
    passwords = {name: f"{name}-pass-0" for name in names}
    users = {name: {"email": f"{name}@example.com", "first_name": name, "last_name": "",
                    "password": bcrypt.hashpw(pw.encode(), bcrypt.gensalt(4)).decode("ascii"),
                    "roles": ["user"], "failed_login_attempts": 0, "logged_in": False}
             for name, pw in passwords.items()}
    (data_dir / USERS_FILE).write_text(yaml.safe_dump({"credentials": {"usernames": users}}), "utf-8")
    return passwords


def on_file(data_dir: Path) -> dict:
    """The usernames as the file holds them, parsed here (not through any cache)."""
    return yaml.safe_load((data_dir / USERS_FILE).read_text("utf-8"))["credentials"]["usernames"]


def no_temp_files(data_dir: Path) -> bool:
    return not list(data_dir.glob(f".{USERS_FILE}.*.tmp"))


# The number of read(2) on x86_64 and aarch64: /proc/PID/syscall shows "<nr> 0x0 ..."
# while a process is blocked reading its stdin.
_READ_SYSCALL = {"x86_64": 0, "aarch64": 63}.get(platform.machine())


def wait_until_reading_stdin(proc: subprocess.Popen, timeout: float = 20) -> None:
    """Block until ``proc`` waits for its stdin (the CLI asking for the password).

    Where /proc cannot tell, wait a second instead: the test stays correct,
    it may just overlap less.
    """
    if _READ_SYSCALL is None:
        time.sleep(1)
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            fields = Path(f"/proc/{proc.pid}/syscall").read_text().split()
        except OSError:
            time.sleep(1)
            return
        if fields[:2] == [str(_READ_SYSCALL), "0x0"]:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.01)
    raise AssertionError(f"process {proc.pid} never asked for its password")


# -- threads ------------------------------------------------------------------------

def test_threads_sharing_one_directory_lose_no_user(data_dir):
    directory = UserDirectory(data_dir)
    passwords = {f"user{n:02d}": f"user{n:02d}-secret" for n in range(THREADS)}

    run_together([lambda name=name, pw=pw: directory.add(name, pw, email=f"{name}@example.com")
                  for name, pw in passwords.items()])

    assert sorted(on_file(data_dir)) == sorted(passwords)
    assert [u.username for u in directory.users()] == sorted(passwords)
    fresh = UserDirectory(data_dir)  # no cache of the writer's
    assert all(check_all(fresh, passwords).values())
    assert fresh.get("user07").email == "user07@example.com"
    assert no_temp_files(data_dir)


def test_threads_changing_passwords_and_roles_of_different_users_lose_nothing(data_dir):
    names = [f"user{n:02d}" for n in range(THREADS)]
    old = seed(data_dir, names)
    directory = UserDirectory(data_dir)
    new_passwords = {name: f"{name}-pass-new" for name in names[:4]}
    role_users = names[4:]

    def change_roles(name: str) -> None:
        for n in range(15):  # many short writes: the most chances to lose one
            directory.set_roles(name, ["user", f"{name}-role-{n}"])

    run_together([lambda name=name: directory.set_password(name, new_passwords[name])
                  for name in new_passwords] +
                 [lambda name=name: change_roles(name) for name in role_users])

    stored = on_file(data_dir)
    assert sorted(stored) == names
    for name in role_users:
        assert stored[name]["roles"] == ["user", f"{name}-role-14"]
    for name in new_passwords:
        assert stored[name]["roles"] == ["user"]
    fresh = UserDirectory(data_dir)
    assert check_all(fresh, new_passwords) == dict.fromkeys(new_passwords, True)
    assert check_all(fresh, {n: old[n] for n in new_passwords}) == dict.fromkeys(new_passwords, False)
    assert check_all(fresh, {n: old[n] for n in role_users}) == dict.fromkeys(role_users, True)


def test_objects_on_one_path_spelled_differently_exclude_each_other(data_dir, tmp_path):
    names = [f"user{n:02d}" for n in range(8)]
    seed(data_dir, names)
    (tmp_path / "elsewhere").mkdir()
    first = UserDirectory(data_dir)
    second = UserDirectory(tmp_path / "elsewhere" / ".." / data_dir.name)  # the same file

    def change_roles(directory: UserDirectory, name: str) -> None:
        for n in range(20):
            directory.set_roles(name, [f"role-{n}"])

    run_together([lambda d=(first if i % 2 else second), name=name: change_roles(d, name)
                  for i, name in enumerate(names)])

    stored = on_file(data_dir)
    assert {name: stored[name]["roles"] for name in names} == dict.fromkeys(names, ["role-19"])


def test_a_held_lock_makes_a_change_give_up_with_a_clear_error(data_dir):
    seed(data_dir, ["alice"])
    before = (data_dir / USERS_FILE).read_bytes()
    directory = UserDirectory(data_dir, lock_timeout=0.3)
    # Another writer holds the file lock (its own descriptor, as another process's would be).
    with FileLock(str(data_dir / USERS_FILE) + ".lock", thread_local=False):
        started = time.monotonic()
        with pytest.raises(UserDirectoryError, match="locked for 0.3 s; nothing was changed"):
            directory.set_roles("alice", ["admin"])
        assert time.monotonic() - started < 5
    assert (data_dir / USERS_FILE).read_bytes() == before
    directory.set_roles("alice", ["admin"])  # free again
    assert directory.require("alice").is_admin


# -- processes ---------------------------------------------------------------------

def test_cli_processes_and_threads_adding_at_once_lose_no_user(data_dir, tmp_path):
    directory = UserDirectory(data_dir)
    directory.get("nobody")  # the shared object has read the file before the rush
    cli_users = {f"cli{n}": f"cli{n}-secret-pw" for n in range(4)}
    thread_users = {f"thread{n}": f"thread{n}-secret-pw" for n in range(4)}
    procs = {name: subprocess.Popen(
        [sys.executable, "-m", "mfa_core", "--data-dir", str(data_dir), "users", "add", name,
         "--email", f"{name}@example.com", "--password-stdin"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        cwd=tmp_path, env=cli_env(data_dir)) for name in cli_users}
    try:
        for proc in procs.values():
            wait_until_reading_stdin(proc)  # started up; only the hash and the write are left

        def release_the_cli() -> None:
            for name, proc in procs.items():
                proc.stdin.write(cli_users[name] + "\n")
                proc.stdin.flush()  # communicate() below closes it

        run_together([release_the_cli] +
                     [lambda name=name, pw=pw: directory.add(name, pw) for name, pw in thread_users.items()])
        for name, proc in procs.items():
            out, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
            assert out == f"Added user {name} (roles: user).\n"
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    everyone = {**cli_users, **thread_users}
    stored = on_file(data_dir)  # the file is valid YAML holding everyone
    assert sorted(stored) == sorted(everyone)
    assert stored["cli3"]["email"] == "cli3@example.com"
    assert [u.username for u in directory.users()] == sorted(everyone)  # the cache saw the others
    assert all(check_all(directory, cli_users).values())  # what came through the pipes
    assert all(directory.password_hash(name) for name in thread_users)
    assert no_temp_files(data_dir)


ENSURE_DEMO = """
import sys
from mfa_core.users import UserDirectory
directory = UserDirectory(sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()
print(directory.ensure_demo_users(), flush=True)
"""


def test_processes_creating_the_demo_users_at_once_make_exactly_three(data_dir, tmp_path):
    procs = [subprocess.Popen([sys.executable, "-c", ENSURE_DEMO, str(data_dir)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, cwd=REPO, env=cli_env(data_dir)) for _ in range(3)]
    try:
        for proc in procs:
            assert proc.stdout.readline() == "ready\n", proc.communicate()
        for proc in procs:  # all start at once on the fresh dir
            proc.stdin.write("go\n")
            proc.stdin.flush()
        results = []
        for proc in procs:
            out, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
            assert err == ""
            results.append(out.strip())
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    assert sorted(results) == ["False", "False", "True"]  # one created them
    assert sorted(on_file(data_dir)) == ["admin", "alice", "bob"]
    directory = UserDirectory(data_dir)
    assert directory.require("admin").is_admin and not directory.require("bob").is_admin
    assert check_all(directory, {"alice": "alice-demo", "bob": "bob-demo", "admin": "admin-demo"}) \
        == {"alice": True, "bob": True, "admin": True}
    assert directory.ensure_demo_users() is False  # not fresh any more: left alone
    assert no_temp_files(data_dir)


# -- the cache ---------------------------------------------------------------------

def test_reads_share_one_parse_until_the_file_changes(data_dir):
    seed(data_dir, ["alice", "bob"])
    directory = UserDirectory(data_dir)
    entries = directory.entries()
    index = directory.index()
    directory.get("alice"), directory.check_password("bob", "bob-pass-0"), directory.users()
    assert directory.entries() is entries and directory.index() is index  # not parsed again
    directory.set_roles("bob", ["user", "admin"])
    assert directory.entries() is not entries
    assert directory.index() is not index and directory.index() is directory.index()
    assert directory.require("bob").is_admin


def test_a_change_never_touches_a_parse_already_handed_out(data_dir):
    seed(data_dir, ["alice", "bob"])
    directory = UserDirectory(data_dir)
    held = directory.entries()
    as_read = copy.deepcopy(held)
    directory.set_roles("alice", ["admin"])
    directory.remove("bob")
    directory.credentials()["usernames"]["alice"]["roles"].append("changed")  # credentials() is a copy
    assert held == as_read
    assert sorted(directory.entries()) == ["alice"]
    assert directory.require("alice").roles == ["admin"]


def test_a_change_by_another_process_is_seen_by_the_next_read(data_dir, tmp_path):
    seed(data_dir, ["alice"])
    directory = UserDirectory(data_dir)
    assert directory.get("carol") is None and len(directory.index()) == 1
    proc = subprocess.run([sys.executable, "-m", "mfa_core", "--data-dir", str(data_dir), "users",
                           "add", "carol", "--password-stdin"], input="carol-secret-1\n",
                          capture_output=True, text=True, cwd=tmp_path, env=cli_env(data_dir),
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert directory.get("carol").username == "carol"
    assert directory.index().names == ("alice", "carol")
    assert directory.check_password("carol", "carol-secret-1")


def test_a_change_through_another_object_or_an_editor_is_seen_by_the_next_read(data_dir):
    seed(data_dir, ["alice", "bob"])
    reader, writer = UserDirectory(data_dir), UserDirectory(data_dir)
    assert reader.require("bob").roles == ["user"]
    writer.set_roles("bob", ["uzer"])  # same size: the new inode tells
    assert reader.require("bob").roles == ["uzer"]
    # An editor rewriting the file in place (same inode): mtime and size tell.
    path = data_dir / USERS_FILE
    path.write_text(path.read_text("utf-8").replace("uzer", "helpdesk"), "utf-8")
    assert reader.require("bob").roles == ["helpdesk"]
    path.unlink()
    assert reader.users() == [] and reader.get("alice") is None
    assert reader.password_hash("alice") is None


def test_password_hash_is_the_stored_hash_or_none(data_dir):
    seed(data_dir, ["alice"])
    directory = UserDirectory(data_dir)
    directory.add("bob", "bob-secret-1")
    for name, password in (("alice", "alice-pass-0"), ("bob", "bob-secret-1")):
        hashed = directory.password_hash(name)
        assert isinstance(hashed, str) and hashed == on_file(data_dir)[name]["password"]
        assert bcrypt.checkpw(password.encode(), hashed.encode("ascii"))
    assert directory.password_hash("nobody") is None
    assert directory.password_hash("") is None


def test_password_hash_is_none_for_an_entry_without_a_usable_hash(data_dir):
    seed(data_dir, ["alice"])
    path = data_dir / USERS_FILE
    data = yaml.safe_load(path.read_text("utf-8"))
    good = data["credentials"]["usernames"]["alice"]["password"]
    data["credentials"]["usernames"].update({
        "plain": {"password": "plain-text-pw"},  # hand-edited, never hashed
        "nohash": {"email": "nohash@example.com"},
        "empty": {"password": ""},
        "number": {"password": 12345678},
        "cut": {"password": good[:-1]},
        "junk": "not a mapping",
        "nothing": None,
    })
    path.write_text(yaml.safe_dump(data), "utf-8")
    directory = UserDirectory(data_dir)
    for name in ("plain", "nohash", "empty", "number", "cut", "junk", "nothing"):
        assert directory.password_hash(name) is None, name
    assert directory.check_password("plain", "plain-text-pw") is False
    assert directory.check_password("junk", "whatever-pw") is False
    assert directory.password_hash("alice") == good


@pytest.mark.parametrize("username", [None, 1, b"alice", ["alice"]])
def test_password_hash_refuses_a_username_that_is_not_a_str(data_dir, username):
    seed(data_dir, ["alice"])
    with pytest.raises(TypeError):
        UserDirectory(data_dir).password_hash(username)


@pytest.mark.parametrize("content", ["credentials: [unclosed", "- a list\n", "credentials: text\n",
                                     "credentials:\n  usernames: [alice]\n"])
def test_a_file_that_is_no_user_file_cannot_be_read(data_dir, content):
    data_dir.mkdir(parents=True)
    (data_dir / USERS_FILE).write_text(content, "utf-8")
    directory = UserDirectory(data_dir)
    for read in (directory.users, directory.entries, lambda: directory.password_hash("alice"),
                 lambda: directory.get("alice")):
        with pytest.raises(UserDirectoryError, match="cannot be read"):
            read()
    with pytest.raises(UserDirectoryError, match="cannot be read"):
        directory.set_roles("alice", ["user"])  # nothing is written over it
    assert (data_dir / USERS_FILE).read_text("utf-8") == content
