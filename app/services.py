"""Private Postgres and memcached servers for development and tests.

``python -m app services up`` starts both on free loopback ports with their
data under ``$PEREGRINE_RUN_DIR`` (default ``./.run``); the test harness uses
the same classes in a temporary directory. Never used in production, where
Ansible installs the distribution's packaged services.
"""

from __future__ import annotations

import glob
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

DB_NAME = "peregrine"
DB_USER = "peregrine"


class ServiceError(RuntimeError):
    """A local service could not be started or stopped."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise ServiceError(f"process exited with {proc.returncode} before listening")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise ServiceError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f}s")


def _service_user() -> pwd.struct_passwd | None:
    """The unprivileged account servers run as when we are root (Postgres refuses root)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise ServiceError("running as root and no 'postgres' or 'nobody' account exists")


def _pg_bin(tool: str) -> str:
    found = shutil.which(tool)
    if found:
        return found
    candidates = sorted(
        glob.glob(f"/usr/lib/postgresql/*/bin/{tool}"),
        key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0,
    )
    if not candidates:
        raise ServiceError(
            f"{tool} not found: install PostgreSQL (apt-get install postgresql) "
            "or run `make system-deps`"
        )
    return candidates[-1]


class PostgresServer:
    """A throw-away Postgres cluster owned by this checkout."""

    def __init__(self, root: Path, port: int | None = None, *, durable: bool = True):
        self.root = Path(root)
        self.data = self.root / "data"
        self.port = port or free_port()
        self.durable = durable
        self.user = _service_user()

    @property
    def admin_dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def dsn(self, database: str = DB_NAME, user: str = DB_USER) -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"

    def _run(self, argv: list[str], **kwargs) -> subprocess.CompletedProcess:
        if self.user is not None:
            kwargs.update(user=self.user.pw_uid, group=self.user.pw_gid, extra_groups=[])
        result = subprocess.run(argv, capture_output=True, text=True, **kwargs)
        if result.returncode != 0:
            raise ServiceError(f"{' '.join(argv[:2])} failed:\n{result.stdout}{result.stderr}")
        return result

    def initialized(self) -> bool:
        return (self.data / "PG_VERSION").exists()

    def init(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if self.user is not None:
            os.chown(self.root, self.user.pw_uid, self.user.pw_gid)
        self._run([
            _pg_bin("initdb"), "-D", str(self.data), "-U", "postgres",
            "--auth=trust", "--encoding=UTF8", "--no-locale", "--no-sync",
        ])

    def running(self) -> bool:
        if not self.initialized():
            return False
        try:
            self._run([_pg_bin("pg_ctl"), "-D", str(self.data), "status"])
            return True
        except ServiceError:
            return False

    def start(self) -> None:
        if not self.initialized():
            self.init()
        options = [
            f"-p {self.port}",
            "-c listen_addresses=127.0.0.1",
            f"-c unix_socket_directories={self.root}",
            "-c max_connections=200",
            "-c shared_buffers=128MB",
        ]
        if not self.durable:
            # Tests throw the cluster away: durability only costs time there.
            options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        self._run([
            _pg_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.root / "postgres.log"),
            "-o", " ".join(options), "-w", "-t", "60", "start",
        ])

    def stop(self, mode: str = "fast") -> None:
        if self.running():
            self._run([_pg_bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"])

    def restart(self) -> None:
        self.stop()
        self.start()

    def ensure_database(self, name: str = DB_NAME, owner: str = DB_USER) -> None:
        """Create the application role and database when missing."""
        import psycopg2

        conn = psycopg2.connect(self.admin_dsn, connect_timeout=10)
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (owner,))
                if cur.fetchone() is None:
                    cur.execute(f'CREATE ROLE "{owner}" LOGIN')
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                if cur.fetchone() is None:
                    cur.execute(f'CREATE DATABASE "{name}" OWNER "{owner}"')
        finally:
            conn.close()


class MemcachedServer:
    """A memcached process on a loopback port."""

    def __init__(self, root: Path, port: int | None = None, memory_mb: int = 64):
        self.root = Path(root)
        self.port = port or free_port()
        self.memory_mb = memory_mb
        self.pidfile = self.root / "memcached.pid"
        self.proc: subprocess.Popen | None = None

    def _pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text())
            os.kill(pid, 0)
            return pid
        except (FileNotFoundError, ValueError, ProcessLookupError, PermissionError):
            return None

    def running(self) -> bool:
        return self._pid() is not None

    def start(self) -> None:
        binary = shutil.which("memcached") or "/usr/bin/memcached"
        if not os.path.exists(binary):
            raise ServiceError(
                "memcached not found: apt-get install memcached (or `make system-deps`)")
        self.root.mkdir(parents=True, exist_ok=True)
        argv = [binary, "-l", "127.0.0.1", "-p", str(self.port), "-U", "0",
                "-m", str(self.memory_mb), "-c", "4096"]
        user = _service_user()
        if user is not None:
            argv += ["-u", user.pw_name]
        log = open(self.root / "memcached.log", "ab")
        self.proc = subprocess.Popen(argv, stdout=log, stderr=log, start_new_session=True)
        log.close()
        self.pidfile.write_text(str(self.proc.pid))
        wait_for_port(self.port, 10, self.proc)

    def stop(self) -> None:
        pid = self._pid()
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                if self.proc is not None and self.proc.poll() is not None:
                    break
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.02)
        self.pidfile.unlink(missing_ok=True)
        self.proc = None


@dataclass
class LocalStack:
    """The dev stack under one run directory, remembered in ``services.json``."""

    root: Path

    @classmethod
    def from_env(cls) -> "LocalStack":
        return cls(Path(os.environ.get("PEREGRINE_RUN_DIR") or Path.cwd() / ".run").resolve())

    @property
    def state_file(self) -> Path:
        return self.root / "services.json"

    def _state(self) -> dict:
        try:
            return json.loads(self.state_file.read_text())
        except (FileNotFoundError, ValueError):
            return {}

    def _servers(self) -> tuple[PostgresServer, MemcachedServer]:
        state = self._state()
        pg = PostgresServer(self.root / "postgres", state.get("postgres_port"))
        mc = MemcachedServer(self.root / "memcached", state.get("memcached_port"))
        return pg, mc

    def _jwt_secret(self) -> str:
        path = self.root / "jwt-secret"
        if not path.exists():
            path.write_text(secrets.token_urlsafe(48))
            path.chmod(0o600)
        return path.read_text().strip()

    def up(self) -> dict[str, str]:
        self.root.mkdir(parents=True, exist_ok=True)
        if _service_user() is not None:
            # The servers run unprivileged and must reach their data below
            # this directory (mkdtemp, for one, makes it 0700).
            self.root.chmod(self.root.stat().st_mode | 0o011)
        pg, mc = self._servers()
        if not pg.running():
            if pg.initialized() and not self._port_free(pg.port):
                pg.port = free_port()
            pg.start()
        pg.ensure_database()
        if not mc.running():
            if not self._port_free(mc.port):
                mc.port = free_port()
            mc.start()
        self.state_file.write_text(
            json.dumps({"postgres_port": pg.port, "memcached_port": mc.port})
        )
        return self.environment(pg, mc)

    def environment(self, pg=None, mc=None) -> dict[str, str]:
        if pg is None:
            pg, mc = self._servers()
        return {
            "PEREGRINE_DATABASE_URL": pg.dsn(),
            "PEREGRINE_MEMCACHED_SERVERS": f"127.0.0.1:{mc.port}",
            "PEREGRINE_JWT_SECRET": self._jwt_secret(),
        }

    def down(self) -> None:
        pg, mc = self._servers()
        mc.stop()
        pg.stop()

    def status(self) -> dict[str, str]:
        pg, mc = self._servers()
        return {
            "postgres": f"running on 127.0.0.1:{pg.port}" if pg.running() else "stopped",
            "memcached": f"running on 127.0.0.1:{mc.port}" if mc.running() else "stopped",
            "run_dir": str(self.root),
        }

    @staticmethod
    def _port_free(port: int | None) -> bool:
        if not port:
            return False
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return True
            except OSError:
                return False
