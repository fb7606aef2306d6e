"""The command-line interface people, tests and deployment use."""

import os
import subprocess
import sys

import psycopg2
import pytest

from app.manage.migrate import migrate
from app.manage.seed import SEED_PASSWORD, seed
from tests.support.databases import scratch_database

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def cli(*args, env=None, check=True):
    result = subprocess.run([sys.executable, "-m", "app", *args], cwd=REPO,
                            env={**os.environ, **(env or {})}, capture_output=True,
                            text=True, timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"{args} failed:\n{result.stdout}\n{result.stderr}")
    return result


def test_services_up_is_idempotent_and_prints_exports(run_dir):
    env = {"PEREGRINE_RUN_DIR": str(run_dir / "cli-stack")}
    try:
        first = cli("services", "up", env=env).stdout
        second = cli("services", "up", env=env).stdout
        assert first == second, "a second `up` changed ports or secrets"
        exports = dict(line.removeprefix("export ").split("=", 1)
                       for line in first.splitlines())
        assert {"PEREGRINE_DATABASE_URL", "PEREGRINE_MEMCACHED_SERVERS",
                "PEREGRINE_JWT_SECRET"} <= set(exports)
        assert all(name.startswith("PEREGRINE_") for name in exports), exports
        # No replicas asked for: the variable is exported empty, so a shell
        # that had replicas before stops reading from them.
        assert exports.get("PEREGRINE_DATABASE_REPLICA_URLS", "''") in ("", "''")
        conn = psycopg2.connect(exports["PEREGRINE_DATABASE_URL"])
        conn.close()
        assert "running" in cli("services", "status", env=env).stdout
    finally:
        cli("services", "down", env=env)
    assert "stopped" in cli("services", "status", env=env).stdout


def test_migrate_twice_applies_once(postgres, db):
    assert migrate(postgres.dsn(), log=lambda message: None) == []
    with db.cursor() as cur:
        cur.execute("SELECT version FROM schema_migrations ORDER BY version")
        assert [row[0] for row in cur.fetchall()][0] == 1


def test_migrate_cli_reports_up_to_date(base_env, db):
    out = cli("migrate", env=base_env).stdout
    assert "up to date" in out


def test_missing_configuration_is_a_clear_error():
    env = {k: v for k, v in os.environ.items() if not k.startswith("PEREGRINE_")}
    result = subprocess.run([sys.executable, "-m", "app", "migrate"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "PEREGRINE_DATABASE_URL" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_refuses_a_short_jwt_secret(base_env):
    result = cli("serve", env={**base_env, "PEREGRINE_JWT_SECRET": "short"}, check=False)
    assert result.returncode == 2
    assert "PEREGRINE_JWT_SECRET" in result.stderr and "32 bytes" in result.stderr


@pytest.fixture
def second_database(postgres):
    with scratch_database(postgres, "seed_check") as dsn:
        migrate(dsn, log=lambda message: None)
        yield dsn


def snapshot(dsn):
    conn = psycopg2.connect(dsn)
    with conn, conn.cursor() as cur:
        cur.execute("SELECT id, sku, name, price, stock FROM products ORDER BY sku")
        products = cur.fetchall()
        cur.execute("SELECT id, email FROM users ORDER BY email")
        users = cur.fetchall()
    conn.close()
    return products, users


def test_seed_is_deterministic_and_safe_to_repeat(postgres, db, second_database):
    first = seed(postgres.dsn(), products=300, users=3, seed_value=7)
    assert (first.categories, first.products, first.users) == (20, 300, 3)
    again = seed(postgres.dsn(), products=300, users=3, seed_value=7)
    assert (again.categories, again.products, again.users) == (0, 0, 0)
    seed(second_database, products=300, users=3, seed_value=7)
    assert snapshot(postgres.dsn()) == snapshot(second_database)


def test_seeded_users_have_the_documented_password(postgres, db):
    from app.passwords import HASHER

    seed(postgres.dsn(), products=0, users=1, seed_value=3)
    with db.cursor() as cur:
        cur.execute("SELECT password_hash FROM users")
        assert HASHER.verify(cur.fetchone()[0], SEED_PASSWORD)


def test_create_user_cli(base_env, db):
    out = cli("create-user", "--email", "Admin@Example.test", "--password", "correct horse",
              "--role", "admin", env=base_env).stdout
    assert "created admin Admin@Example.test" in out
    duplicate = cli("create-user", "--email", "admin@example.test", "--password",
                    "another pass", env=base_env, check=False)
    assert duplicate.returncode == 2 and "already exists" in duplicate.stderr
    with db.cursor() as cur:
        cur.execute("SELECT role FROM users")
        assert cur.fetchall() == [("admin",)]


def test_console_script_is_the_same_cli():
    script = os.path.join(os.path.dirname(sys.executable), "peregrine")
    assert os.path.exists(script), "the virtualenv lacks the peregrine console script"
    via_script = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=60)
    via_module = cli("--help")
    assert via_script.returncode == 0
    assert via_script.stdout == via_module.stdout
    assert "services" in via_script.stdout and "create-user" in via_script.stdout


def test_prune_deletes_only_what_has_expired(base_env, db):
    with db.cursor() as cur:
        cur.execute("INSERT INTO users (email, email_key, name, password_hash)"
                    " VALUES ('p@x.test', 'p@x.test', 'P', 'h')"
                    " RETURNING id")
        user_id = cur.fetchone()[0]
        cur.execute(
            "INSERT INTO idempotency_keys (user_id, key, request_hash, response_status,"
            " response_body, created_at) VALUES"
            " (%(u)s, 'old', 'h', 201, 'b', now() - interval '25 hours'),"
            " (%(u)s, 'new', 'h', 201, 'b', now() - interval '1 hour')", {"u": user_id})
        families = []
        for _ in range(3):
            cur.execute("INSERT INTO refresh_families (user_id, created_at)"
                        " VALUES (%s, now() - interval '40 days') RETURNING id", (user_id,))
            families.append(cur.fetchone()[0])
        cur.execute(
            "INSERT INTO refresh_tokens (user_id, family_id, token_hash, expires_at) VALUES"
            " (%(u)s, %(f0)s, 'a', now() - interval '2 days'),"
            " (%(u)s, %(f1)s, 'b', now() - interval '1 hour'),"
            " (%(u)s, %(f2)s, 'c', now() + interval '1 day')",
            {"u": user_id, "f0": families[0], "f1": families[1], "f2": families[2]})
    out = cli("prune", env=base_env).stdout
    assert "pruned 1 idempotency key(s)" in out and "1 refresh token(s)" in out
    with db.cursor() as cur:
        cur.execute("SELECT key FROM idempotency_keys")
        assert cur.fetchall() == [("new",)]
        cur.execute("SELECT token_hash FROM refresh_tokens ORDER BY token_hash")
        assert [bytes(row[0]) for row in cur.fetchall()] == [b"b", b"c"]
        # The family left without tokens goes too; the others stay.
        cur.execute("SELECT id FROM refresh_families ORDER BY created_at, id")
        assert sorted(row[0] for row in cur.fetchall()) == sorted(families[1:])
