"""Smoke runs of the locust suites in bench/locustfiles against a live server.

Each suite runs headless for a few seconds against gunicorn on the test
Postgres and memcached, and must pass its own verdict; its stats CSV, HTML
report and JSON verdict must give the same request and failure counts. The
admin suite must really have checked reads against its writes, the shopper
suite must have refreshed tokens and signed its two-factor share in through
both steps, and the step shape must report its steps.

locust lives in bench/.venv (never in the app's venv); `make bench-venv`
creates it.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import psycopg2
import pytest
from pymemcache.client.base import Client as MemcacheClient

from app.manage.seed import SEED_PASSWORD, seed
from tests.conftest import TABLES, LiveServer
from tests.support.processes import free_port

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench"
LOCUST = BENCH / ".venv" / "bin" / "locust"
ADMIN_EMAIL = "user3@example.test"  # seeded, then promoted
RUN_SECONDS = 3


@pytest.fixture(scope="module")
def seeded_server(postgres, memcached, base_env, tmp_path_factory):
    """One live server for the module: a small catalog, three shoppers and an admin.

    Module-scoped (the suites only add orders and change prices of the hot
    products), which keeps the whole module near a minute.
    """
    conn = psycopg2.connect(postgres.dsn())
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"TRUNCATE {', '.join(TABLES)} CASCADE")
    conn.close()
    cache = MemcacheClient(("127.0.0.1", memcached.port), connect_timeout=1, timeout=1)
    cache.flush_all(noreply=False)
    cache.close()
    seed(postgres.dsn(), products=120, users=4, seed_value=5)
    conn = psycopg2.connect(postgres.dsn())
    with conn, conn.cursor() as cur:
        cur.execute("UPDATE users SET role = 'admin' WHERE email = %s", (ADMIN_EMAIL,))
        assert cur.rowcount == 1
    conn.close()
    # Every simulated user presents its own X-Real-IP; the rate limit is not under test here.
    server = LiveServer({**base_env, "PEREGRINE_RATE_LIMIT_PER_MINUTE": "0"},
                        log_path=tmp_path_factory.mktemp("locust-server") / "server.log")
    yield server.start()
    server.stop()


def locust_env(**extra):
    if not LOCUST.exists():
        pytest.fail(f"{LOCUST} is missing: run `make bench-venv` (locust lives in bench/.venv)")
    # A smoke run checks behaviour and reports, not capacity: the latency
    # budgets are widened tenfold and a busy CI core may pass 90 % CPU.
    env = {**os.environ, "BENCH_SEEDED_USERS": "3", "BENCH_PASSWORD": SEED_PASSWORD,
           "BENCH_ADMIN_EMAIL": ADMIN_EMAIL, "BENCH_POOL_PAGES": "2",
           "BENCH_BUDGET_FACTOR": "10", "BENCH_ALLOW_CPU_WARNING": "1", **extra}
    env.pop("PYTHONPATH", None)  # bench/.venv's own packages, not the app's
    return env


def locust_command(server, prefix, locustfiles, *args):
    return [str(LOCUST), "-f", locustfiles, "--host", server.url, "--csv", str(prefix),
            "--html", f"{prefix}.html", "--only-summary", "--stop-timeout", "1", *args]


def run_suite(server, tmp_path, locustfiles, *args, env=None):
    prefix = tmp_path / "run"
    done = subprocess.run(locust_command(server, prefix, locustfiles, "--headless", *args),
                          check=False, cwd=BENCH, env=locust_env(**(env or {})),
                          capture_output=True, text=True, timeout=60)
    return judged(prefix, done.returncode, done.stdout + done.stderr)


def judged(prefix, returncode, output):
    """The verdict of a finished run, which must have passed."""
    verdict_path = Path(f"{prefix}_verdict.json")
    assert verdict_path.exists(), f"no verdict written (exit {returncode}):\n{output}"
    verdict = json.loads(verdict_path.read_text())
    assert verdict["passed"], f"the run failed: {verdict['problems']}\n{output[-4000:]}"
    assert returncode == 0, f"exit code {returncode} for a passing verdict:\n{output}"
    assert verdict["requests"] > 0
    return verdict, prefix, output


def csv_rows(prefix):
    with open(f"{prefix}_stats.csv", newline="") as file:
        return {row["Name"]: row for row in csv.DictReader(file)}


def html_totals(prefix):
    """Requests and failures in the HTML report (its data is a JSON object in the page)."""
    html = Path(f"{prefix}.html").read_text()
    start = html.find("window.templateArgs = ")
    assert start >= 0, "the HTML report carries no statistics"
    data, _ = json.JSONDecoder().raw_decode(html, start + len("window.templateArgs = "))
    (total,) = [row for row in data["requests_statistics"] if row["name"] == "Aggregated"]
    return total["num_requests"], total["num_failures"]


def assert_reports_agree(verdict, prefix):
    rows = csv_rows(prefix)
    total = rows["Aggregated"]
    assert (int(total["Request Count"]), int(total["Failure Count"])) == \
        (verdict["requests"], verdict["failures"]), "the stats CSV disagrees with the verdict"
    assert html_totals(prefix) == (verdict["requests"], verdict["failures"]), \
        "the HTML report disagrees with the verdict"
    for entry in verdict["entries"]:
        row = rows[entry["name"]]
        assert (int(row["Request Count"]), int(row["Failure Count"])) == \
            (entry["requests"], entry["failures"]), f"CSV and verdict differ on {entry['name']}"
    return rows


def entry(verdict, name):
    found = [e for e in verdict["entries"] if e["name"] == name]
    assert found, f"no {name!r} requests in the run"
    return found[0]


def test_browse_suite(seeded_server, tmp_path):
    verdict, prefix, _ = run_suite(seeded_server, tmp_path, "locustfiles/browse.py",
                                   "-u", "10", "-r", "10", "-t", f"{RUN_SECONDS}s",
                                   env={"BENCH_USER_RATE": "4"})
    assert_reports_agree(verdict, prefix)
    assert entry(verdict, "/v1/products/[id]")["requests"] > 0


def test_shopper_suite_refreshes_tokens(seeded_server, tmp_path):
    verdict, prefix, _ = run_suite(seeded_server, tmp_path, "locustfiles/shopper.py",
                                   "-u", "3", "-r", "3", "-t", f"{RUN_SECONDS + 1}s",
                                   env={"BENCH_USER_RATE": "4", "BENCH_REFRESH_S": "0.3"})
    assert_reports_agree(verdict, prefix)
    assert entry(verdict, "/v1/orders")["requests"] > 0
    # One login per user, then refreshes (rotation) instead of logging in again.
    assert entry(verdict, "/v1/auth/login")["requests"] == 3
    # Logins (a memory-hard hash each) may take a second on a busy machine; a
    # refresh is due 0.3 s after each sign-in or refresh.
    assert entry(verdict, "/v1/auth/refresh")["requests"] >= 3


def test_shopper_suite_signs_in_its_two_factor_share(seeded_server, postgres, tmp_path):
    # One shopper in three: the third started registers, enrols TOTP and logs in twice.
    verdict, prefix, _ = run_suite(seeded_server, tmp_path, "locustfiles/shopper.py",
                                   "-u", "3", "-r", "3", "-t", f"{RUN_SECONDS + 2}s",
                                   env={"BENCH_USER_RATE": "4", "BENCH_MFA_SHARE": "0.34"})
    assert_reports_agree(verdict, prefix)
    for name in ("/v1/auth/register", "/v1/users/me/mfa/totp", "/v1/users/me/mfa/totp/confirm",
                 "/v1/auth/login (mfa required)", "/v1/auth/login/mfa"):
        assert (entry(verdict, name)["requests"], entry(verdict, name)["failures"]) == (1, 0), name
    # Two seeded shoppers plus the two-factor one's login before it enrolled.
    assert entry(verdict, "/v1/auth/login")["requests"] == 3
    # Every shopper, the two-factor one with its second-step token, then reads its profile.
    me = entry(verdict, "/v1/users/me")
    assert (me["requests"], me["failures"]) == (3, 0)
    conn = psycopg2.connect(postgres.dsn())
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT t.confirmed_at IS NOT NULL, t.last_step IS NOT NULL,"
                        " (SELECT count(*) FROM audit_log a WHERE a.subject_id = u.id"
                        "  AND a.action = 'auth.login' AND a.details->>'mfa' = 'totp')"
                        " FROM users u JOIN user_totp t ON t.user_id = u.id"
                        " WHERE u.email LIKE 'shopper-2fa-%'")
            assert cur.fetchall() == [(True, True, 1)]
    finally:
        conn.close()


def test_admin_suite_checks_convergence(seeded_server, tmp_path):
    verdict, prefix, _ = run_suite(seeded_server, tmp_path, "locustfiles/admin.py",
                                   "-u", "6", "-r", "6", "-t", f"{RUN_SECONDS}s",
                                   env={"BENCH_USER_RATE": "5", "BENCH_HOT_PRODUCTS": "5"})
    assert_reports_agree(verdict, prefix)
    converge = verdict["convergence"]
    assert converge["writes"] > 0, converge
    assert converge["checked_reads"] > 0, converge
    assert converge["stale_after_bound"] == 0, converge
    assert entry(verdict, "/v1/products/[id] (PATCH)")["requests"] == converge["writes"]


def test_mixed_suite_with_step_shape(seeded_server, tmp_path):
    verdict, prefix, output = run_suite(
        seeded_server, tmp_path, "locustfiles/mixed.py,locustfiles/shapes/step.py",
        env={"BENCH_USER_RATE": "3", "BENCH_STEP_USERS": "6", "BENCH_STEP_S": "2.5",
             "BENCH_STEPS": "2", "BENCH_HOT_PRODUCTS": "5"})
    rows = assert_reports_agree(verdict, prefix)
    # One verdict over every class of the mix.
    for name in ("/v1/products/[id]", "/v1/orders", "/v1/products/[id] (PATCH)",
                 "/v1/products/[id] (hot)"):
        assert name in rows, f"no {name!r} in the mixed run"
    shape = verdict["shape"]
    assert shape["shape"] == "step"
    assert [row["users"] for row in shape["steps"]] == [6, 12], shape
    assert all(row["achieved_rps"] > 0 for row in shape["steps"]), shape
    assert "step 2: 12 users" in output


def test_web_ui_run_writes_the_reports_on_quit(seeded_server, tmp_path):
    """A test started from the web UI; Ctrl-C quits, and the reports are written then."""
    prefix, port = tmp_path / "run", free_port()
    ui = subprocess.Popen(locust_command(seeded_server, prefix, "locustfiles/browse.py",
                                         "--web-host", "127.0.0.1", "--web-port", str(port)),
                          cwd=BENCH, env=locust_env(BENCH_USER_RATE="4", PYTHONFAULTHANDLER="1"),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(url, timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline and ui.poll() is None, "the web UI never came up"
                time.sleep(0.2)
        form = b"user_count=6&spawn_rate=6&host=" + seeded_server.url.encode()
        with urllib.request.urlopen(f"{url}/swarm", data=form, timeout=5) as answer:
            assert json.load(answer)["success"], "the UI refused to start the test"
        time.sleep(RUN_SECONDS)
        assert not Path(f"{prefix}.html").exists(), "the report is written on quit, not before"
        ui.send_signal(signal.SIGINT)  # what Ctrl-C in the terminal sends
        try:
            output, _ = ui.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            # SIGABRT makes faulthandler print where locust's threads stand.
            ui.send_signal(signal.SIGABRT)
            output, _ = ui.communicate(timeout=10)
            pytest.fail(f"locust did not quit within 30 s of Ctrl-C:\n{output[-6000:]}")
    finally:
        if ui.poll() is None:
            ui.kill()
            ui.wait()
    verdict, prefix, _ = judged(prefix, ui.returncode, output)
    assert_reports_agree(verdict, prefix)


def test_distributed_run_with_workers_fed_by_the_master(seeded_server, tmp_path):
    """Master and a worker started as the Ansible role starts them: ``-f -``, the
    suites' package on PYTHONPATH, run from a directory without the checkout."""
    prefix, port = tmp_path / "run", free_port()
    worker_dir = tmp_path / "worker"
    worker_dir.mkdir()
    worker = subprocess.Popen([str(LOCUST), "-f", "-", "--worker", "--master-port", str(port)],
                              cwd=worker_dir,
                              env={**locust_env(BENCH_USER_RATE="5", BENCH_HOT_PRODUCTS="5"),
                                   "PYTHONPATH": str(BENCH)},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        done = subprocess.run(
            locust_command(seeded_server, prefix, "locustfiles/mixed.py", "--headless",
                           "--master", "--master-bind-port", str(port), "--expect-workers", "1",
                           "--expect-workers-max-wait", "30", "-u", "8", "-r", "8",
                           "-t", f"{RUN_SECONDS}s"),
            check=False, cwd=BENCH, env=locust_env(), capture_output=True, text=True,
            timeout=60)
        worker_output, _ = worker.communicate(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert "No module named" not in worker_output, worker_output
    verdict, prefix, _ = judged(prefix, done.returncode,
                                done.stdout + done.stderr + "\n-- worker --\n" + worker_output)
    assert_reports_agree(verdict, prefix)
    # The convergence counts travel from the worker to the master with its stats.
    assert verdict["convergence"]["checked_reads"] > 0, verdict["convergence"]
