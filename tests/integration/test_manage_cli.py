"""The CLI a newcomer meets.

--version, descriptions, passwords off argv, dev ports, serve warnings.
"""

from __future__ import annotations

import os
import pty
import select
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from app.manage.services import RELOCATED_DATA_ROOT, PostgresServer, free_port

REPO = Path(__file__).resolve().parents[2]
COMMANDS = ("services", "migrate", "seed", "create-user", "prune", "serve")


def cli(*args, env=None, input=None, timeout=120):
    return subprocess.run([sys.executable, "-m", "app", *args], cwd=REPO, input=input,
                          env={**os.environ, **(env or {})}, capture_output=True, text=True,
                          timeout=timeout)


def test_version_and_every_command_has_a_description():
    version = cli("--version")
    assert version.returncode == 0 and version.stdout.startswith("peregrine 0.")
    for command in COMMANDS:
        helped = cli(command, "--help")
        assert helped.returncode == 0, helped.stderr
        # argparse prints a description as its own paragraph after the usage.
        paragraphs = helped.stdout.split("\n\n")
        assert len(paragraphs) >= 3 and not paragraphs[1].startswith(
            ("positional", "options")), f"`{command}` has no description:\n{helped.stdout}"


def _user_role(db, email):
    with db.cursor() as cur:
        cur.execute("SELECT role FROM users WHERE email_key = lower(%s)", (email,))
        row = cur.fetchone()
    return row and row[0]


def test_create_user_reads_the_password_from_stdin(base_env, db):
    result = cli("create-user", "--email", "stdin@example.test", "--password-stdin",
                 env=base_env, input="correct horse battery\n")
    assert result.returncode == 0, result.stderr
    assert _user_role(db, "stdin@example.test") == "user"
    assert "correct horse" not in result.stdout + result.stderr


def test_create_user_reads_the_password_from_the_environment(base_env, db):
    result = cli("create-user", "--email", "env@example.test", "--role", "admin",
                 env={**base_env, "PEREGRINE_USER_PASSWORD": "from the environment"},
                 input="")
    assert result.returncode == 0, result.stderr
    assert _user_role(db, "env@example.test") == "admin"


def test_create_user_without_a_password_source_is_a_clear_error(base_env, db):
    env = {**base_env, "PEREGRINE_USER_PASSWORD": ""}
    result = cli("create-user", "--email", "none@example.test", env=env, input="")
    assert result.returncode == 2
    assert "--password-stdin" in result.stderr and "Traceback" not in result.stderr
    short = cli("create-user", "--email", "short@example.test", "--password-stdin",
                env=base_env, input="short\n")
    assert short.returncode == 2 and "8 to 128 characters" in short.stderr
    assert _user_role(db, "none@example.test") is None


def _run_in_a_terminal(argv, env, answers, timeout=60) -> tuple[int, str]:
    """Run ``argv`` on a pseudo-terminal, typing each answer after its prompt."""
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child
        os.chdir(REPO)
        os.execve(argv[0], argv, env)
    output, pending = b"", list(answers)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(fd, 4096)
                except OSError:  # the child closed the terminal
                    break
                if not chunk:
                    break
                output += chunk
            if pending and output.rstrip().endswith(pending[0][0].encode()):
                os.write(fd, pending.pop(0)[1].encode() + b"\n")
                output += b"\n"
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(fd)
    return os.waitstatus_to_exitcode(status), output.decode(errors="replace")


def test_create_user_prompts_twice_on_a_terminal_without_echo(base_env, db):
    env = {**os.environ, **base_env, "PEREGRINE_USER_PASSWORD": ""}
    argv = [sys.executable, "-m", "app", "create-user", "--email", "tty@example.test"]
    code, screen = _run_in_a_terminal(
        argv, env, [("Password:", "typed at a prompt"), ("Repeat it:", "typed at a prompt")])
    assert code == 0, screen
    assert "typed at a prompt" not in screen, "the password was echoed"
    assert _user_role(db, "tty@example.test") == "user"
    code, screen = _run_in_a_terminal(
        [*argv[:-1], "tty2@example.test"], env,
        [("Password:", "first version"), ("Repeat it:", "second version")])
    assert code == 2 and "differ" in screen


def test_services_up_takes_the_ports_it_is_given(tmp_path):
    run_dir = tmp_path / "stack"
    os.chmod(tmp_path, 0o755)
    pg_port, mc_port = free_port(), free_port()
    env = {"PEREGRINE_RUN_DIR": str(run_dir), "PEREGRINE_DEV_MEMCACHED_PORT": str(mc_port)}
    try:
        up = cli("services", "up", "--pg-port", str(pg_port), env=env)
        assert up.returncode == 0, up.stderr
        assert f"@127.0.0.1:{pg_port}/" in up.stdout
        assert f"PEREGRINE_MEMCACHED_SERVERS=127.0.0.1:{mc_port}" in up.stdout
        moved = cli("services", "up", "--pg-port", str(free_port()), env=env)
        assert moved.returncode == 2 and "already runs on port" in moved.stderr
        bad = cli("services", "up", "--pg-port", "postgres", env=env)
        assert bad.returncode == 2 and "port number" in bad.stderr
    finally:
        cli("services", "down", env=env)
        # pytest's temporary root is 0700: the cluster may have been relocated.
        cluster = PostgresServer(run_dir / "postgres", 1).root
        if RELOCATED_DATA_ROOT in cluster.parents:
            shutil.rmtree(cluster, ignore_errors=True)


@pytest.mark.slow
def test_serve_warns_when_a_dependency_is_down_and_serves_anyway(base_env, db, tmp_path):
    port, dead = free_port(), free_port()
    env = {**os.environ, **base_env, "PEREGRINE_BIND": f"127.0.0.1:{port}",
           "PEREGRINE_MEMCACHED_SERVERS": f"127.0.0.1:{dead}"}
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "app", "serve"], cwd=tmp_path, env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    assert r.status == 200
                    break
            except OSError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(30)
    text = log.read_text()
    assert f"warning: memcached at 127.0.0.1:{dead} does not answer" in text, text
    assert "Postgres at" not in text, "Postgres is up: no warning for it"


def test_serve_refuses_a_worker_class_typo_in_one_line(base_env):
    result = cli("serve", env={**base_env, "PEREGRINE_WORKER_CLASS": "hotpath.worker.GeventWorkr"})
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "PEREGRINE_WORKER_CLASS" in result.stderr
    assert "Traceback" not in result.stderr
