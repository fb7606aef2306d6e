"""``make faults``: Peregrine under load while its dependencies fail.

Starts a private Postgres and memcached, seeds a small catalog and users,
serves with gunicorn (the shipped gunicorn.conf.py, 2 workers), and keeps a
mixed load running (product reads, list pages, orders, refresh rotation)
through every scenario. Each scenario breaks something, repairs it, and
checks what the README promises for it. One row per scenario:

    scenario | load held | errors seen | data check

and after all of them the data checks: every order answered 201 exists,
stock plus ordered quantities balance, no refresh family is half-rotated,
no revoked family can refresh. Exits 1 if any check fails.

Bounded: about two minutes in all; every wait has a deadline.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import http.client  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent  # noqa: E402
import psycopg2  # noqa: E402

from app.manage.migrate import migrate  # noqa: E402
from app.manage.services import MemcachedServer, PostgresServer, free_port, wait_for_port  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "faults-password-1"
ADDRESS = {"line1": "1 Main St", "city": "Springfield", "postal_code": "12345", "country": "US"}
INITIAL_STOCK = 1_000_000


# -- HTTP --------------------------------------------------------------------


class Client:
    """One keep-alive connection; reconnects after any failure."""

    def __init__(self, port: int, timeout: float = 10.0):
        self.port, self.timeout, self._conn = port, timeout, None

    def call(self, method: str, path: str, body=None, headers=None):
        """``(status, headers, body)``; a connection error raises OSError.

        A GET (or a request with an Idempotency-Key) on a reused keep-alive
        connection that the server closed before answering is sent once more
        on a new connection, as HTTP clients do (RFC 9112 §9.3.1); anything
        else is a failure, since the server may have acted on it.
        """
        retryable = method == "GET" or "Idempotency-Key" in (headers or {})
        payload = json.dumps(body).encode() if body is not None else None
        hdrs = {"Content-Type": "application/json", **(headers or {})}
        for attempt in (1, 2):
            reused = self._conn is not None
            if self._conn is None:
                self._conn = http.client.HTTPConnection("127.0.0.1", self.port,
                                                        timeout=self.timeout)
            try:
                self._conn.request(method, path, body=payload, headers=hdrs)
                resp = self._conn.getresponse()
                data = resp.read()
                if resp.getheader("Connection", "").lower() == "close":
                    self.close()
                return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.close()
                if not (retryable and reused and attempt == 1):
                    raise
            except (OSError, http.client.HTTPException):
                self.close()
                raise
        raise AssertionError("unreachable")

    def close(self):
        if self._conn is not None:
            self._conn.close()
            self._conn = None


# -- the stack -----------------------------------------------------------------


TCP_CLOSE_WAIT = "08"  # include/net/tcp_states.h


def _tcp_sockets() -> dict[str, tuple[int, str]]:
    """Socket inode -> (remote port, TCP state) for every IPv4/IPv6 TCP socket."""
    sockets: dict[str, tuple[int, str]] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            remote_port = int(fields[2].rsplit(":", 1)[1], 16)
            sockets[fields[9]] = (remote_port, fields[3])
    return sockets


@dataclass
class FdCensus:
    other: int = 0
    memcached: dict[int, list[str]] = field(default_factory=dict)  # port -> TCP states

    def to(self, port: int) -> list[str]:
        return self.memcached.get(port, [])


@dataclass
class Stack:
    root: Path
    pg: PostgresServer
    mcs: list[MemcachedServer]
    env: dict
    port: int = 0
    proc: subprocess.Popen | None = None

    @property
    def mc(self) -> MemcachedServer:
        """The node the memcached scenarios break (one of several when there are more)."""
        return self.mcs[0]

    def serve(self, workers: int = 2) -> None:
        self.port = free_port()
        env = {**os.environ, **self.env, "PEREGRINE_BIND": f"127.0.0.1:{self.port}",
               "PEREGRINE_WORKERS": str(workers)}
        log = open(self.root / "gunicorn.log", "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--config", str(REPO / "gunicorn.conf.py"),
             "app.wsgi:application"], cwd=REPO, env=env, stdout=log, stderr=log)
        wait_for_port(self.port, 30, self.proc)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if Client(self.port, 2).call("GET", "/healthz")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("gunicorn did not answer /healthz")

    def workers(self) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True,
                             text=True).stdout
        return [int(pid) for pid in out.split()]

    def fds_by_kind(self) -> FdCensus:
        """The workers' descriptors: TCP sockets to each memcached node, and the rest.

        pymemcache keeps one pool per node that grows with concurrency, so the
        sockets to live nodes vary with the load; a leak is a socket to the killed
        node that is never closed (CLOSE_WAIT) or descriptors that are not
        memcached sockets at all.
        """
        mc_ports = {mc.port for mc in self.mcs}
        tcp = _tcp_sockets()  # inode -> (remote port, state)
        census = FdCensus()
        for pid in self.workers():
            fd_dir = f"/proc/{pid}/fd"
            try:
                fds = os.listdir(fd_dir)
            except FileNotFoundError:
                continue
            for fd in fds:
                try:
                    link = os.readlink(f"{fd_dir}/{fd}")
                except FileNotFoundError:  # closed since the listing
                    continue
                inode = link[8:-1] if link.startswith("socket:[") else None
                remote = tcp.get(inode) if inode else None
                if remote and remote[0] in mc_ports:
                    census.memcached.setdefault(remote[0], []).append(remote[1])
                else:
                    census.other += 1
        return census

    def sql(self, query: str, args=()):
        conn = psycopg2.connect(self.pg.dsn(), connect_timeout=5)
        try:
            with conn, conn.cursor() as cur:
                cur.execute(query, args or None)
                return cur.fetchall() if cur.description else None
        finally:
            conn.close()


# -- load ----------------------------------------------------------------------


@dataclass
class Sample:
    at: float
    kind: str
    status: int  # 0: the connection failed
    seconds: float
    retry_after: bool = True
    # For a failed connection: "refused" (nothing listens), "closed" (the
    # server closed the connection before answering, e.g. an idle keep-alive
    # one on shutdown), or "broken" (anything else: a request cut short).
    error: str = ""


@dataclass
class Load:
    """Greenlets running the mixed workload until stopped; every answer recorded."""

    stack: Stack
    products: list[str]
    users: list[dict]
    concurrency: int = 16
    samples: list[Sample] = field(default_factory=list)
    orders: dict[str, tuple[str, int]] = field(default_factory=dict)  # id -> (product, qty)
    _running: bool = False
    _port: int = 0
    _greenlets: list = field(default_factory=list)

    def start(self) -> None:
        self._running = True
        self._greenlets = [gevent.spawn(self._user, n) for n in range(self.concurrency)]

    def stop(self) -> None:
        self._running = False
        gevent.joinall(self._greenlets, timeout=30)

    def retarget(self) -> None:
        """The server came back on another port: new connections go there."""
        self._port = self.stack.port

    def _user(self, n: int) -> None:
        rng = random.Random(n)
        self._port = self.stack.port
        client = Client(self.stack.port)
        user = self.users[n % len(self.users)]
        while self._running:
            if client.port != self._port:
                client.close()
                client = Client(self._port)
            roll = rng.random()
            try:
                if roll < 0.70:
                    self._do(client, "read", "GET", f"/v1/products/{rng.choice(self.products)}")
                elif roll < 0.82:
                    self._do(client, "list", "GET", "/v1/products?limit=20&sort=price")
                elif roll < 0.95:
                    product = rng.choice(self.products)
                    status, body = self._do(client, "order", "POST", "/v1/orders", {
                        "items": [{"product_id": product, "quantity": 1}],
                        "shipping_address": ADDRESS},
                        headers={**user["headers"], "Idempotency-Key": os.urandom(8).hex()})
                    if status == 201:
                        self.orders[json.loads(body)["id"]] = (product, 1)
                else:
                    status, body = self._do(client, "refresh", "POST", "/v1/auth/refresh",
                                            {"refresh_token": user["refresh"]})
                    if status == 200:
                        pair = json.loads(body)
                        user["refresh"] = pair["refresh_token"]
                        user["headers"] = {"Authorization": "Bearer " + pair["access_token"]}
            except Exception:  # noqa: BLE001 - recorded in _do; keep the load going
                gevent.sleep(0.01)
        client.close()

    def _do(self, client, kind, method, path, body=None, headers=None):
        started = time.monotonic()
        try:
            status, hdrs, data = client.call(method, path, body, headers)
        except (OSError, http.client.HTTPException) as ex:
            error = ("refused" if isinstance(ex, ConnectionRefusedError)
                     else "closed" if isinstance(ex, http.client.RemoteDisconnected)
                     else "broken")
            self.samples.append(Sample(started, kind, 0, time.monotonic() - started,
                                       error=error))
            raise
        self.samples.append(Sample(started, kind, status, time.monotonic() - started,
                                   "retry-after" in hdrs))
        return status, data

    def window(self, start: float, end: float | None = None) -> list[Sample]:
        end = end or time.monotonic()
        return [s for s in self.samples if start <= s.at < end]


def p99(samples: list[Sample]) -> float:
    times = sorted(s.seconds for s in samples)
    return times[int(len(times) * 0.99)] if times else 0.0


# -- scenarios -----------------------------------------------------------------


class Failed(Exception):
    pass


def check(condition: bool, message: str) -> None:
    if not condition:
        raise Failed(message)


def admin_patch_price(stack: Stack, admin: dict, product: str, price: str):
    return Client(stack.port).call("PATCH", f"/v1/products/{product}", {"price": price},
                                   admin["headers"])


def read_price(stack: Stack, product: str) -> str | None:
    status, _, body = Client(stack.port).call("GET", f"/v1/products/{product}")
    return json.loads(body)["price"] if status == 200 else None


def sees_everywhere(stack: Stack, product: str, price: str, reads: int = 20) -> bool:
    return all(read_price(stack, product) == price for _ in range(reads))


def wait_until(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        gevent.sleep(0.05)
    return False


def scenario_memcached_killed(stack, load, admin, products):
    watched = products[:12]
    before = stack.fds_by_kind()
    os.kill(stack.mc._pid(), signal.SIGKILL)
    gevent.sleep(3)
    for n, product in enumerate(watched):
        check(admin_patch_price(stack, admin, product, f"11.{n:02d}")[0] == 200,
              "a write while memcached is down failed")
        check(sees_everywhere(stack, product, f"11.{n:02d}"), "the write is not visible")
    stack.mc.start()
    gevent.sleep(3)
    for n, product in enumerate(watched):
        check(sees_everywhere(stack, product, f"11.{n:02d}"), "a stale value came back")
    after = stack.fds_by_kind()
    killed = after.to(stack.mc.port)
    # A pooled socket from before the kill that no request has taken since stays
    # in CLOSE_WAIT until one does (pymemcache closes a socket when a call on it
    # fails): bounded by the pool as it was. More than that would be a leak.
    dead = killed.count(TCP_CLOSE_WAIT)
    check(dead <= len(before.to(stack.mc.port)),
          f"{dead} sockets to the killed memcached never closed, more than the "
          f"{len(before.to(stack.mc.port))} pooled before the kill")
    check(len(killed) <= len(before.to(stack.mc.port)) + load.concurrency,
          f"sockets to the restarted memcached grew from {len(before.to(stack.mc.port))} "
          f"to {len(killed)}, more than the {load.concurrency} requests in flight")
    check(after.other <= before.other + 8,
          f"descriptors other than memcached sockets grew from {before.other} to {after.other}")
    return (f"no leaked socket ({len(killed)} to the restarted node, {dead} idle from before), "
            "other fds flat, no stale read")


def scenario_memcached_paused(stack, load, admin, products):
    # Several products, so that with several nodes some live on the paused one.
    watched = products[10:22]
    for product in watched:
        read_price(stack, product)  # cached before the pause
    pid = stack.mc._pid()
    os.kill(pid, signal.SIGSTOP)
    try:
        gevent.sleep(2)
        for n, product in enumerate(watched):
            check(admin_patch_price(stack, admin, product, f"22.{n:02d}")[0] == 200,
                  "a write while memcached is paused failed")
        gevent.sleep(2)
    finally:
        os.kill(pid, signal.SIGCONT)
    resumed = time.monotonic()
    gevent.sleep(1.0)  # the contract's bound for other nodes
    for n, product in enumerate(watched):
        check(sees_everywhere(stack, product, f"22.{n:02d}"),
              "an older value is served after memcached resumed")
    gevent.sleep(2)
    after = load.window(resumed + 1.0)
    check(p99(after) < 0.5, f"latency did not recover: p99 {p99(after) * 1000:.0f} ms")
    return "no stale read after resume"


def scenario_postgres_stopped(stack, load, admin, products):
    stack.pg.stop("fast")
    stopped = time.monotonic()
    gevent.sleep(4)
    down = load.window(stopped + 0.5)
    bad = [s for s in down if s.status >= 500 and s.status != 503]
    check(not bad, f"{len(bad)} non-503 server errors while Postgres was down")
    check(all(s.retry_after for s in down if s.status == 503), "a 503 without Retry-After")
    slowest = max((s.seconds for s in down), default=0)
    bound = float(stack.env["PEREGRINE_DB_POOL_TIMEOUT"]) + 1.0  # + scheduling slack
    check(slowest < bound, f"a request took {slowest:.1f}s while Postgres was down"
          f" (pool timeout {stack.env['PEREGRINE_DB_POOL_TIMEOUT']}s)")
    stack.pg.start()
    started = time.monotonic()

    def healthy():
        recent = load.window(time.monotonic() - 1.0)
        errors = sum(1 for s in recent if s.status >= 500 or s.status == 0)
        return len(recent) > 20 and errors / len(recent) < 0.01

    gevent.sleep(1.0)
    check(wait_until(healthy, 10.0), "error rate still above 1% 10 s after Postgres restarted")
    return (f"slowest answer {slowest:.2f}s while down;"
            f" recovered {time.monotonic() - started:.1f}s after restart")


def scenario_slow_query(stack, load, admin, products):
    holder = psycopg2.connect(stack.pg.dsn())
    try:
        with holder.cursor() as cur:
            cur.execute("SELECT 1 FROM products WHERE id = %s FOR UPDATE", (products[2],))
        started = time.monotonic()
        status, headers, _ = admin_patch_price(stack, admin, products[2], "33.33")
        took = time.monotonic() - started
        check(status == 503 and "retry-after" in headers,
              f"a write blocked by a held lock answered {status}")
        check(took < 5.0, f"the blocked write took {took:.1f}s")
        during = load.window(started, started + took)
        check(not [s for s in during if s.status >= 500], "other requests failed meanwhile")
    finally:
        holder.rollback()
        holder.close()
    # A busy order is "idle in transaction" for a moment between its
    # statements; one left behind by the failed write would stay that way.
    gevent.sleep(1.0)
    idle = stack.sql("SELECT count(*) FROM pg_stat_activity WHERE state LIKE 'idle in%'"
                     " AND datname = current_database()"
                     " AND now() - state_change > interval '1 second'")[0][0]
    check(idle == 0, f"{idle} connection(s) left idle in transaction")
    return f"503 after {took:.1f}s; none idle in transaction"


def scenario_worker_killed(stack, load, admin, products):
    workers = stack.workers()
    os.kill(workers[0], signal.SIGKILL)
    killed = time.monotonic()
    check(wait_until(lambda: len(stack.workers()) == len(workers)
                     and workers[0] not in stack.workers(), 20.0), "no replacement worker")
    gevent.sleep(1)
    failed = [s for s in load.window(killed - 0.1) if s.status == 0 or s.status >= 500]
    check(len(failed) <= load.concurrency,
          f"{len(failed)} failures, more than the {load.concurrency} requests in flight")
    return f"{len(failed)} in-flight request(s) lost"


def scenario_reload(stack, load, admin, products):
    before = set(stack.workers())
    os.kill(stack.proc.pid, signal.SIGHUP)
    hup = time.monotonic()
    check(wait_until(lambda: not before & set(stack.workers())
                     and len(stack.workers()) == len(before), 30.0), "workers not replaced")
    gevent.sleep(1)
    failed = [s for s in load.window(hup) if s.status == 0 or s.status >= 500]
    check(not failed, f"{len(failed)} failed request(s) during SIGHUP reload")
    return "workers replaced"


def scenario_shutdown(stack, load, admin, products):
    """SIGTERM under load: every request the server took is answered; then a restart."""
    calm = time.monotonic()
    gevent.sleep(2)  # load on a healthy server first: earlier faults' answers stay out
    os.kill(stack.proc.pid, signal.SIGTERM)
    term = time.monotonic()
    try:
        try:
            stack.proc.wait(40)
        except subprocess.TimeoutExpired:
            stack.proc.kill()
            raise Failed("gunicorn did not exit within graceful_timeout") from None
        took = time.monotonic() - term
        gevent.sleep(0.5)
        # Requests in flight at SIGTERM (started before it) must all be
        # answered; later ones find the listener closed ("refused") or an idle
        # keep-alive connection closed unanswered ("closed"): a load balancer
        # retries those.
        cut = [s for s in load.window(calm, term)
               if s.status >= 500 or s.error == "broken"]
        check(not cut, f"{len(cut)} request(s) in flight at SIGTERM failed: "
              + ", ".join(sorted({f"{s.kind} {s.status or s.error}" for s in cut})))
    finally:
        stack.serve()
        load.retarget()
    return f"exited in {took:.1f}s; restarted"


SCENARIOS = (
    ("memcached killed", scenario_memcached_killed),
    ("memcached paused", scenario_memcached_paused),
    ("postgres stopped", scenario_postgres_stopped),
    ("slow query (lock held)", scenario_slow_query),
    ("worker SIGKILL", scenario_worker_killed),
    ("SIGHUP reload", scenario_reload),
    ("SIGTERM shutdown", scenario_shutdown),
)


# -- data checks -----------------------------------------------------------------


def data_checks(stack: Stack, load: Load) -> list[str]:
    problems = []
    ids = list(load.orders)
    if ids:
        found = stack.sql("SELECT count(*) FROM orders WHERE id = ANY(%s::uuid[])", (ids,))[0][0]
        if found != len(ids):
            problems.append(f"{len(ids) - found} order(s) answered 201 are missing")
    rows = stack.sql("SELECT p.id::text, p.stock,"
                     " coalesce(sum(i.quantity) FILTER (WHERE o.id IS NOT NULL), 0) FROM products p"
                     " LEFT JOIN order_items i ON i.product_id = p.id"
                     " LEFT JOIN orders o ON o.id = i.order_id AND o.status = 'placed'"
                     " GROUP BY p.id, p.stock")
    unbalanced = [r for r in rows if r[1] + r[2] != INITIAL_STOCK]
    if unbalanced:
        problems.append(f"{len(unbalanced)} product(s) where stock + ordered != initial")
    half = stack.sql(
        "SELECT count(*) FROM refresh_tokens p WHERE p.used_at IS NOT NULL"
        " AND NOT EXISTS (SELECT 1 FROM refresh_tokens c WHERE c.parent_id = p.id)")[0][0]
    orphan = stack.sql("SELECT count(*) FROM refresh_tokens c JOIN refresh_tokens p"
                       " ON p.id = c.parent_id WHERE p.used_at IS NULL")[0][0]
    if half or orphan:
        problems.append(f"{half} spent token(s) without a child, {orphan} child(ren) of"
                        " unspent tokens")
    client = Client(stack.port)
    for user in load.users:
        # Log out each user's live chain, then it must not refresh any more.
        client.call("POST", "/v1/auth/logout", {"refresh_token": user["refresh"]})
        if client.call("POST", "/v1/auth/refresh",
                       {"refresh_token": user["refresh"]})[0] != 401:
            problems.append("a revoked family could still refresh")
    return problems


# -- setup and main --------------------------------------------------------------------


def seed(stack: Stack, products: int, users: int) -> tuple[list[str], list[dict], dict]:
    product_ids = [row[0] for row in stack.sql(
        "INSERT INTO products (sku, name, price, stock)"
        " SELECT 'FAULT-' || n, 'Fault product ' || n, 10, %s FROM generate_series(1, %s) n"
        " RETURNING id::text", (INITIAL_STOCK, products))]
    client = Client(stack.port)
    accounts = []
    for n in range(users + 1):
        email = f"fault{n}@example.test"
        status, _, body = client.call("POST", "/v1/auth/register",
                                      {"email": email, "password": PASSWORD, "name": "F"})
        assert status == 201, body
        if n == users:
            stack.sql("UPDATE users SET role = 'admin' WHERE email = %s", (email,))
        status, _, body = client.call("POST", "/v1/auth/login",
                                      {"email": email, "password": PASSWORD},
                                      {"X-Real-IP": f"10.9.{n // 200}.{n % 200 + 1}"})
        assert status == 200, body
        pair = json.loads(body)
        accounts.append({"refresh": pair["refresh_token"],
                         "headers": {"Authorization": "Bearer " + pair["access_token"]}})
    return product_ids, accounts[:-1], accounts[-1]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.faults", description=__doc__.split(
        "\n\n")[0])
    parser.add_argument("--only", action="append", help="run only scenarios whose name has this")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--memcached-nodes", type=int, default=1,
                        help="memcached servers; the scenarios break the first")
    args = parser.parse_args(argv)

    root = Path(tempfile.mkdtemp(prefix="peregrine-faults-"))
    root.chmod(0o755)
    pg = PostgresServer(root / "postgres", durable=False)
    mcs = [MemcachedServer(root / f"memcached-{n}") for n in range(args.memcached_nodes)]
    print(f"==> private Postgres and {len(mcs)} memcached node(s) in {root}", flush=True)
    pg.start()
    pg.ensure_database()
    migrate(pg.dsn(), log=lambda message: None)
    for mc in mcs:
        mc.start()
    stack = Stack(root, pg, mcs, {
        "PEREGRINE_DATABASE_URL": pg.dsn(),
        "PEREGRINE_MEMCACHED_SERVERS": ",".join(f"127.0.0.1:{mc.port}" for mc in mcs),
        "PEREGRINE_JWT_SECRET": "faults-secret-" + "y" * 40,
        "PEREGRINE_RATE_LIMIT_PER_MINUTE": "0",  # as behind a load balancer that limits
        "PEREGRINE_LOG_LEVEL": "warning",
        "PEREGRINE_DB_POOL_TIMEOUT": "1.0",
    })
    rows, failed = [], False
    try:
        stack.serve()
        products, users, admin = seed(stack, 200, args.concurrency)
        load = Load(stack, products, users, args.concurrency)
        load.start()
        gevent.sleep(2)
        for name, run in SCENARIOS:
            if args.only and not any(part in name for part in args.only):
                continue
            print(f"==> {name}", flush=True)
            started = time.monotonic()
            try:
                outcome, ok = run(stack, load, admin, products), True
            except Failed as ex:
                outcome, ok = f"FAILED: {ex}", False
            except Exception as ex:  # noqa: BLE001 - a broken scenario is a failed one
                outcome, ok = f"FAILED: {type(ex).__name__}: {ex}", False
            gevent.sleep(1)
            window = load.window(started)
            errors = Counter(str(s.status) if s.status else s.error for s in window
                             if s.status == 0 or s.status >= 500)
            rate = len(window) / max(time.monotonic() - started, 0.001)
            rows.append((name, f"{len(window)} req ({rate:.0f}/s)",
                         ", ".join(f"{k}: {v}" for k, v in sorted(errors.items())) or "none",
                         outcome))
            failed |= not ok
        load.stop()
        try:
            problems = data_checks(stack, load)
        except Exception as ex:  # noqa: BLE001 - a check that cannot run has failed
            problems = [f"the data checks could not run: {type(ex).__name__}: {ex}"]
        rows.append(("data after all faults", f"{len(load.orders)} orders", "-",
                     "; ".join(problems) or "ok: orders, stock, refresh families"))
        failed |= bool(problems)
    finally:
        if stack.proc is not None:
            stack.proc.terminate()
            try:
                stack.proc.wait(30)
            except subprocess.TimeoutExpired:
                stack.proc.kill()
        for mc in mcs:
            mc.stop()
        pg.stop("immediate")
    widths = [max(len(str(r[i])) for r in rows + [("scenario", "load held", "errors seen",
                                                   "data check")]) for i in range(4)]
    header = ("scenario", "load held", "errors seen", "data check")
    print(f"\n{len(mcs)} memcached node(s), {args.concurrency} concurrent clients")
    for row in (header, tuple("-" * w for w in widths), *rows):
        print(" | ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)))
    if failed:
        print(f"\nfaults: some checks FAILED (logs in {root})")
        return 1
    import shutil

    shutil.rmtree(root, ignore_errors=True)
    print("\nfaults: every scenario held")
    return 0


if __name__ == "__main__":
    sys.exit(main())
