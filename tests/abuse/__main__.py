"""``make abuse``: Peregrine under abuse, on a private stack, in under 5 minutes.

Starts the same stack as ``make faults`` (private Postgres and memcached,
gunicorn with the shipped gunicorn.conf.py, 2 workers; the general rate
limit off), seeds it, and runs, in this order:

1. a JWT attack corpus against GET /v1/users/me (tests/abuse/jwt_corpus.py);
2. raw-socket HTTP probes: smuggling, limits, slow clients, hostile JSON
   (tests/abuse/http_probes.py);
3. business abuse: order bodies, other users' ids, a refresh/logout/password
   storm, then the ``make faults`` data checks (tests/abuse/business.py);
4. schemathesis on /openapi.json with an admin and then a user bearer token
   (tests/abuse/fuzz.py; schemathesis comes from tests/abuse/.venv).

The fuzzer goes last: it creates, changes and deletes what an admin may,
which the data checks must not see. Then the server log is read for
tracebacks and the workers are counted. One table (check | cases | result),
each failure listed below it with its reproduction; exit 1 on any failure.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from types import SimpleNamespace  # noqa: E402

from tests.abuse import business, fuzz, http_probes, jwt_corpus  # noqa: E402
from tests.abuse.common import Row, new_account  # noqa: E402
from tests.abuse.stack import JWT_SECRET, seed_accounts, start, stop  # noqa: E402
from tests.faults.__main__ import Client, data_checks  # noqa: E402

LOG_PROBLEMS = re.compile(r"Traceback|Error handling request|WORKER TIMEOUT|Worker exiting|"
                          r'"level": ?"(error|critical)"|\bERROR\b|\bCRITICAL\b')


def deleted_tokens(stack) -> dict:
    """Access tokens, still unexpired, of a user and an admin whose rows are gone."""
    user = new_account(stack.port, "gone-user@example.test", business.PASSWORD, "10.80.0.1")
    admin = new_account(stack.port, "gone-admin@example.test", business.PASSWORD, "10.80.0.2")
    stack.sql("UPDATE users SET role = 'admin' WHERE id = %s", (admin["id"],))
    status, _, body = Client(stack.port).call(
        "POST", "/v1/auth/login", {"email": admin["email"], "password": business.PASSWORD},
        {"X-Real-IP": "10.80.0.3"})
    assert status == 200, body
    import json

    admin_token = json.loads(body)["access_token"]
    stack.sql("DELETE FROM users WHERE id IN (%s, %s)", (user["id"], admin["id"]))
    return {"user": user["access"], "admin": admin_token}


def fresh_token(port: int, account: dict) -> str:
    import json

    status, _, body = Client(port).call("POST", "/v1/auth/refresh",
                                        {"refresh_token": account["refresh"]})
    assert status == 200, body
    pair = json.loads(body)
    account["refresh"] = pair["refresh_token"]
    return pair["access_token"]


def server_log(stack, workers_at_start: set[int]) -> Row:
    row = Row("server: log clean, workers kept")
    text = (stack.root / "gunicorn.log").read_text("utf-8", "replace")
    lines = text.splitlines()
    for n, line in enumerate(lines):
        if LOG_PROBLEMS.search(line):
            row.failures.append(f"gunicorn.log:{n + 1}: {line[:300]}")
    row.failures[:] = row.failures[:15] + ([f"... {len(row.failures) - 15} more"]
                                           if len(row.failures) > 15 else [])
    row.cases = max(len(lines), 1)
    now = set(stack.workers())
    row.case(now == workers_at_start, f"workers replaced: {sorted(workers_at_start)} -> "
                                      f"{sorted(now)}")
    row.note = f"{len(lines)} log lines, {len(now)} workers"
    return row


def print_table(rows: list[Row]) -> None:
    header = ("check", "cases", "result")
    cells = [header] + [(r.check, str(r.cases), r.result) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(3)]
    print()
    for n, row in enumerate(cells):
        line = " | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        print(line.rstrip())
        if n == 0:
            print("-|-".join("-" * w for w in widths))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.abuse",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-examples", type=int, default=100,
                        help="schemathesis examples per operation (admin run; user: half)")
    parser.add_argument("--fuzz-seconds", type=int, default=75,
                        help="schemathesis time budget for the admin run (user: 2/3 of it)")
    parser.add_argument("--seed", type=int, default=None, help="schemathesis seed")
    parser.add_argument("--skip", action="append", default=[],
                        choices=("jwt", "http", "business", "fuzz"))
    args = parser.parse_args(argv)
    # A TERM (timeout, CI) must still stop the servers.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    started = time.monotonic()
    rows: list[Row] = []
    stack, root = start()
    print(f"==> private Postgres, memcached and gunicorn (:{stack.port}) in {root}", flush=True)
    try:
        seeded = seed_accounts(stack, products=60, users=4)
        workers = set(stack.workers())
        if "jwt" not in args.skip:
            print("==> JWT attack corpus", flush=True)
            victim = new_account(stack.port, "jwt-victim@example.test", business.PASSWORD,
                                 "10.81.0.1")
            rows += jwt_corpus.run(stack.port, JWT_SECRET, victim, seeded.admin,
                                   deleted_tokens(stack))
        if "http" not in args.skip:
            print("==> raw HTTP probes (slow clients for ~40 s meanwhile)", flush=True)
            rows += http_probes.run(stack, seeded.users[0], stack.root / "gunicorn.log")
        if "business" not in args.skip:
            print("==> business abuse and the refresh storm", flush=True)
            for account in [*seeded.users[:2], seeded.admin]:
                token = fresh_token(stack.port, account)
                account["access"], account["headers"] = token, {"Authorization": f"Bearer {token}"}
            business_rows, created = business.run(stack, seeded)
            rows += business_rows
            # The make-faults data checks: orders answered 201 exist, stock
            # plus placed quantities balance, no half-rotated or live revoked family.
            data = Row("business: data checks (make faults)")
            for problem in data_checks(stack, SimpleNamespace(orders=created, users=[])):
                data.failures.append(problem)
            data.cases = len(created) + 3
            rows.append(data)
        if "fuzz" not in args.skip:
            for label, account, examples, seconds in (
                ("admin", seeded.admin, args.max_examples, args.fuzz_seconds),
                ("user", seeded.users[3], max(args.max_examples // 2, 1),
                 max(args.fuzz_seconds * 2 // 3, 1)),
            ):
                print(f"==> schemathesis as {label} ({examples} examples, {seconds}s)", flush=True)
                rows += fuzz.run(stack.port, label, fresh_token(stack.port, account), root,
                                 examples, seconds, args.seed)
        rows.append(server_log(stack, workers))
    finally:
        stop(stack)
    print_table(rows)
    failed = [r for r in rows if not r.ok]
    for row in failed:
        print(f"\n{row.check}:")
        for failure in row.failures[:40]:
            print(f"  - {failure}")
        if len(row.failures) > 40:
            print(f"  ... {len(row.failures) - 40} more")
    took = time.monotonic() - started
    if failed:
        print(f"\nabuse: {len(failed)} of {len(rows)} checks FAILED in {took:.0f}s "
              f"(server log and schemathesis reports in {root})")
        return 1
    shutil.rmtree(root, ignore_errors=True)
    print(f"\nabuse: every check held ({took:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
