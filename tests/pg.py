"""A throwaway PostgreSQL cluster for the tests: ``initdb`` in a temp dir, a free loopback port.

``PostgresCluster.start()`` runs as an unprivileged user (``postgres`` when
the tests run as root), listens on 127.0.0.1 only with its socket in the temp
dir, and ``stop()`` removes it all. ``find_bin("initdb")`` is None when
PostgreSQL is not installed: the tests that need it skip with the apt hint,
or fail when ``MFA_PORTAL_REQUIRE_POSTGRES=1`` (CI).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

INSTALL_HINT = "PostgreSQL is not installed: apt-get install postgresql (CI sets MFA_PORTAL_REQUIRE_POSTGRES=1)"
TABLES = ("users", "keyed", "audit", "damaged_records", "directory", "directory_meta", "user_summary")


def find_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
                        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    return candidates[-1] if candidates else None


def free_port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresCluster:
    def __init__(self, *, durable: bool = False) -> None:
        self.durable = durable  # fsync and synchronous_commit on (the benchmark's), else off (tests)
        initdb = find_bin("initdb")
        pg_ctl = find_bin("pg_ctl")
        if not initdb or not pg_ctl:
            raise FileNotFoundError(INSTALL_HINT)
        self.initdb, self.pg_ctl = initdb, pg_ctl
        self.root = Path(tempfile.mkdtemp(prefix="mfa-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.user = None
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            self.user = "postgres"
            entry = pwd.getpwnam(self.user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self.url = f"postgresql://mfa@127.0.0.1:{self.port}/mfa"

    def _run(self, *args: str, timeout: float = 60) -> None:
        command = list(args)
        if self.user:
            command = ["runuser", "-u", self.user, "--", *command]
        subprocess.run(command, check=True, timeout=timeout, stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=self.root)

    def start(self) -> "PostgresCluster":
        self._run(self.initdb, "-D", str(self.data), "-U", "mfa", "--auth=trust", "-E", "UTF8",
                  "--no-sync", "--no-instructions")
        # Tests: no fsync (the cluster is thrown away); loopback only. The benchmark's is
        # durable, as a real server: every commit waits for its WAL flush.
        safety = ("-c fsync=on -c synchronous_commit=on -c full_page_writes=on -c shared_buffers=128MB"
                  if self.durable else
                  "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c shared_buffers=32MB")
        options = (f"-c listen_addresses=127.0.0.1 -c port={self.port} "
                   f"-c unix_socket_directories={self.root} {safety} -c max_connections=200")
        self._run(self.pg_ctl, "-D", str(self.data), "-l", str(self.root / "log"), "-w",
                  "-t", "60", "-o", options, "start")
        self._run(find_bin("createdb") or "createdb", "-h", "127.0.0.1", "-p", str(self.port),
                  "-U", "mfa", "mfa")
        return self

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._run(self.pg_ctl, "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def truncate(self) -> None:
        """Empty every table the store keeps (fast, between tests); the schema stays."""
        import psycopg
        with psycopg.connect(self.url, autocommit=True) as conn:
            present = [t for (t,) in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename = ANY(%s)",
                (list(TABLES),))]
            if present:
                conn.execute("SET lock_timeout = '10s'")
                conn.execute(f"TRUNCATE {', '.join(present)}")
