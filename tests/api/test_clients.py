"""The API client registry (mfa_core.clients) and the ``clients`` commands: no server needed."""

from __future__ import annotations

import io
import json
import multiprocessing
import stat
import sys
import threading
import types
from pathlib import Path

import pytest

import mfa_core
from mfa_core import clients as api_clients
from mfa_core.cli import main as cli_main

PEPPER = b"p" * 32


@pytest.fixture
def registry(tmp_path) -> api_clients.FileClientRegistry:
    return api_clients.FileClientRegistry(tmp_path, PEPPER)


def run_cli(data_dir: Path, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = cli_main([*argv, "--data-dir", str(data_dir)], environ={"MFA_PORTAL_ACTOR": "ops"},
                      stdin=io.StringIO(), stdout=out, stderr=err)
    return status, out.getvalue(), err.getvalue()


def test_only_a_keyed_hash_of_the_key_is_stored_in_a_0600_file(registry):
    key = registry.add("vpn", rate=120)
    assert key.startswith(api_clients.KEY_PREFIX) and len(key) == len(api_clients.KEY_PREFIX) + 43
    raw = registry.path.read_text()
    assert key not in raw and key[len(api_clients.KEY_PREFIX):] not in raw
    assert json.loads(raw)["clients"]["vpn"]["key_hash"] == api_clients.key_hash(PEPPER, key)
    assert stat.S_IMODE(registry.path.stat().st_mode) == 0o600
    # Another server key (pepper) does not recognise it.
    other = api_clients.FileClientRegistry(registry.path.parent, b"q" * 32)
    assert other.authenticate(key) is None
    assert registry.authenticate(key).name == "vpn"


def test_authenticate_refuses_wrong_removed_rotated_and_malformed_keys(registry):
    key = registry.add("vpn")
    registry.add("ssh")
    for bad in (None, 123, b"bytes", "", "mfap_", key + "x", key[:-1], "x" * 10_000, key.upper()):
        assert registry.authenticate(bad) is None, bad
    new = registry.rotate("vpn")
    assert registry.authenticate(key) is None and registry.authenticate(new).name == "vpn"
    assert registry.get("vpn").rotated_at is not None
    registry.remove("vpn")
    assert registry.authenticate(new) is None and [c.name for c in registry.clients()] == ["ssh"]


def test_refusals(registry):
    registry.add("vpn")
    with pytest.raises(api_clients.ClientError):
        registry.add("vpn")
    for name in ("", "VPN", "a b", "-x", "x" * 65, "api:vpn"):
        with pytest.raises(ValueError):
            registry.add(name)
    with pytest.raises(TypeError):
        registry.add(None)
    for rate in (0, -1, api_clients.MAX_RATE + 1):
        with pytest.raises(ValueError):
            registry.add("other", rate=rate)
    for rate in (1.5, "10", True):
        with pytest.raises(TypeError):
            registry.add("other", rate=rate)
    for change in (registry.remove, registry.rotate):
        with pytest.raises(api_clients.ClientError):
            change("nobody")


@pytest.mark.parametrize("content", [b"", b"{", b"[]", b'{"version": 2, "clients": {}}',
                                     b'{"version": 1, "clients": {"vpn": {"rate": 1}}}',
                                     b'{"version": 1, "clients": {"BAD NAME": {}}}'])
def test_a_damaged_registry_lets_no_one_in(registry, content):
    key = registry.add("vpn")
    registry.path.write_bytes(content)
    with pytest.raises(api_clients.ClientRegistryDamaged):
        registry.authenticate(key)
    with pytest.raises(mfa_core.StorageError):  # the CLI's "unusable data" (exit 1)
        registry.clients()


def test_last_used_is_kept_to_the_minute(tmp_path):
    now = [1_000_000.0]
    registry = api_clients.FileClientRegistry(tmp_path, PEPPER, clock=lambda: now[0])
    registry.add("vpn")
    registry.touch("vpn")
    assert registry.get("vpn").last_used == now[0]
    stamp = registry.path.stat().st_mtime_ns
    now[0] += 30
    registry.touch("vpn")  # within the minute: no write
    assert registry.path.stat().st_mtime_ns == stamp and registry.get("vpn").last_used == now[0] - 30
    now[0] += 31
    registry.touch("vpn")
    assert registry.get("vpn").last_used == now[0]
    registry.touch("nobody")  # never raises


def _add_many(data_dir: str, prefix: str, count: int) -> None:
    registry = api_clients.FileClientRegistry(data_dir, PEPPER)
    for i in range(count):
        registry.add(f"{prefix}-{i}")


def test_changes_from_threads_and_processes_are_never_lost(tmp_path, monkeypatch):
    # A spawned child re-runs the parent's __main__ (AppTest may have left a page script there).
    monkeypatch.setitem(sys.modules, "__main__", types.ModuleType("__main__"))
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_add_many, args=(str(tmp_path), f"proc{p}", 10)) for p in range(2)]
    threads = [threading.Thread(target=_add_many, args=(str(tmp_path), f"thread{t}", 10))
               for t in range(4)]
    for worker in [*procs, *threads]:
        worker.start()
    for thread in threads:
        thread.join()
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0
    names = {c.name for c in api_clients.FileClientRegistry(tmp_path, PEPPER).clients()}
    assert len(names) == 60


def test_cli_clients_add_prints_the_key_last_and_list_never_shows_it(tmp_path):
    status, out, err = run_cli(tmp_path, "clients", "add", "vpn", "--rate", "120")
    assert status == 0 and err == ""
    key = out.splitlines()[-1]
    assert key.startswith(api_clients.KEY_PREFIX) and key == key.strip()
    svc = mfa_core.open_service(tmp_path, environ={})
    assert api_clients.open_registry(tmp_path, svc).authenticate(key).rate == 120

    status, out, _ = run_cli(tmp_path, "clients", "list")
    assert status == 0 and "vpn" in out and "120" in out and key not in out
    status, out, _ = run_cli(tmp_path, "clients", "list", "--json")
    assert json.loads(out)[0]["name"] == "vpn" and key[5:] not in out

    status, out, _ = run_cli(tmp_path, "clients", "rotate", "vpn")
    new = out.splitlines()[-1]
    assert status == 0 and new != key and new.startswith(api_clients.KEY_PREFIX)
    assert run_cli(tmp_path, "clients", "rate", "vpn", "60")[0] == 0
    assert run_cli(tmp_path, "clients", "remove", "vpn")[0] == 0
    events = [e.event for e in svc.audit() if e.actor == "ops"]
    assert events == ["api_client_added", "api_client_rotated", "api_client_changed",
                      "api_client_removed"]


@pytest.mark.parametrize("argv", [
    ("clients", "add", "Bad Name"), ("clients", "add", "vpn", "--rate", "0"),
    ("clients", "add", "vpn", "--rate", "many"), ("clients", "remove", "nobody"),
    ("clients", "rotate", "nobody"), ("clients", "rate", "nobody", "5"), ("clients",),
])
def test_cli_clients_refusals_are_one_line_and_exit_2(tmp_path, argv, capsys):
    status, out, err = run_cli(tmp_path, *argv)
    err += capsys.readouterr().err  # argparse's own errors go to sys.stderr
    assert status == 2 and err.count("\n") == 1, err


def test_cli_clients_on_a_damaged_registry_exits_1(tmp_path):
    run_cli(tmp_path, "clients", "add", "vpn")
    (tmp_path / api_clients.CLIENTS_FILE).write_text("{")
    status, _, err = run_cli(tmp_path, "clients", "list")
    assert status == 1 and "damaged" in err
