"""Private Postgres and memcached servers for development and tests.

``python -m app services up`` starts both on free loopback ports with their
data under ``$PEREGRINE_RUN_DIR`` (default ``./.run``); the test harness uses
the same classes in a temporary directory. Never used in production, where
Ansible installs the distribution's packaged services.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import pwd
import secrets
import shutil
import socket
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from app.manage.pidfile import PidfileProcess

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


# Where Postgres keeps its cluster when the service account cannot reach the
# run directory (a checkout in root's 0700 home). Granting traverse on the
# home instead (chmod o+x /root) would let every local account open any file
# below it whose name it can guess; a directory that root creates here and the
# service account alone owns exposes nothing of the home.
RELOCATED_DATA_ROOT = Path("/var/lib/peregrine-dev")


def _can_traverse(user: pwd.struct_passwd, directory: Path) -> bool:
    info = directory.stat()
    if user.pw_uid == info.st_uid:
        return bool(info.st_mode & stat.S_IXUSR)
    groups = {user.pw_gid, *os.getgrouplist(user.pw_name, user.pw_gid)}
    if info.st_gid in groups:
        return bool(info.st_mode & stat.S_IXGRP)
    return bool(info.st_mode & stat.S_IXOTH)


def reachable_root(root: Path, user: pwd.struct_passwd | None) -> Path:
    """``root`` when ``user`` can reach it, else its place under RELOCATED_DATA_ROOT."""
    root = Path(root).resolve()
    if user is None:
        return root
    ancestors = [parent for parent in root.parents if parent.exists()]
    if all(_can_traverse(user, parent) for parent in ancestors):
        return root
    digest = hashlib.sha256(str(root).encode()).hexdigest()[:12]
    RELOCATED_DATA_ROOT.mkdir(mode=0o711, parents=True, exist_ok=True)
    readable = "-".join(part.lstrip(".") for part in root.parts[-3:])  # checkout-run-postgres
    return RELOCATED_DATA_ROOT / f"{readable}-{digest}"


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
        self.user = _service_user()
        self.root = reachable_root(root, self.user)
        self.data = self.root / "data"
        self.port = port or free_port()
        self.durable = durable

    @property
    def admin_dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def dsn(self, database: str = DB_NAME, user: str = DB_USER) -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"

    def _run(self, argv: list[str], **kwargs) -> subprocess.CompletedProcess:
        if self.user is not None:
            kwargs.update(user=self.user.pw_uid, group=self.user.pw_gid, extra_groups=[])
        # A session of its own: Ctrl-C in the terminal that ran `services up`
        # (or `make run`) must not reach the postmaster pg_ctl leaves behind.
        result = subprocess.run(argv, capture_output=True, text=True, start_new_session=True,
                                **kwargs)
        if result.returncode != 0:
            raise ServiceError(f"{' '.join(argv[:2])} failed:\n{result.stdout}{result.stderr}")
        return result

    def initialized(self) -> bool:
        return (self.data / "PG_VERSION").exists()

    def init(self) -> None:
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
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


class ReplicaServer(PostgresServer):
    """A streaming hot standby of a :class:`PostgresServer`.

    Cloned with ``pg_basebackup -R`` (standby.signal and primary_conninfo),
    through a physical replication slot so the primary keeps the WAL the
    standby has not received yet, and with ``hot_standby_feedback`` so that
    vacuum on the primary does not cancel the standby's running reads (the
    recovery conflicts that remain are retried on the primary by the app).
    """

    def __init__(self, root: Path, primary: PostgresServer, slot: str,
                 port: int | None = None, *, durable: bool = True):
        super().__init__(root, port, durable=durable)
        self.primary = primary
        self.slot = slot

    def init(self) -> None:
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self.user is not None:
            os.chown(self.root, self.user.pw_uid, self.user.pw_gid)
        self._drop_slot()  # a slot left by an earlier clone would hold WAL for nobody
        self._run([
            _pg_bin("pg_basebackup"), "-h", "127.0.0.1", "-p", str(self.primary.port),
            "-U", "postgres", "-D", str(self.data), "-X", "stream", "-c", "fast",
            "-R", "-C", "-S", self.slot, "--no-sync",
        ])

    def start(self) -> None:
        if not self.initialized():
            self.init()
        options = [
            f"-p {self.port}",
            "-c listen_addresses=127.0.0.1",
            f"-c unix_socket_directories={self.root}",
            "-c max_connections=200",
            "-c shared_buffers=64MB",
            "-c hot_standby=on",
            "-c hot_standby_feedback=on",
            # Replies often, so the primary's view of the standby stays fresh.
            "-c wal_receiver_status_interval=1s",
            # Over what -R wrote: the primary may have come back on another port.
            f"-c primary_conninfo='host=127.0.0.1 port={self.primary.port} user=postgres "
            f"application_name={self.slot}'",
            f"-c primary_slot_name={self.slot}",
        ]
        if not self.durable:
            options += ["-c fsync=off"]
        self._run([
            _pg_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.root / "postgres.log"),
            "-o", " ".join(options), "-w", "-t", "60", "start",
        ])

    def ensure_database(self, name: str = DB_NAME, owner: str = DB_USER) -> None:
        """Nothing to create: the standby is read-only and holds the primary's roles."""

    def destroy(self) -> None:
        """Stop, remove the data directory and drop the slot on the primary."""
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)
        self._drop_slot()

    def _drop_slot(self) -> None:
        import psycopg2

        try:
            conn = psycopg2.connect(self.primary.admin_dsn, connect_timeout=5)
        except psycopg2.Error:
            return  # primary down: nothing to drop now
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT pg_drop_replication_slot(slot_name)"
                            " FROM pg_replication_slots WHERE slot_name = %s AND NOT active",
                            (self.slot,))
        finally:
            conn.close()


def replica_slot(index: int) -> str:
    return f"peregrine_replica_{index}"


class MemcachedServer(PidfileProcess):
    """A memcached process on a loopback port."""

    name = "memcached"

    def __init__(self, root: Path, port: int | None = None, memory_mb: int = 64):
        super().__init__(root, port or free_port())
        self.memory_mb = memory_mb

    @staticmethod
    def _binary() -> str:
        return shutil.which("memcached") or "/usr/bin/memcached"

    def check_installed(self) -> None:
        if not os.path.exists(self._binary()):
            raise ServiceError(
                "memcached not found: apt-get install memcached (or `make system-deps`)")

    def argv(self) -> list[str]:
        argv = [self._binary(), "-l", "127.0.0.1", "-p", str(self.port), "-U", "0",
                "-m", str(self.memory_mb), "-c", "4096"]
        user = _service_user()
        if user is not None:
            argv += ["-u", user.pw_name]
        return argv


@dataclass
class LocalStack:
    """The dev stack under one run directory, remembered in ``services.json``."""

    root: Path

    @classmethod
    def from_env(cls) -> LocalStack:
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

    def _replicas(self, pg: PostgresServer) -> list[ReplicaServer]:
        ports = self._state().get("replica_ports", [])
        return [ReplicaServer(self.root / f"replica-{index}", pg, replica_slot(index), port)
                for index, port in enumerate(ports, start=1)]

    def _mail_catcher(self):
        from app.mail.catcher import MailCatcher

        return MailCatcher(self.root, self._state().get("smtp_port"))

    def _data_key(self) -> str:
        """A Fernet key (PEREGRINE_DATA_KEY), made once and kept like the JWT secret."""
        import base64

        path = self.root / "data-key"
        if not path.exists():
            path.write_text(base64.urlsafe_b64encode(secrets.token_bytes(32)).decode())
            path.chmod(0o600)
        return path.read_text().strip()

    def _jwt_secret(self) -> str:
        path = self.root / "jwt-secret"
        if not path.exists():
            path.write_text(secrets.token_urlsafe(48))
            path.chmod(0o600)
        return path.read_text().strip()

    def up(self, pg_port: int | None = None, memcached_port: int | None = None,
           replicas: int | None = None) -> dict[str, str]:
        """Start what is stopped; ``*_port`` asks for a port instead of a free one.

        ``replicas`` is how many streaming standbys of Postgres to keep
        (None: as many as last time); surplus ones are removed with their slot.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        if _service_user() is not None:
            # The servers run unprivileged and must reach their data below
            # this directory (mkdtemp, for one, makes it 0700).
            self.root.chmod(self.root.stat().st_mode | 0o011)
        pg, mc = self._servers()
        pg.port = self._choose_port("Postgres", pg.port, pg_port, pg.running(),
                                    reuse=pg.initialized())
        if not pg.running():
            pg.start()
        pg.ensure_database()
        mc.port = self._choose_port("memcached", mc.port, memcached_port, mc.running(),
                                    reuse=True)
        if not mc.running():
            mc.start()
        catcher = self._mail_catcher()
        if not catcher.running():
            catcher.port = self._choose_port("the mail catcher", catcher.port, None, False,
                                             reuse=True)
            catcher.start()
        standbys = self._replicas(pg)
        wanted = len(standbys) if replicas is None else replicas
        for surplus in standbys[wanted:]:
            surplus.destroy()
        standbys = standbys[:wanted]
        for index in range(len(standbys) + 1, wanted + 1):
            standbys.append(ReplicaServer(self.root / f"replica-{index}", pg,
                                          replica_slot(index)))
        for standby in standbys:
            standby.port = self._choose_port("the replica", standby.port, None,
                                             standby.running(), reuse=standby.initialized())
            if not standby.running():
                standby.start()
        self.state_file.write_text(json.dumps({
            "postgres_port": pg.port, "memcached_port": mc.port, "smtp_port": catcher.port,
            "replica_ports": [standby.port for standby in standbys],
        }))
        return self.environment(pg, mc)

    def _choose_port(self, name: str, current: int, wanted: int | None, running: bool,
                     reuse: bool) -> int:
        if running:
            if wanted and wanted != current:
                raise ServiceError(f"{name} already runs on port {current}; "
                                   "run `services down` first to move it")
            return current
        if wanted:
            if not self._port_free(wanted):
                raise ServiceError(f"port {wanted} asked for {name} is in use")
            return wanted
        return current if reuse and self._port_free(current) else free_port()

    def environment(self, pg=None, mc=None) -> dict[str, str]:
        if pg is None:
            pg, mc = self._servers()
        return {
            "PEREGRINE_DATABASE_URL": pg.dsn(),
            "PEREGRINE_DATABASE_REPLICA_URLS": ",".join(
                standby.dsn() for standby in self._replicas(pg)),
            "PEREGRINE_MEMCACHED_SERVERS": f"127.0.0.1:{mc.port}",
            "PEREGRINE_JWT_SECRET": self._jwt_secret(),
            # Mail goes to the local catcher, which writes it to <run dir>/mail/.
            "PEREGRINE_SMTP_URL": f"smtp://127.0.0.1:{self._mail_catcher().port}",
            "PEREGRINE_DATA_KEY": self._data_key(),
        }

    def down(self) -> None:
        pg, mc = self._servers()
        mc.stop()
        self._mail_catcher().stop()
        for standby in self._replicas(pg):
            standby.stop()
        pg.stop()

    def status(self) -> dict[str, str]:
        pg, mc = self._servers()
        return {
            "postgres": f"running on 127.0.0.1:{pg.port}" if pg.running() else "stopped",
            "memcached": f"running on 127.0.0.1:{mc.port}" if mc.running() else "stopped",
            **{f"replica-{index}": (f"running on 127.0.0.1:{standby.port}"
                                    if standby.running() else "stopped")
               for index, standby in enumerate(self._replicas(pg), start=1)},
            "run_dir": str(self.root),
            "pg_data": str(pg.data),
            "mail": self._mail_catcher().describe(),
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
