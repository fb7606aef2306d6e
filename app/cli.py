"""``python -m app`` / ``peregrine``: run, migrate, seed and manage Peregrine."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from app.config import Config, ConfigError

REPO_ROOT = Path(__file__).resolve().parent.parent
GUNICORN_CONF = REPO_ROOT / "gunicorn.conf.py"


def _fail(message: str) -> "NoReturn":  # noqa: F821
    print(f"peregrine: {message}", file=sys.stderr)
    raise SystemExit(2)


def _config() -> Config:
    try:
        return Config.from_env()
    except ConfigError as ex:
        _fail(f"configuration error: {ex}")


def _database_url() -> str:
    url = os.environ.get("PEREGRINE_DATABASE_URL", "").strip()
    if not url:
        _fail('PEREGRINE_DATABASE_URL is not set; for local development run '
              '`eval "$(python -m app services up)"` first')
    return url


def cmd_services(args) -> None:
    from app.services import LocalStack, ServiceError

    stack = LocalStack.from_env()
    try:
        if args.action == "up":
            env = stack.up()
            print(f"# Postgres and memcached are running; data in {stack.root}", file=sys.stderr)
            for name, value in env.items():
                print(f"export {name}={shlex.quote(value)}")
        elif args.action == "down":
            stack.down()
            print("stopped Postgres and memcached")
        elif args.action == "env":
            for name, value in stack.environment().items():
                print(f"export {name}={shlex.quote(value)}")
        else:
            for name, value in stack.status().items():
                print(f"{name:10} {value}")
    except ServiceError as ex:
        _fail(str(ex))


def cmd_migrate(args) -> None:
    import psycopg2

    from app.migrate import migrate

    try:
        applied = migrate(_database_url())
    except psycopg2.Error as ex:
        _fail(f"migration failed: {str(ex).strip()}")
    print(f"{len(applied)} migration(s) applied" if applied else "schema is up to date")


def cmd_seed(args) -> None:
    import psycopg2

    from app.seed import SEED_EMAIL, SEED_PASSWORD, seed

    try:
        result = seed(_database_url(), products=args.products, users=args.users,
                      seed_value=args.seed)
    except psycopg2.Error as ex:
        _fail(f"seeding failed: {str(ex).strip()} (did you run `python -m app migrate`?)")
    print(f"seeded {result.categories} categories, {result.products} products, "
          f"{result.users} users (seed {args.seed}; rows that existed were kept)")
    if args.users:
        print(f"users log in as {SEED_EMAIL.format(index='N')} with password {SEED_PASSWORD!r}")


def cmd_create_user(args) -> None:
    import psycopg2

    from app import passwords
    from app.users_cli import create_user

    if not 8 <= len(args.password) <= 128:
        _fail("--password must be 8 to 128 characters")
    try:
        user_id = create_user(_database_url(), args.email, args.password, args.name,
                              args.role, passwords.hash_now)
    except ValueError as ex:
        _fail(str(ex))
    except psycopg2.Error as ex:
        _fail(f"could not create the user: {str(ex).strip()}")
    print(f"created {args.role} {args.email} with id {user_id}")


def cmd_prune(args) -> None:
    from datetime import timedelta

    import psycopg2

    from app.queries import maintenance

    if args.idempotency_hours < 1 or args.refresh_days < 0:
        _fail("--idempotency-hours must be >= 1 and --refresh-days >= 0")
    try:
        conn = psycopg2.connect(_database_url(), application_name="peregrine-prune",
                                connect_timeout=10)
        with conn, conn.cursor() as cur:
            keys = maintenance.prune_idempotency_keys(cur, timedelta(hours=args.idempotency_hours))
            tokens = maintenance.prune_refresh_tokens(cur, timedelta(days=args.refresh_days))
        conn.close()
    except psycopg2.Error as ex:
        _fail(f"pruning failed: {str(ex).strip()}")
    print(f"pruned {keys} idempotency key(s) older than {args.idempotency_hours} h and "
          f"{tokens} refresh token(s) expired over {args.refresh_days} day(s) ago")


def cmd_serve(args) -> None:
    _config()  # fail here, with a clear message, rather than in every worker
    if not GUNICORN_CONF.exists():
        _fail(f"{GUNICORN_CONF} is missing; run from a Peregrine checkout")
    argv = [sys.executable, "-m", "gunicorn", "--config", str(GUNICORN_CONF),
            *args.gunicorn_args, "app.wsgi:application"]
    os.chdir(REPO_ROOT)
    os.execv(sys.executable, argv)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="peregrine",
        description="Run, migrate, seed and manage Peregrine (also: python -m app).")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("services",
                       help="start/stop a private Postgres and memcached for development")
    s.add_argument("action", choices=("up", "down", "status", "env"),
                   help="up prints export lines: eval \"$(python -m app services up)\"")
    s.set_defaults(func=cmd_services)

    s = sub.add_parser("migrate", help="apply pending database migrations (idempotent)")
    s.set_defaults(func=cmd_migrate)

    s = sub.add_parser("seed", help="load deterministic demo/benchmark data")
    s.add_argument("--products", type=int, default=1000, help="products to create (default 1000)")
    s.add_argument("--users", type=int, default=10, help="users to create (default 10)")
    s.add_argument("--seed", type=int, default=1, help="random seed (same seed, same data)")
    s.set_defaults(func=cmd_seed)

    s = sub.add_parser("create-user", help="create a user (e.g. the first admin)")
    s.add_argument("--email", required=True)
    s.add_argument("--password", required=True)
    s.add_argument("--name", default=None, help="display name (default: the email's local part)")
    s.add_argument("--role", choices=("user", "admin"), default="user")
    s.set_defaults(func=cmd_create_user)

    s = sub.add_parser("prune", help="delete expired idempotency keys and refresh tokens "
                                     "(run daily, e.g. from cron)")
    s.add_argument("--idempotency-hours", type=int, default=24,
                   help="keep Idempotency-Key records this long (default 24)")
    s.add_argument("--refresh-days", type=int, default=1,
                   help="keep refresh tokens this long after they expire (default 1)")
    s.set_defaults(func=cmd_prune)

    s = sub.add_parser("serve", help="run the API under gunicorn with gunicorn.conf.py")
    s.add_argument("gunicorn_args", nargs=argparse.REMAINDER,
                   help="extra gunicorn options, e.g. -- --log-level debug")
    s.set_defaults(func=cmd_serve)
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if getattr(args, "gunicorn_args", None) and args.gunicorn_args[0] == "--":
        args.gunicorn_args = args.gunicorn_args[1:]
    if getattr(args, "products", 0) < 0 or getattr(args, "users", 0) < 0:
        _fail("--products and --users must be >= 0")
    args.func(args)
