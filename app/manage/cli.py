"""``python -m app`` / ``peregrine``: run, migrate, seed and manage Peregrine."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path
from typing import NoReturn

from app.config import Config, ConfigError

# The gunicorn settings ship inside the package, so an installed wheel serves
# from any directory; gunicorn loads them by module name.
GUNICORN_CONF = "python:app.gunicorn_conf"
# The directory that holds the ``app`` package: a checkout, or site-packages.
PACKAGE_PARENT = Path(__file__).resolve().parent.parent.parent
PASSWORD_ENV = "PEREGRINE_USER_PASSWORD"


def _fail(message: str) -> NoReturn:
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


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed_version

    try:
        return installed_version("peregrine")
    except PackageNotFoundError:  # a checkout that was never pip-installed
        from app import __version__

        return __version__


def _port_option(value: str | None, name: str) -> int | None:
    if value in (None, ""):
        return None
    if not value.isdigit() or not 0 < int(value) < 65536:
        _fail(f"{name} must be a port number (1-65535), got {value!r}")
    return int(value)


def _replica_count(value: str) -> int:
    if not value.isdigit() or int(value) > 8:
        raise argparse.ArgumentTypeError(f"expected 0 to 8 replicas, got {value!r}")
    return int(value)


def cmd_services(args) -> None:
    from app.manage.services import LocalStack, ServiceError

    stack = LocalStack.from_env()
    try:
        if args.action == "up":
            env = stack.up(
                pg_port=_port_option(args.pg_port, "--pg-port/PEREGRINE_DEV_PG_PORT"),
                memcached_port=_port_option(args.memcached_port,
                                            "--memcached-port/PEREGRINE_DEV_MEMCACHED_PORT"),
                replicas=args.replicas,
            )
            print(f"# Postgres and memcached are running; data in {stack.root}", file=sys.stderr)
            print(f"# Mail is caught into {stack.root / 'mail'} (one .eml per message)",
                  file=sys.stderr)
            for name, value in env.items():
                print(f"export {name}={shlex.quote(value)}")
        elif args.action == "down":
            stack.down()
            print("stopped Postgres, its replicas, memcached and the mail catcher")
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

    from app.manage.migrate import migrate

    try:
        applied = migrate(_database_url())
    except psycopg2.Error as ex:
        _fail(f"migration failed: {str(ex).strip()}")
    print(f"{len(applied)} migration(s) applied" if applied else "schema is up to date")


def cmd_seed(args) -> None:
    import psycopg2
    import psycopg2.errors

    from app.manage.seed import SEED_EMAIL, SEED_PASSWORD, seed

    try:
        result = seed(_database_url(), products=args.products, users=args.users,
                      seed_value=args.seed)
    except psycopg2.Error as ex:
        hint = (" (did you run `python -m app migrate`?)"
                if isinstance(ex, psycopg2.errors.UndefinedTable) else "")
        _fail(f"seeding failed: {str(ex).strip()}{hint}")
    print(f"added {result.categories} categories, {result.products} products, "
          f"{result.users} users (seed {args.seed}; rows that existed were kept)")
    if args.users:
        print(f"users log in as {SEED_EMAIL.format(index='N')} with password {SEED_PASSWORD!r}")


def cmd_create_user(args) -> None:
    import psycopg2

    from app import passwords
    from app.manage.users import create_user

    password = _password(args)
    if not 8 <= len(password) <= 128:
        _fail("the password must be 8 to 128 characters")
    try:
        user_id = create_user(_database_url(), args.email, password, args.name,
                              args.role, passwords.hash_now)
    except ValueError as ex:
        _fail(str(ex))
    except psycopg2.Error as ex:
        _fail(f"could not create the user: {str(ex).strip()}")
    print(f"created {args.role} {args.email} with id {user_id}")


def _password(args) -> str:
    """--password, else --password-stdin, else $PEREGRINE_USER_PASSWORD, else a prompt."""
    if args.password is not None:
        return args.password
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if os.environ.get(PASSWORD_ENV):
        return os.environ[PASSWORD_ENV]
    if not sys.stdin.isatty():
        _fail(f"no password: give --password-stdin (and pipe it), set {PASSWORD_ENV}, "
              "or run in a terminal to be prompted")
    import getpass

    try:
        first = getpass.getpass("Password: ")
        if getpass.getpass("Repeat it: ") != first:
            _fail("the two passwords differ")
    except (EOFError, KeyboardInterrupt):
        print(file=sys.stderr)
        _fail("no password given")
    return first


def cmd_prune(args) -> None:
    from datetime import timedelta

    import psycopg2

    from app.queries import email_tokens, mails, maintenance, mfa_challenges
    from app.queries import events as outbox

    if args.idempotency_hours < 1 or args.refresh_days < 0:
        _fail("--idempotency-hours must be >= 1 and --refresh-days >= 0")
    try:
        conn = psycopg2.connect(_database_url(), application_name="peregrine-prune",
                                connect_timeout=10)
        with conn, conn.cursor() as cur:
            keys = maintenance.prune_idempotency_keys(cur, timedelta(hours=args.idempotency_hours))
            tokens = maintenance.prune_refresh_tokens(cur, timedelta(days=args.refresh_days))
            deliveries, events = outbox.prune(cur, timedelta(days=outbox.KEEP_DAYS))
            sent_mails = mails.prune(cur, timedelta(days=outbox.KEEP_DAYS))
            links = email_tokens.prune(cur)
            challenges = mfa_challenges.prune(cur)
        conn.close()
    except psycopg2.Error as ex:
        _fail(f"pruning failed: {str(ex).strip()}")
    print(f"pruned {keys} idempotency key(s) older than {args.idempotency_hours} h and "
          f"{tokens} refresh token(s) expired over {args.refresh_days} day(s) ago")
    print(f"pruned {deliveries} finished webhook delivery(ies) and {events} event(s) "
          f"older than {outbox.KEEP_DAYS} days")
    print(f"pruned {sent_mails} sent or dead mail(s) older than {outbox.KEEP_DAYS} days, "
          f"{links} email link token(s) and {challenges} MFA challenge(s) expired over a day ago")


def cmd_serve(args) -> None:
    from app.manage.reachability import unreachable

    config = _config()  # fail here, with a clear message, rather than in every worker
    for problem in unreachable(config):
        # Serving anyway: /healthz answers, /readyz reports the outage and the
        # app recovers by itself when the dependency comes back.
        print(f"peregrine: warning: {problem}; serving anyway", file=sys.stderr)
    argv = [sys.executable, "-m", "gunicorn", "--config", GUNICORN_CONF]
    if not _installed():
        # Run from a checkout: the workers must import this ``app``, whatever
        # the current directory is.
        argv += ["--pythonpath", str(PACKAGE_PARENT)]
    argv += [*args.gunicorn_args, "app.wsgi:application"]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, argv)


def cmd_deliver(args) -> None:
    config = _config()
    # Before anything imports sockets or ssl: every attempt is a greenlet.
    from gevent import monkey

    monkey.patch_all()
    from app.webhooks.worker import serve

    serve(config)


def _installed() -> bool:
    import sysconfig

    return str(PACKAGE_PARENT) in {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}


def _command(sub, name: str, summary: str, description: str, func) -> argparse.ArgumentParser:
    command = sub.add_parser(name, help=summary, description=description,
                             formatter_class=argparse.RawDescriptionHelpFormatter)
    command.set_defaults(func=func)
    return command


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="peregrine",
        description="Run, migrate, seed and manage Peregrine (also: python -m app).")
    p.add_argument("--version", action="version", version=f"peregrine {version()}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = _command(sub, "services", "start/stop a private Postgres and memcached for development",
                 "Private Postgres and memcached servers on loopback, with their data under\n"
                 "$PEREGRINE_RUN_DIR (default ./.run). `up` is idempotent and prints export\n"
                 "lines:  eval \"$(peregrine services up)\"", cmd_services)
    s.add_argument("action", choices=("up", "down", "status", "env"),
                   help="up: start (prints exports); down: stop; status; env: print exports")
    s.add_argument("--pg-port", default=os.environ.get("PEREGRINE_DEV_PG_PORT"),
                   help="Postgres port for `up` (default $PEREGRINE_DEV_PG_PORT, else a free one)")
    s.add_argument("--memcached-port", default=os.environ.get("PEREGRINE_DEV_MEMCACHED_PORT"),
                   help="memcached port for `up` "
                        "(default $PEREGRINE_DEV_MEMCACHED_PORT, else a free one)")
    s.add_argument("--replicas", type=_replica_count, default=None, metavar="N",
                   help="streaming read replicas of Postgres for `up` to keep "
                        "(default: as many as last time, none at first)")

    _command(sub, "migrate", "apply pending database migrations (idempotent)",
             "Apply the SQL files of app/migrations/ that $PEREGRINE_DATABASE_URL has not\n"
             "seen yet, each in its own transaction; safe to run twice or on two hosts.",
             cmd_migrate)

    s = _command(sub, "seed", "load deterministic demo/benchmark data",
                 "Add categories, products and users; the same --seed gives the same rows.\n"
                 "Rows that exist are kept, and the summary counts only what was added.",
                 cmd_seed)
    s.add_argument("--products", type=int, default=1000, help="products to create (default 1000)")
    s.add_argument("--users", type=int, default=10, help="users to create (default 10)")
    s.add_argument("--seed", type=int, default=1, help="random seed (same seed, same data)")

    s = _command(sub, "create-user", "create a user (e.g. the first admin)",
                 "Create a user. The password comes from --password-stdin, else\n"
                 f"${PASSWORD_ENV}, else a prompt when run in a terminal (--password\n"
                 "also works but leaves it in the shell history and `ps`).", cmd_create_user)
    s.add_argument("--email", required=True, help="the login; must not be taken")
    source = s.add_mutually_exclusive_group()
    source.add_argument("--password-stdin", action="store_true",
                        help="read the password from the first line of stdin")
    source.add_argument("--password", default=None,
                        help="the password itself (visible in `ps`; prefer --password-stdin)")
    s.add_argument("--name", default=None, help="display name (default: the email's local part)")
    s.add_argument("--role", choices=("user", "admin"), default="user")

    s = _command(sub, "prune", "delete expired idempotency keys and refresh tokens "
                               "(run daily, e.g. from cron)",
                 "Delete Idempotency-Key records and expired refresh tokens past their\n"
                 "retention, and webhook deliveries (with their events) finished over 7 days\n"
                 "ago; run it daily (cron or a systemd timer).", cmd_prune)
    s.add_argument("--idempotency-hours", type=int, default=24,
                   help="keep Idempotency-Key records this long (default 24)")
    s.add_argument("--refresh-days", type=int, default=1,
                   help="keep refresh tokens this long after they expire (default 1)")

    s = _command(sub, "serve", "run the API under gunicorn with the shipped settings",
                 "Serve on $PEREGRINE_BIND with gunicorn and app/gunicorn_conf.py. Warns\n"
                 "(and serves anyway) when Postgres or memcached does not answer.\n"
                 "Extra gunicorn options go after --, e.g.  peregrine serve -- --log-level debug",
                 cmd_serve)
    s.add_argument("gunicorn_args", nargs=argparse.REMAINDER,
                   help="extra gunicorn options, e.g. -- --log-level debug")

    _command(sub, "deliver", "send webhook deliveries (run as its own service)",
             "Claim due webhook deliveries and send them, signed, until SIGTERM. Run as\n"
             "many as you like on any hosts; settings: PEREGRINE_WEBHOOK_* (README).",
             cmd_deliver)
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if getattr(args, "gunicorn_args", None) and args.gunicorn_args[0] == "--":
        args.gunicorn_args = args.gunicorn_args[1:]
    if getattr(args, "products", 0) < 0 or getattr(args, "users", 0) < 0:
        _fail("--products and --users must be >= 0")
    try:
        args.func(args)
    except KeyboardInterrupt:
        # Ctrl-C is an answer, not a crash: one line, the shell's 130.
        print("\nperegrine: interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    except BrokenPipeError:
        # `peregrine services env | head -1`: the reader left; not an error of ours.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(141) from None
