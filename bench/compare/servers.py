"""The servers under test: how each is started, which process is its worker.

Every server gets one worker process pinned to CPU0 and is configured as its
users run it in production, without per-request logs for the peers (as their
own benchmarks run them). Peregrine runs with its shipped defaults:
``gunicorn.conf.py`` as is (worker class, worker recycling), one JSON request
line per request at ``info`` on stderr (to a file), statsd on.
"""

import hashlib
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PEERS = os.path.join(ROOT, "bench", "peers")


@dataclass
class Server:
    name: str  # e.g. "peregrine", "fastapi", "granian-16"
    kind: str  # "peregrine" or the peer's directory under bench/peers/
    argv: list
    env: dict = field(default_factory=dict)
    cwd: str = ROOT


def peregrine(statsd_port: int, name: str = "peregrine") -> Server:
    env = {"PEREGRINE_WORKERS": "1", "PEREGRINE_RATE_LIMIT_PER_MINUTE": "0",
           "PEREGRINE_LOG_LEVEL": "info", "PEREGRINE_STATSD_ADDR": f"127.0.0.1:{statsd_port}"}
    return Server(name, "peregrine", [sys.executable, "-m", "app", "serve"], env)


def fastapi() -> Server:
    python = os.path.join(PEERS, "fastapi", ".venv", "bin", "python")
    argv = [python, "-m", "uvicorn", "app:app", "--workers", "1", "--loop", "uvloop",
            "--http", "httptools", "--no-access-log", "--log-level", "warning",
            "--backlog", "2048"]
    return Server("fastapi", "fastapi", argv, cwd=os.path.join(PEERS, "fastapi"))


def granian(threads: int) -> Server:
    binary = os.path.join(PEERS, "granian", ".venv", "bin", "granian")
    argv = [binary, "--interface", "wsgi", "--workers", "1", "--blocking-threads",
            str(threads), "--no-access-log", "--log-level", "warning", "--backlog", "2048",
            "app:app"]
    return Server(f"granian-{threads}", "granian", argv, {"PEER_THREADS": str(threads)},
                  cwd=os.path.join(PEERS, "granian"))


def bind_args(server: Server, port: int) -> tuple[list, dict]:
    if server.kind == "peregrine":
        return [], {"PEREGRINE_BIND": f"127.0.0.1:{port}"}
    return ["--host", "127.0.0.1", "--port", str(port)], {}


def start(server: Server, port: int | None, base_env: dict, log,
          bind: str | None = None, cpus: str = "0") -> subprocess.Popen:
    """Start ``server`` on ``cpus`` (taskset's list) on loopback ``port``, or (Peregrine)
    on ``bind``, e.g. ``unix:/path/gunicorn.sock`` as the Ansible app role binds it."""
    if bind is not None:
        extra_argv, extra_env = [], {"PEREGRINE_BIND": bind}
    else:
        extra_argv, extra_env = bind_args(server, port)
    env = dict(base_env, **server.env, **extra_env)
    env["PYTHONPATH"] = PEERS if server.kind != "peregrine" else ROOT
    argv = server.argv + extra_argv
    return subprocess.Popen(["taskset", "-c", cpus, *argv], cwd=server.cwd, env=env,
                            stdout=log, stderr=log, start_new_session=True)


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=40)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(c) for c in f.read().split()]
    except FileNotFoundError:
        return []


def worker_pid(server: Server, process: subprocess.Popen) -> int:
    """The process that serves requests: gunicorn's and Granian's child, uvicorn itself."""
    if server.kind == "fastapi":
        return process.pid
    for _ in range(100):
        found = children(process.pid)
        if found:
            return found[0]
        time.sleep(0.1)
    raise RuntimeError(f"{server.name}: no worker process")


def ensure_peer_venv(kind: str) -> None:
    """Create bench/peers/<kind>/.venv from its requirements.txt when missing or stale."""
    directory = os.path.join(PEERS, kind)
    requirements = os.path.join(directory, "requirements.txt")
    venv = os.path.join(directory, ".venv")
    marker = os.path.join(venv, ".installed")
    with open(requirements, "rb") as f:
        wanted = hashlib.sha256(f.read()).hexdigest()
    try:
        with open(marker) as f:
            if f.read().strip() == wanted:
                return
    except FileNotFoundError:
        pass
    print(f"creating {os.path.relpath(venv, ROOT)} ...", file=sys.stderr)
    if not os.path.exists(os.path.join(venv, "bin", "python")):
        subprocess.run(["python3", "-m", "venv", venv], check=True)
    subprocess.run([os.path.join(venv, "bin", "pip"), "install", "--quiet", "-r",
                    requirements], check=True)
    with open(marker, "w") as f:
        f.write(wanted + "\n")
