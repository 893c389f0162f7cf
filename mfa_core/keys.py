"""The server's keys: Fernet keys for TOTP secrets at rest and the backup-code pepper.

They come from the environment (``MFA_PORTAL_FERNET_KEYS``, newest first,
comma-separated, and ``MFA_PORTAL_PEPPER``) or from ``keys.json`` in the data
dir, generated with mode 0600 on first use. Never from the TinyDB files.

Keys are generated only into a data dir that holds no data yet: a data dir
with records, an audit trail or API clients but no keys lost its key file,
and new keys would make every secret, backup code, API key and session in it
unusable. That refuses (:class:`KeysMissing`) until the file is restored or
the keys are set in the environment.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import threading
from pathlib import Path
from typing import Iterator, Mapping

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from filelock import FileLock, Timeout

from .errors import KeyringError, KeysMissing
from .storage.files import write_atomic

ENV_KEYS = "MFA_PORTAL_FERNET_KEYS"
ENV_PEPPER = "MFA_PORTAL_PEPPER"
KEY_FILE = "keys.json"
# What the engine writes into a data dir, beside the key file and the user directory
# (users.yaml holds password hashes only: it may be made with `users add` before any key).
# (The benchmark's baseline stores create their single file when opened: their audit trail counts.)
DATA_ENTRIES = ("users", "enrolled", "witness", "sources", "audit", "api_clients.json")


def holds_data(data_dir: str | os.PathLike) -> bool:
    """Whether ``data_dir`` holds data the engine wrote (records, markers, audit, API clients).

    Empty directories, lock files and temp files of an interrupted write do not count.
    """
    root = Path(data_dir)
    for name in DATA_ENTRIES:
        entry = root / name
        if entry.is_file():
            return True
        if entry.is_dir():
            for _dirpath, _dirs, files in os.walk(entry):
                if any(not (f.endswith((".lock", ".tmp"))) for f in files):
                    return True
    return False


def missing_keys_detail(data_dir: str | os.PathLike) -> str:
    """The operator's one line for a data dir that holds data but no keys."""
    path = Path(data_dir) / KEY_FILE
    return (f"{path} is missing but {Path(data_dir)} holds data written under it: restore "
            f"{KEY_FILE} from a backup (or set {ENV_KEYS} and {ENV_PEPPER}); the portal never "
            "generates new keys over existing data, which would make every secret unreadable")


class KeyRing:
    """Encrypts and decrypts TOTP secrets; keyed HMAC for backup codes.

    When the keys come from the key file, a change of the file (a rotation by
    another process) is picked up before the next use.
    """

    def __init__(self, fernet_keys: list[str], pepper: bytes, path: Path | None = None) -> None:
        if not fernet_keys:
            raise KeyringError("No encryption key is configured.")
        self._path = path
        self._mtime: tuple[int, int, int] | None = None  # the key file's signature when read
        self._lock = threading.Lock()
        self._set(fernet_keys, pepper)

    def _set(self, fernet_keys: list[str], pepper: bytes) -> None:
        try:
            fernets = [Fernet(k.encode("ascii") if isinstance(k, str) else k) for k in fernet_keys]
        except (ValueError, TypeError) as exc:
            raise KeyringError("An encryption key is malformed.") from exc
        self._keys = list(fernet_keys)
        self._fernet = MultiFernet(fernets)
        self.pepper = pepper

    @property
    def from_file(self) -> bool:
        return self._path is not None

    @property
    def key_count(self) -> int:
        return len(self._keys)

    def _refresh(self, force: bool = False) -> None:
        if self._path is None:
            return
        try:
            st = self._path.stat()
        except OSError as exc:
            raise KeysMissing(missing_keys_detail(self._path.parent)) from exc
        # Every write replaces the file (new inode); mtime alone can repeat
        # within a coarse timestamp tick.
        signature = (st.st_ino, st.st_mtime_ns, st.st_size)
        if force or signature != self._mtime:
            with self._lock:
                keys, pepper = _read_key_file(self._path)
                self._set(keys, pepper)
                self._mtime = signature

    def _with_fresh_keys(self, operation):
        """Run ``operation`` on the current keys; on a token they cannot read, reload once and retry.

        The retry covers a rotation by another process that the file
        signature did not reveal.
        """
        self._refresh()
        try:
            return operation()
        except InvalidToken:
            if self._path is None:
                raise KeyringError("A stored secret cannot be decrypted with the configured keys.") from None
        self._refresh(force=True)
        try:
            return operation()
        except InvalidToken as exc:
            raise KeyringError("A stored secret cannot be decrypted with the configured keys.") from exc

    def encrypt(self, plaintext: str) -> str:
        self._refresh()
        return self._fernet.encrypt(plaintext.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str) -> str:
        return self._with_fresh_keys(
            lambda: self._fernet.decrypt(token.encode("ascii")).decode("utf-8"))

    def reencrypt(self, token: str) -> str:
        """The same secret under the newest key."""
        return self._with_fresh_keys(lambda: self._fernet.rotate(token.encode("ascii")).decode("ascii"))

    def is_current(self, token: str) -> bool:
        """True when ``token`` decrypts with the newest key alone."""
        try:
            Fernet(self._keys[0].encode("ascii")).decrypt(token.encode("ascii"))
            return True
        except InvalidToken:
            return False

    @contextlib.contextmanager
    def rotation_lock(self) -> Iterator[None]:
        """Held for a whole rotation, across processes (a no-op for environment keys)."""
        if self._path is None:
            yield
            return
        lock = FileLock(str(self._path) + ".rotate.lock", timeout=300)
        try:
            lock.acquire()
        except Timeout as exc:
            raise KeyringError("Another key rotation is still running; try again later.") from exc
        try:
            yield
        finally:
            lock.release()

    # Rotation (file keys only): add a new key first, drop the old ones last,
    # so that an interrupted rotation leaves every secret readable.
    def begin_rotation(self) -> None:
        path = self._require_file()
        with FileLock(str(path) + ".lock"):
            keys, pepper = _read_key_file(path)
            _write_key_file(path, [Fernet.generate_key().decode("ascii")] + keys, pepper)
        self._mtime = None
        self._refresh()

    def finish_rotation(self) -> None:
        path = self._require_file()
        with FileLock(str(path) + ".lock"):
            keys, pepper = _read_key_file(path)
            _write_key_file(path, keys[:1], pepper)
        self._mtime = None
        self._refresh()

    def _require_file(self) -> Path:
        if self._path is None:
            raise KeyringError(
                f"The keys come from the environment ({ENV_KEYS}); rotate them there: "
                "put a new key first, re-encrypt, then drop the old one."
            )
        return self._path


def load_keyring(data_dir: Path, environ: Mapping[str, str] | None = None) -> KeyRing:
    """Keys from the environment if set, else from the data dir's key file.

    The file is generated only into a data dir without data (:func:`holds_data`);
    otherwise its absence raises :class:`KeysMissing`.
    """
    env = os.environ if environ is None else environ
    if env.get(ENV_KEYS):
        keys = [k.strip() for k in env[ENV_KEYS].split(",") if k.strip()]
        pepper_text = env.get(ENV_PEPPER, "")
        if not pepper_text:
            raise KeyringError(f"{ENV_KEYS} is set but {ENV_PEPPER} is not.")
        return KeyRing(keys, _decode_pepper(pepper_text))
    path = Path(data_dir) / KEY_FILE
    if not path.exists():
        with FileLock(str(path) + ".lock"):
            if not path.exists():
                if holds_data(data_dir):
                    raise KeysMissing(missing_keys_detail(data_dir))
                _write_key_file(path, [Fernet.generate_key().decode("ascii")],
                                secrets.token_bytes(32))
    keys, pepper = _read_key_file(path)
    ring = KeyRing(keys, pepper, path=path)
    ring._refresh(force=True)
    return ring


def _decode_pepper(text: str) -> bytes:
    try:
        pepper = base64.urlsafe_b64decode(text.encode("ascii") + b"=" * (-len(text) % 4))
    except (ValueError, UnicodeEncodeError) as exc:
        raise KeyringError(f"{ENV_PEPPER} must be URL-safe base64.") from exc
    if len(pepper) < 16:
        raise KeyringError(f"{ENV_PEPPER} must hold at least 16 bytes.")
    return pepper


def _read_key_file(path: Path) -> tuple[list[str], bytes]:
    try:
        data = json.loads(path.read_text("utf-8"))
        return list(data["fernet_keys"]), _decode_pepper(data["pepper"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise KeyringError(f"The key file {path} cannot be read.") from exc


def _write_key_file(path: Path, keys: list[str], pepper: bytes) -> None:
    body = json.dumps({
        "fernet_keys": keys,
        "pepper": base64.urlsafe_b64encode(pepper).decode("ascii"),
    }, indent=2)
    write_atomic(path, body.encode("utf-8"), mode=0o600)
