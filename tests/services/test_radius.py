"""The RADIUS server against real clients: Debian's ``radclient`` and a ``pyrad`` client.

One server for the module (``python -m mfa_core radius --address 127.0.0.1
--port P`` on this module's data dir, real time), three clients on it, one
per mode (the registry maps addresses to clients: the ``code`` client is
127.0.0.1, ``password+code`` 127.0.0.2, ``challenge`` 127.0.0.3; radclient
always sends from 127.0.0.1, so the other modes are asked with pyrad from a
socket bound to their address). Each test enrolls users of its own through
the engine on the same data dir, so no code is spent twice across tests.

Without radclient these tests skip; with MFA_PORTAL_REQUIRE_RADIUS=1 (CI)
they fail instead.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pyotp
import pytest

import mfa_core
from mfa_core import radius_clients

pyrad = pytest.importorskip("pyrad")
from pyrad import packet  # noqa: E402
from pyrad.dictionary import Dictionary  # noqa: E402

from mfa_services.radius import modes  # noqa: E402
from mfa_services.radius.dedupe import IN_FLIGHT, NEW, DedupeCache  # noqa: E402
from mfa_services.radius.server import DICTIONARY  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
HINT = "the RADIUS tests need radclient: `sudo apt-get install freeradius-utils`"
DICT = Dictionary(str(DICTIONARY))
PASSWORD = "s3cret-pass"
WAIT = 10.0  # seconds a test waits for an answer it expects (generous: a shared machine)
SILENCE = 2  # seconds of silence that count as "no answer" (the server answers in ms; radclient takes whole seconds)


def need_radclient() -> str:
    found = shutil.which("radclient")
    if found is None:
        if os.environ.get("MFA_PORTAL_REQUIRE_RADIUS") == "1":
            pytest.fail(HINT)
        pytest.skip(HINT)
    return found


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MFA_PORTAL_")}
    env.update(MFA_PORTAL_DATA_DIR=str(data_dir), PYTHONUNBUFFERED="1", PYTHONDONTWRITEBYTECODE="1",
               PYTHONPATH=str(REPO))
    env.update(extra)
    return env


def start_server(data_dir: Path, log_path: Path, *extra: str, port: int | None = None,
                 **env: str) -> tuple[int, subprocess.Popen]:
    port = port or free_udp_port()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "mfa_core", "radius", "--address", "127.0.0.1",
                                 "--port", str(port), *extra], cwd=REPO,
                                env=server_env(data_dir, **env),
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    deadline = time.monotonic() + 60
    while "listening on" not in log_path.read_text("utf-8", errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(proc)
            raise RuntimeError(f"the RADIUS server did not start:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.1)  # polling a starting process
    return port, proc


def stop(proc: subprocess.Popen) -> int | None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    return proc.returncode


@dataclass
class Radius:
    port: int
    data_dir: Path
    log_path: Path
    svc: mfa_core.MFAService
    secrets: dict[str, str]     # client name -> shared secret
    proc: subprocess.Popen

    def log(self) -> str:
        return self.log_path.read_text("utf-8", errors="replace")

    def user(self, name: str, *, backup_codes: bool = False) -> tuple[str, list[str]]:
        """A user of this test: password PASSWORD, TOTP on (the current code is fresh)."""
        self.svc.directory.add(name, PASSWORD)
        secret = self.svc.create_totp(name).secret
        self.svc.verify_totp(name, pyotp.TOTP(secret).at(time.time() - 30))
        codes = self.svc.create_backup_codes(name).codes if backup_codes else []
        return secret, codes

    def events(self, name: str, event: str) -> list[mfa_core.AuditEvent]:
        return [e for e in self.svc.audit(name) if e.event == event]


def cheap_hash(password: str) -> str:
    """bcrypt at cost 4 (as tests/support.write_users): the server checks any cost the same way."""
    import bcrypt
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode("ascii")


@pytest.fixture(scope="module", autouse=True)
def cheap_passwords():
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("mfa_core.directory.yaml_file.hash_password", cheap_hash)
        yield


@pytest.fixture(scope="module")
def radius(tmp_path_factory, cheap_passwords) -> Radius:
    need_radclient()
    root = tmp_path_factory.mktemp("radius")
    data_dir = root / "data"
    svc = mfa_core.open_service(data_dir, environ={})  # keys generated here, read by the server
    registry = radius_clients.open_radius_registry(svc)
    secrets_ = {"vpn": registry.add("vpn", ["127.0.0.1"], "code", actor="tests"),
                "onefield": registry.add("onefield", ["127.0.0.2/32"], "password+code", actor="tests"),
                "asks": registry.add("asks", ["127.0.0.3"], "challenge", actor="tests")}
    log_path = root / "radius.log"
    port, proc = start_server(data_dir, log_path)
    yield Radius(port, data_dir, log_path, svc, secrets_, proc)
    assert stop(proc) == 0
    log = log_path.read_text("utf-8", errors="replace")
    assert "Traceback" not in log, log[-3000:]


# -- the clients ---------------------------------------------------------------

def radclient(radius: Radius, lines: list[str], *, secret: str | None = None, command: str = "auth",
              parallel: int = 1, timeout: float = WAIT, retries: int = 1) -> str:
    """radclient's verbose output for the requests (blank-line separated) in ``lines``."""
    secret = radius.secrets["vpn"] if secret is None else secret
    done = subprocess.run(["radclient", "-x", "-t", f"{timeout:g}", "-r", str(retries), "-p",
                           str(parallel), f"127.0.0.1:{radius.port}", command, secret],
                          input="\n".join(lines) + "\n", capture_output=True, text=True,
                          timeout=timeout * (retries + 1) + 30)
    return done.stdout + done.stderr


def healthy(radius: Radius, secret: str, within: float = 15.0, sockets: int = 16) -> bool:
    """Whether Status-Servers signed with ``secret`` are answered by every worker within ``within`` s.

    Each worker reads the client registry again on its own (within a second of a
    change): a round of ``sockets`` NAS sockets, which the kernel spreads over
    the workers by source port, must all be answered.
    """
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        nases = [Peer(radius.port) for _ in range(sockets)]
        try:
            if all(nas.ask(status_request(secret), timeout=1) is not None for nas in nases):
                return True
        finally:
            for nas in nases:
                nas.close()
    return False


def status_request(secret: str) -> packet.AuthPacket:
    pkt = packet.AuthPacket(code=packet.StatusServer, secret=secret.encode(), dict=DICT,
                            message_authenticator=True)
    pkt.authenticator = pkt.CreateAuthenticator()
    pkt.id = pkt.CreateID()
    return pkt


def answers(output: str) -> list[str]:
    return re.findall(r"Received (Access-\w+)", output)


def pap(user: str, password: str, *extra: str, authenticator: bool = True) -> list[str]:
    lines = [f'User-Name = "{user}"', f'User-Password = "{password}"', *extra]
    return lines + (["Message-Authenticator = 0x00"] if authenticator else [])


def request(secret: str, user: str | None, password: str | None, *, state: bytes | None = None,
            authenticator: bool = True, **attributes) -> packet.AuthPacket:
    pkt = packet.AuthPacket(code=packet.AccessRequest, secret=secret.encode(), dict=DICT,
                            message_authenticator=authenticator)
    pkt.authenticator = pkt.CreateAuthenticator()
    pkt.id = pkt.CreateID()
    if user is not None:
        pkt["User-Name"] = user
    if password is not None:
        pkt["User-Password"] = pkt.PwCrypt(password)
    if state is not None:
        pkt["State"] = state
    for name, value in attributes.items():
        pkt[name.replace("_", "-")] = value
    return pkt


class Peer:
    """A NAS: one UDP socket bound to ``address`` (any of 127/8), talking to the server."""

    def __init__(self, port: int, address: str = "127.0.0.1") -> None:
        self.server = ("127.0.0.1", port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((address, 0))

    def send(self, raw: bytes) -> None:
        self.sock.sendto(raw, self.server)

    def receive(self, timeout: float = WAIT) -> bytes | None:
        self.sock.settimeout(timeout)
        try:
            return self.sock.recvfrom(8192)[0]
        except socket.timeout:
            return None

    def ask(self, pkt: packet.AuthPacket, timeout: float = WAIT) -> packet.AuthPacket | None:
        self.send(pkt.RequestPacket())
        raw = self.receive(timeout)
        if raw is None:
            return None
        reply = pkt.CreateReply(packet=raw)
        assert pkt.VerifyReply(reply, raw, enforce_ma=True), "the answer is not signed for this request"
        assert raw[20] == 80, "Message-Authenticator is not the first attribute of the answer"
        return reply

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def peer(radius):
    opened: list[Peer] = []

    def make(address: str = "127.0.0.1") -> Peer:
        opened.append(Peer(radius.port, address))
        return opened[-1]
    yield make
    for each in opened:
        each.close()


# -- mode code (radclient) ------------------------------------------------------------

def test_code_mode_accepts_a_right_code_and_rejects_a_wrong_one_and_a_replay(radius):
    secret, codes = radius.user("cody", backup_codes=True)
    code = pyotp.TOTP(secret).now()
    wrong = "000000" if code != "000000" else "111111"
    assert answers(radclient(radius, pap("cody", wrong))) == ["Access-Reject"]
    assert answers(radclient(radius, pap("cody", code))) == ["Access-Accept"]
    assert answers(radclient(radius, pap("cody", code))) == ["Access-Reject"]  # a replay
    assert answers(radclient(radius, pap("cody", codes[0].upper()))) == ["Access-Accept"]
    assert answers(radclient(radius, pap("cody", codes[0]))) == ["Access-Reject"]
    assert [e.actor for e in radius.events("cody", "second_factor_passed")] == ["radius/vpn"]
    assert len(radius.events("cody", "second_factor_failed")) == 3


def test_radtest_as_the_docs_show_it(radius):
    secret, _ = radius.user("tess")
    code = pyotp.TOTP(secret).now()
    out = subprocess.run(["radtest", "-t", "pap", "tess", code, f"127.0.0.1:{radius.port}", "0",
                          radius.secrets["vpn"], "0", "127.0.0.1"],
                         capture_output=True, text=True, timeout=60)
    assert answers(out.stdout) == ["Access-Accept"], out.stdout + out.stderr


def test_a_code_used_at_the_vpn_is_a_replay_at_the_portal_and_the_other_way_round(radius):
    secret, _ = radius.user("vera")
    code = pyotp.TOTP(secret).now()
    assert answers(radclient(radius, pap("vera", code))) == ["Access-Accept"]
    with pytest.raises(mfa_core.CodeAlreadyUsed):
        radius.svc.attempt_second_factor("vera", code)
    later = pyotp.TOTP(secret).at(time.time() + 30)  # the next step: fresh for both
    radius.svc.attempt_second_factor("vera", later)
    assert answers(radclient(radius, pap("vera", later))) == ["Access-Reject"]


def test_unknown_users_and_users_without_two_step_are_rejected(radius):
    radius.svc.directory.add("noapp", PASSWORD)
    assert answers(radclient(radius, pap("noapp", "123456"))) == ["Access-Reject"]
    assert answers(radclient(radius, pap("ghost", "123456"))) == ["Access-Reject"]


def test_status_server_answers_for_health_checks(radius):
    out = radclient(radius, ["Message-Authenticator = 0x00"], command="status")
    assert answers(out) == ["Access-Accept"]


def test_proxy_state_is_copied_and_the_message_authenticator_comes_first(radius, peer):
    secret, _ = radius.user("polly")
    nas = peer()
    pkt = request(radius.secrets["vpn"], "polly", pyotp.TOTP(secret).now())
    pkt.AddAttribute("Proxy-State", b"hop-1")
    pkt.AddAttribute("Proxy-State", b"hop-2")
    reply = nas.ask(pkt)
    assert reply is not None and reply.code == packet.AccessAccept
    assert reply[33] == [b"hop-1", b"hop-2"]


# -- what gets no answer ----------------------------------------------------------------

def test_a_request_without_message_authenticator_gets_no_answer(radius):
    secret, _ = radius.user("nomad")
    code = pyotp.TOTP(secret).now()
    out = radclient(radius, pap("nomad", code, authenticator=False), timeout=SILENCE)
    assert answers(out) == []
    assert "no Message-Authenticator" in radius.log()
    assert not radius.events("nomad", "second_factor_passed")  # nothing was checked
    assert answers(radclient(radius, pap("nomad", code))) == ["Access-Accept"]  # still fresh


def test_a_wrong_secret_gets_no_answer(radius):
    secret, _ = radius.user("wes")
    code = pyotp.TOTP(secret).now()
    out = radclient(radius, pap("wes", code), secret="not-the-secret", timeout=SILENCE)
    assert answers(out) == []
    assert "wrong Message-Authenticator" in radius.log()
    assert not radius.events("wes", "second_factor_passed")


def test_an_address_that_is_no_clients_gets_no_answer(radius, peer):
    secret, _ = radius.user("uma")
    code = pyotp.TOTP(secret).now()
    stranger = peer("127.0.0.9")
    assert stranger.ask(request(radius.secrets["vpn"], "uma", code), timeout=SILENCE) is None
    assert "no client has that address" in radius.log()
    assert peer().ask(request(radius.secrets["vpn"], "uma", code)).code == packet.AccessAccept


def test_chap_is_refused(radius):
    radius.user("chad")
    out = radclient(radius, ['User-Name = "chad"', 'CHAP-Password = "123456"',
                             "Message-Authenticator = 0x00"])
    assert answers(out) == ["Access-Reject"]
    refused = [e for e in radius.svc.audit() if e.event == "radius_request_refused"]
    assert refused and "CHAP" in refused[-1].detail


def test_eap_and_ms_chap_are_refused(radius, peer):
    radius.user("eve")
    nas = peer()
    pkt = request(radius.secrets["vpn"], "eve", None)
    pkt.AddAttribute("EAP-Message", b"\x02\x01\x00\x06\x01e")
    assert nas.ask(pkt).code == packet.AccessReject
    pkt = request(radius.secrets["vpn"], "eve", None)
    pkt[(311, 11)] = [b"0123456789abcdef"]  # MS-CHAP-Challenge (Microsoft, vendor 311)
    pkt[(311, 25)] = [b"\x00" * 50]          # MS-CHAP2-Response
    assert nas.ask(pkt).code == packet.AccessReject
    refused = [e.detail for e in radius.svc.audit() if e.event == "radius_request_refused"]
    assert any("EAP" in d for d in refused) and any("MS-CHAP" in d for d in refused)


def test_serving_other_machines_needs_demo_mode_off(tmp_path):
    from mfa_core.cli import main
    import io
    err = io.StringIO()
    assert main(["radius", "--address", "0.0.0.0", "--port", "1812", "--data-dir",
                 str(tmp_path / "data")], environ={}, stdout=io.StringIO(), stderr=err) == 2
    assert "MFA_PORTAL_DEMO=0" in err.getvalue()


# -- retransmissions ---------------------------------------------------------------

def test_a_retransmission_gets_the_first_answer_again_and_the_code_counts_once(radius, peer):
    secret, _ = radius.user("rhea")
    nas = peer()
    raw = request(radius.secrets["vpn"], "rhea", pyotp.TOTP(secret).now()).RequestPacket()
    nas.send(raw)
    first = nas.receive()
    nas.send(raw)  # the NAS heard nothing (say) and sends the very same request again
    again = nas.receive()
    assert first is not None and first[0] == packet.AccessAccept
    assert again == first
    assert len(radius.events("rhea", "second_factor_passed")) == 1
    assert not radius.events("rhea", "second_factor_failed")

    wrong = request(radius.secrets["vpn"], "rhea", "000000").RequestPacket()
    for _ in range(3):
        nas.send(wrong)
        assert nas.receive()[0] == packet.AccessReject
    # counted once, not three times, in the RADIUS client's own channel (issue 20, F7)
    status = radius.svc.status("rhea")
    assert (status.failed_attempts, status.channel_failures) == (0, 1)


# -- password+code ------------------------------------------------------------------------

def test_password_and_code_in_one_field(radius, peer):
    secret, codes = radius.user("paula", backup_codes=True)
    nas, onefield = peer("127.0.0.2"), radius.secrets["onefield"]
    code = pyotp.TOTP(secret).now()

    def ask(value: str) -> int:
        return nas.ask(request(onefield, "paula", value)).code

    assert ask("wrong-pass" + code) == packet.AccessReject
    assert ask(PASSWORD) == packet.AccessReject  # no code
    assert ask(PASSWORD + "000000" if code != "000000" else PASSWORD + "111111") == packet.AccessReject
    assert ask(PASSWORD + code) == packet.AccessAccept  # the code was not spent by the wrong password
    assert ask(PASSWORD + code) == packet.AccessReject  # a replay
    assert ask(f"{PASSWORD},{codes[0]}") == packet.AccessAccept
    assert ask(f"{PASSWORD},{codes[0]}") == packet.AccessReject
    assert [e.actor for e in radius.events("paula", "password_failed")] == ["paula"]


def test_a_password_alone_never_passes(radius, peer):
    radius.svc.directory.add("olga", PASSWORD)  # no second factor
    nas = peer("127.0.0.2")
    assert nas.ask(request(radius.secrets["onefield"], "olga", PASSWORD + "123456")).code \
        == packet.AccessReject
    assert peer("127.0.0.3").ask(request(radius.secrets["asks"], "olga", PASSWORD)).code \
        == packet.AccessReject  # no Access-Challenge for a user without a second factor


# -- challenge ------------------------------------------------------------------------

def test_the_challenge_flow_with_the_state_sent_back(radius, peer):
    secret, _ = radius.user("chloe")
    nas, asks = peer("127.0.0.3"), radius.secrets["asks"]
    assert nas.ask(request(asks, "chloe", "wrong-pass")).code == packet.AccessReject

    challenge = nas.ask(request(asks, "chloe", PASSWORD))
    assert challenge.code == packet.AccessChallenge
    assert challenge["Reply-Message"] == ["Enter the code from your authentication app"]
    (state,) = challenge[24]
    code = pyotp.TOTP(secret).now()
    assert nas.ask(request(asks, "chloe", code, state=state)).code == packet.AccessAccept
    # The State is single use: sent again (with the next code), it is refused.
    later = pyotp.TOTP(secret).at(time.time() + 30)
    assert nas.ask(request(asks, "chloe", later, state=state)).code == packet.AccessReject
    # A State of another user is no good either.
    other = nas.ask(request(asks, "chloe", PASSWORD))[24][0]
    radius.user("mallory")
    assert nas.ask(request(asks, "mallory", later, state=other)).code == packet.AccessReject
    # A wrong code uses the State up: the password comes first again.
    fresh = nas.ask(request(asks, "chloe", PASSWORD))[24][0]
    assert nas.ask(request(asks, "chloe", "000000" if later != "000000" else "111111",
                           state=fresh)).code == packet.AccessReject
    assert nas.ask(request(asks, "chloe", later, state=fresh)).code == packet.AccessReject


def test_the_challenge_flow_with_radclient(radius):
    """radclient sends from 127.0.0.1 (the code client): a challenge client there for this test."""
    registry = radius_clients.open_radius_registry(radius.svc)
    secret_ = registry.add("asks-local", ["127.0.0.1/32"], "challenge", actor="tests")
    # 127.0.0.1/32 is now two clients' address: the most specific wins, and a tie is the
    # first by name ("asks-local" < "vpn"); removed again at the end. The server reads the
    # registry again within a second (REGISTRY_MAX_AGE).
    try:
        assert healthy(radius, secret_), "the added client was not taken up"
        secret, _ = radius.user("cleo")
        out = radclient(radius, pap("cleo", PASSWORD), secret=secret_)
        assert answers(out) == ["Access-Challenge"]
        state = re.search(r"State = (0x[0-9a-f]+)", out).group(1)
        out = radclient(radius, pap("cleo", pyotp.TOTP(secret).now(), f"State = {state}"),
                        secret=secret_)
        assert answers(out) == ["Access-Accept"]
    finally:
        registry.remove("asks-local", actor="tests")
        assert healthy(radius, radius.secrets["vpn"]), "the removed client still answers"


# -- races -------------------------------------------------------------------------------

def test_thirty_racing_requests_with_one_backup_code_give_exactly_one_accept(radius):
    _, codes = radius.user("rita", backup_codes=True)
    requests = [line for _ in range(30) for line in [*pap("rita", codes[0]), ""]]
    # Retries: on a machine slow enough that a request waits past the server's queue deadline
    # (dropped unchecked), the retransmission is checked; an answered one gets its first answer.
    out = radclient(radius, requests, parallel=30, retries=3)
    found = answers(out)
    assert len(found) == 30, out[-2000:]
    assert found.count("Access-Accept") == 1
    assert len(radius.events("rita", "backup_code_used")) == 1


# -- in-process parts: the retransmission cache, States, the one-field split ---------------

class Ticks:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_retransmission_cache_keeps_an_answer_for_thirty_seconds():
    clock = Ticks()
    cache = DedupeCache(clock=clock)
    assert cache.begin("a") is NEW
    assert cache.begin("a") is IN_FLIGHT
    cache.finish("a", b"answer")
    clock.now += 29
    assert cache.begin("a") == b"answer"
    clock.now += 2
    assert cache.begin("a") is NEW
    cache.forget("a")
    assert cache.begin("a") is NEW


def test_a_challenge_state_expires_after_sixty_seconds(tmp_path):
    clock = Ticks()
    svc = mfa_core.open_service(tmp_path / "data", environ={})
    states = modes.ChallengeStates(svc.store, clock)
    state = states.issue("asks", "amy")
    clock.now += 61
    assert states.redeem(state, "asks", "amy") is False
    state = states.issue("asks", "amy")
    clock.now += 59
    assert states.redeem(state, "asks", "amy") is True
    assert states.redeem(state, "asks", "amy") is False
    assert svc.store.read_keyed(modes.ChallengeStates.key(state)) is not None
    assert state.hex() not in str(svc.store.read_keyed(modes.ChallengeStates.key(state)))


@pytest.mark.parametrize("typed, expected", [
    ("pass123456", ("pass", "123456")),
    ("pass,123456", ("pass", "123456")),
    ("pa,ss123456", ("pa,ss", "123456")),
    ("pass,abcd-efgh-jkmn-pqrs", ("pass", "abcd-efgh-jkmn-pqrs")),
    ("123456", None),
    ("pass", None),
    ("pass,", None),
])
def test_the_password_and_the_code_are_told_apart(typed, expected):
    assert modes.split_password_code(typed) == expected


def test_radius_secrets_are_encrypted_at_rest_and_survive_a_key_rotation(tmp_path):
    svc = mfa_core.open_service(tmp_path / "data", environ={})
    registry = radius_clients.open_radius_registry(svc)
    secret = registry.add("nas", ["192.0.2.0/24", "2001:db8::/32"], "challenge", actor="tests")
    stored = str(svc.store.read_keyed(radius_clients.STORE_KEY))
    assert secret not in stored
    svc.rotate_keys(actor="tests")
    assert registry.match("192.0.2.7")[1] == secret.encode()
    assert registry.match("2001:db8::1")[0].mode == "challenge"
    assert registry.match("198.51.100.1") is None
    with pytest.raises(radius_clients.ClientError):
        registry.add("nas", ["192.0.2.1"], actor="tests")
    with pytest.raises(ValueError):
        registry.add("everyone", ["0.0.0.0/0"], actor="tests")
    new = registry.rotate("nas", actor="tests")
    assert new != secret and registry.match("192.0.2.7")[1] == new.encode()
    registry.remove("nas", actor="tests")
    assert registry.match("192.0.2.7") is None
    events = [e.event for e in svc.audit() if e.event.startswith("radius_client")]
    assert events == ["radius_client_added", "radius_client_rotated", "radius_client_removed"]


def test_the_cli_prints_the_secret_as_its_last_line_alone(tmp_path):
    from mfa_core.cli import main
    import io
    out, err = io.StringIO(), io.StringIO()
    data = str(tmp_path / "data")
    assert main(["radius", "clients", "add", "fw", "--address", "10.1.0.0/16", "--mode",
                 "password+code", "--data-dir", data], environ={}, stdout=out, stderr=err) == 0, \
        err.getvalue()
    secret = out.getvalue().splitlines()[-1]
    assert re.fullmatch(r"[A-Za-z0-9]{32}", secret)
    out = io.StringIO()
    assert main(["radius", "clients", "list", "--data-dir", data], environ={}, stdout=out) == 0
    assert "fw" in out.getvalue() and "10.1.0.0/16" in out.getvalue() and secret not in out.getvalue()
    out = io.StringIO()
    assert main(["radius", "clients", "rotate", "fw", "--data-dir", data], environ={}, stdout=out) == 0
    assert out.getvalue().splitlines()[-1] != secret
    assert main(["radius", "clients", "remove", "fw", "--data-dir", data], environ={},
                stdout=io.StringIO()) == 0
    assert main(["radius", "clients", "remove", "fw", "--data-dir", data], environ={},
                stdout=io.StringIO(), stderr=io.StringIO()) == 2
    fresh = tmp_path / "fresh"
    err = io.StringIO()
    assert main(["radius", "clients", "add", "x", "--address", "bogus", "--data-dir", str(fresh)],
                environ={}, stdout=io.StringIO(), stderr=err) == 2
    assert "not an IP address" in err.getvalue() and not fresh.exists()  # nothing created


def test_the_sweep_removes_challenge_states_past_their_time(tmp_path):
    clock = Ticks()
    svc = mfa_core.open_service(tmp_path / "data", clock=clock, environ={})
    states = modes.ChallengeStates(svc.store, clock)
    old, live = states.issue("asks", "amy"), None
    clock.now += 61
    live = states.issue("asks", "amy")
    assert svc.sweep_expired() >= 1
    assert svc.store.read_keyed(modes.ChallengeStates.key(old)) is None
    assert states.redeem(live, "asks", "amy") is True


def test_drops_are_counted_and_a_request_that_waited_too_long_is_not_checked(tmp_path):
    """In-process: the server's handler called directly, its counters read."""
    from mfa_services.radius import server as radius_server
    svc = mfa_core.open_service(tmp_path / "data", environ={})
    registry = radius_clients.open_radius_registry(svc)
    secret = registry.add("nas", ["127.0.0.1"], actor="tests")
    srv = radius_server.RadiusServer(svc, registry, "127.0.0.1", 0, threads=1)
    try:
        peer_ = ("127.0.0.1", 40000)
        srv.handle(request(secret, "lena", "123456").RequestPacket(), ("127.0.0.9", 40000))
        srv.handle(request(secret, "lena", "123456", authenticator=False).RequestPacket(), peer_)
        srv.handle(request("wrong", "lena", "123456").RequestPacket(), peer_)
        srv.handle(b"\x01\x02\x00", peer_)
        srv.handle(request(secret, "lena", "123456").RequestPacket(), peer_,
                   time.monotonic() - radius_server.QUEUE_DEADLINE - 1)
        assert dict(srv.counts) == {"dropped_unknown_client": 1, "dropped_no_message_authenticator": 1,
                                    "dropped_bad_authenticator": 1, "dropped_malformed": 1,
                                    "dropped_late": 1}
        assert not [e for e in svc.audit("lena") if e.event.startswith("second_factor")]
    finally:
        srv.sock.close()


def test_two_servers_share_one_port_and_a_code_still_counts_once(radius, peer, tmp_path):
    """--reuse-port: a second server on the module's data dir and a port of its own pair."""
    port = free_udp_port()
    _, a = start_server(radius.data_dir, tmp_path / "a.log", "--reuse-port", port=port)
    _, b = start_server(radius.data_dir, tmp_path / "b.log", "--reuse-port", port=port)
    try:
        _, codes = radius.user("reus", backup_codes=True)
        answers_ = []
        for code in codes[:6]:  # six NAS sockets: the kernel spreads them over both servers
            nas = Peer(port)
            try:
                answers_.append(nas.ask(request(radius.secrets["vpn"], "reus", code)).code)
                answers_.append(nas.ask(request(radius.secrets["vpn"], "reus", code)).code)
            finally:
                nas.close()
        assert answers_ == [packet.AccessAccept, packet.AccessReject] * 6
    finally:
        assert stop(a) == 0 and stop(b) == 0


# -- floods: names with no second factor, one NAS's queue ---------------------------------

def test_a_name_without_a_second_factor_is_counted_and_throttled_like_a_users_codes(radius, peer):
    """As for the API: the same store write as a wrong code (the time tells nothing), the same waits."""
    radius.svc.directory.add("nofa", PASSWORD)  # a user without two-step
    nas, vpn = peer(), radius.secrets["vpn"]
    before = len([e for e in radius.svc.audit() if e.detail.endswith("(unknown user)")])
    for name in ("ghosty", "nofa"):
        got = [nas.ask(request(vpn, name, f"{n:06d}")).code for n in range(7)]
        assert got == [packet.AccessReject] * 7
    failed = [e for e in radius.svc.audit() if e.event == "second_factor_failed"
              and e.actor == "radius/vpn" and e.detail in ("unknown user", "no second factor")]
    assert [(e.user, e.detail) for e in failed][-10:] == \
        [(None, "unknown user")] * 5 + [("nofa", "no second factor")] * 5
    throttled = [e for e in radius.svc.audit() if e.event == "throttled" and e.actor == "radius/vpn"]
    assert len([e for e in throttled if e.detail.endswith("(unknown user)")]) - before == 2
    assert [e.detail.startswith("wait ") for e in throttled if e.user == "nofa"] == [True, True]
    assert "ghosty" not in str([e.to_dict() for e in radius.svc.audit()])  # never the typed name


def test_the_check_threads_take_the_sources_in_turn():
    """A NAS with a thousand requests waiting does not hold up another's next one."""
    from mfa_services.radius.server import FairQueue
    queue = FairQueue(per_source=1000, total=1500)
    for n in range(1000):
        assert queue.put("10.0.0.1", ("flood", n)) is None
    assert queue.put("10.0.0.1", ("flood", 1000)) == "source_overload"
    assert queue.put("10.0.0.2", ("vpn", 0)) is None
    assert queue.put("10.0.0.2", ("vpn", 1)) is None
    assert [queue.get() for _ in range(4)] == [("flood", 0), ("vpn", 0), ("flood", 1), ("vpn", 1)]
    for n in range(500):
        assert queue.put(f"10.1.{n // 250}.{n % 250}", ("many", n)) is None
    assert len(queue) == 1498 and queue.put("10.0.0.3", "x") is None
    assert queue.put("10.0.0.4", "y") is None
    assert queue.put("10.0.0.5", "z") == "overload"  # everything together is bounded too
    queue.close()
    drained = []
    while (item := queue.get()) is not None:
        drained.append(item)
    assert len(drained) == 1500 and queue.get() is None


def test_a_flooding_nas_does_not_hold_up_another_nas(tmp_path):
    """In-process, one check thread held on the first datagram until all 52 wait: then the
    two of the second NAS are taken second and fourth, not after the flood's 49 others."""
    import threading
    from mfa_services.radius import server as radius_server
    svc = mfa_core.open_service(tmp_path / "data", environ={})
    registry = radius_clients.open_radius_registry(svc)
    srv = radius_server.RadiusServer(svc, registry, "127.0.0.1", 0, threads=1)
    order: list[str] = []
    release = threading.Event()

    def handle(data, peer, received=None):
        order.append(peer[0])
        release.wait(WAIT)
    srv.handle = handle
    flood, other = Peer(srv.address[1], "127.0.0.1"), Peer(srv.address[1], "127.0.0.2")
    runner = threading.Thread(target=srv.serve_forever)
    try:
        for n in range(50):
            flood.send(b"flood %d" % n)
        runner.start()
        deadline = time.monotonic() + WAIT
        while not order and time.monotonic() < deadline:
            time.sleep(0.01)  # polling: the check thread took the first datagram
        other.send(b"one")
        other.send(b"two")
        while len(srv._queue) < 51 and time.monotonic() < deadline:
            time.sleep(0.01)  # polling: the receiving thread queued the rest
        release.set()
        while len(order) < 52 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert order[:5] == ["127.0.0.1", "127.0.0.1", "127.0.0.2", "127.0.0.1", "127.0.0.2"]
        assert len(order) == 52
    finally:
        release.set()
        srv.stop()
        runner.join(30)
        flood.close()
        other.close()
