"""`make run`'s script from a checkout in a 0700 home (root's, on Debian).

The servers run as an unprivileged account when we are root, and that
account cannot traverse a 0700 home: the stack must still come up (the
cluster then lives where that account can reach it), the script must stop at
the first failure with its cause, and Ctrl-C must stop it without tracebacks.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from app.manage.services import LocalStack, PostgresServer, free_port

REPO = Path(__file__).resolve().parents[2]
RUN_SCRIPT = REPO / "scripts" / "run.sh"

pytestmark = pytest.mark.slow


@pytest.fixture
def private_home():
    """A home directory like /root: 0700 and owned by whoever runs the tests."""
    home = Path(tempfile.mkdtemp(prefix="peregrine-home-"))
    home.chmod(0o700)
    run_dir = home / "checkout" / ".run"
    yield run_dir
    env = {**os.environ, "PEREGRINE_RUN_DIR": str(run_dir)}
    down = subprocess.run([sys.executable, "-m", "app", "services", "down"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)
    cluster = PostgresServer(run_dir / "postgres", 1).root
    shutil.rmtree(home, ignore_errors=True)
    shutil.rmtree(cluster, ignore_errors=True)
    assert down.returncode == 0, down.stdout + down.stderr


def _script_env(run_dir: Path, **extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PEREGRINE_")}
    return {**env, "PEREGRINE_RUN_DIR": str(run_dir), "PEREGRINE_PYTHON": sys.executable,
            "PEREGRINE_DEMO_PRODUCTS": "40", "PEREGRINE_WORKERS": "1", **extra}


def _healthz(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as reply:
            return reply.status == 200
    except OSError:
        return False


def test_the_home_is_really_out_of_the_service_accounts_reach(private_home):
    # Guards the test itself: as root, the servers' account must be one that
    # a 0700 root-owned directory shuts out, or the test below proves nothing.
    home = private_home.parent.parent
    assert home.stat().st_mode & 0o777 == 0o700
    if os.geteuid() == 0:
        cluster = PostgresServer(private_home / "postgres", 1).root
        assert home not in cluster.parents, "a root-owned 0700 home was treated as reachable"


def test_run_script_serves_from_a_0700_home_and_stops_cleanly_on_ctrl_c(private_home, tmp_path):
    port = free_port()
    output = tmp_path / "run.log"
    with open(output, "wb") as log:
        proc = subprocess.Popen(["bash", str(RUN_SCRIPT)], cwd=tmp_path, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                env=_script_env(private_home,
                                                PEREGRINE_BIND=f"127.0.0.1:{port}"))
    try:
        deadline = time.monotonic() + 80
        while not _healthz(port):
            assert proc.poll() is None, f"run.sh exited {proc.returncode}:\n{output.read_text()}"
            assert time.monotonic() < deadline, f"not serving after 80 s:\n{output.read_text()}"
            time.sleep(0.2)
        stack = LocalStack(private_home)
        assert "running" in stack.status()["postgres"]
        # Ctrl-C in a terminal signals the whole foreground process group.
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(40) in (0, -signal.SIGINT, 130)
        # Ctrl-C stops the server only; `services down` stops the rest.
        assert "running" in stack.status()["postgres"], "Ctrl-C stopped Postgres"
        assert "running" in stack.status()["memcached"], "Ctrl-C stopped memcached"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    text = output.read_text()
    assert "Serving on" in text and "Shutting down: Master" in text, text
    assert "Traceback" not in text, text
    assert not _healthz(port)


def test_run_script_stops_at_the_first_failure_with_its_cause(private_home, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        result = subprocess.run(["bash", str(RUN_SCRIPT)], cwd=tmp_path, capture_output=True,
                                text=True, timeout=120,
                                env=_script_env(private_home, PEREGRINE_DEV_PG_PORT=str(busy)))
    assert result.returncode == 1
    assert f"port {busy} asked for Postgres is in use" in result.stderr
    assert "could not start Postgres and memcached" in result.stderr
    assert "Migrating" not in result.stdout and "Traceback" not in result.stderr
