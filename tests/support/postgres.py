"""A real PostgreSQL server for one test session: Debian's binaries, a private
data folder and port, stopped and removed afterwards.

PostgreSQL refuses to run as root, so as root the data folder is given to the
``postgres`` system user (Debian's package creates it) and the server runs as
that user. It listens on 127.0.0.1 only, with a unix socket inside its own
folder, and trusts local connections: a throwaway server nothing else reaches.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

PG_BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


def _bin(name: str) -> str | None:
    for d in PG_BIN_DIRS:
        if (d / name).exists():
            return str(d / name)
    return shutil.which(name)


class PostgresServer:
    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="gem-hil-pg-"))
        self.data = self.base / "data"
        self.sock = self.base / "sock"
        self.log = self.base / "server.log"
        self.port = 0
        self._user: pwd.struct_passwd | None = None
        self._started = False

    @staticmethod
    def unavailable_reason() -> str | None:
        for tool in ("initdb", "pg_ctl"):
            if _bin(tool) is None:
                return (f"{tool} not found: install Debian's postgresql "
                        "(scripts/debian-packages.txt)")
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                return "running as root needs the postgres system user (Debian's postgresql)"
        return None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url_for(self, db: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{db}"

    def _run(self, argv: list[str], **kw) -> subprocess.CompletedProcess:
        u = self._user
        extra = {"user": u.pw_uid, "group": u.pw_gid, "extra_groups": []} if u else {}
        return subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=self.base,
                              **extra, **kw)

    def start(self) -> PostgresServer:
        reason = self.unavailable_reason()
        if reason:
            raise RuntimeError(reason)
        if os.geteuid() == 0:
            self._user = pwd.getpwnam("postgres")
        self.sock.mkdir()
        if self._user:
            for p in (self.base, self.sock):
                os.chown(p, self._user.pw_uid, self._user.pw_gid)
        os.chmod(self.base, 0o755)
        res = self._run([_bin("initdb"), "-D", str(self.data), "-U", "postgres",
                         "--auth=trust", "-E", "UTF8", "--no-instructions"])
        if res.returncode:
            raise RuntimeError(f"initdb failed: {res.stderr[-2000:]}")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        opts = (f"-c listen_addresses=127.0.0.1 -p {self.port} "
                f"-c unix_socket_directories={self.sock} -c fsync=off -c max_connections=100")
        res = self._run([_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", opts,
                         "-w", "-t", "60", "start"])
        if res.returncode:
            log = self.log.read_text(errors="replace") if self.log.exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {res.stderr[-1000:]} {log[-2000:]}")
        self._started = True
        return self

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url_for(name)

    def stop(self) -> None:
        if self._started:
            self._started = False
            self._run([_bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"])
        with contextlib.suppress(OSError):
            shutil.rmtree(self.base)

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
