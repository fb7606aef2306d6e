"""Configuration, read only from ``PEREGRINE_*`` environment variables.

Everything is validated once, at start-up, and a bad value stops the process
with a message that names the variable. This module imports nothing heavy so
``gunicorn.conf.py`` (which runs in the master) can use it safely.
"""

from __future__ import annotations

import os
from dataclasses import MISSING, dataclass, field, fields
from urllib.parse import urlsplit

MIN_JWT_SECRET_BYTES = 32
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
WORKER_CLASSES = {
    # Short names an operator may give; anything else is passed to gunicorn as is.
    "gevent": "gevent",
    "gevent_pywsgi": "gevent_pywsgi",
    "peregrine": "hotpath.worker.GeventHTTPWorker",
}
# The C-parsed gevent worker (hotpath.worker); "gevent" selects gunicorn's stock one.
DEFAULT_WORKER_CLASS = "hotpath.worker.GeventHTTPWorker"


class ConfigError(ValueError):
    """A configuration variable is missing or malformed."""

    def __init__(self, name: str, problem: str):
        super().__init__(f"{name}: {problem}")
        self.name = name


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class Config:
    """Validated settings; build with :meth:`from_env`.

    The defaults below are the only ones: :meth:`from_env` reads them from
    these fields, so a variable left unset means exactly this value.
    """

    database_url: str
    memcached_servers: tuple[tuple[str, int], ...]
    jwt_secret: bytes
    bind: str = "127.0.0.1:8000"
    workers: int = field(default_factory=_cpu_count)  # one per core
    worker_connections: int = 400
    worker_class: str = DEFAULT_WORKER_CLASS
    db_pool_size: int = 10
    db_pool_timeout: float = 1.0
    # Streaming standbys that may answer catalog reads (app/replicas.py says
    # when), each with its own, smaller pool; one lagging more than
    # replica_max_lag seconds is out of rotation until it catches up.
    database_replica_urls: tuple[str, ...] = ()
    replica_pool_size: int = 4
    replica_max_lag: float = 5.0
    statsd_addr: tuple[str, int] | None = None
    rate_limit_per_minute: int = 600
    log_level: str = "info"
    # How often each worker re-reads the cache epochs: bounds how long a
    # write whose invalidation missed a memcached node can be read stale on
    # other workers (plus the 100 ms cache timeout); kept well under the
    # contract's 1 s.
    cache_epoch_poll: float = 0.25
    # How long a worker keeps a catalog read in its in-process near cache
    # (app/nearcache.py); 0 turns it off. Writes on this node fail the
    # entries at once; other nodes can serve one this long after the
    # memcached delete, so at most 0.5 s keeps them under the contract's 1 s.
    near_cache_ttl: float = 0.5
    # How long a near entry may live while its node hears every other
    # node's writes (Postgres LISTEN/NOTIFY, app/near_listener.py); it falls
    # back to near_cache_ttl within 0.4 s of not hearing, and a write not
    # announced within 0.2 s retires its memcached node's epoch instead.
    # 0: no listening (writes are announced whatever this says).
    near_cache_listened_ttl: float = 3.0
    # Browser origins allowed to call the API cross-origin (CORS); none by default.
    cors_origins: tuple[str, ...] = ()
    # Webhook targets and the delivery worker (python -m app deliver).
    webhooks: WebhookSettings = field(default_factory=lambda: WebhookSettings())
    # Mail (sent by the delivery worker) and the links it carries.
    mail: MailSettings = field(default_factory=lambda: MailSettings())
    # Encrypts secrets kept at rest (TOTP seeds): a Fernet key, 32 random
    # bytes in URL-safe base64. None: two-factor enrolment is unavailable.
    data_key: bytes | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, env: os._Environ | dict | None = None) -> Config:
        env = os.environ if env is None else env
        default = _defaults()
        return cls(
            database_url=_database_url(env, "PEREGRINE_DATABASE_URL"),
            memcached_servers=_servers(env, "PEREGRINE_MEMCACHED_SERVERS"),
            jwt_secret=_jwt_secret(env, "PEREGRINE_JWT_SECRET"),
            bind=_bind(env, "PEREGRINE_BIND", default["bind"]),
            workers=_int(env, "PEREGRINE_WORKERS", default["workers"], 1, 256),
            worker_connections=_int(env, "PEREGRINE_WORKER_CONNECTIONS",
                                    default["worker_connections"], 1, 100_000),
            worker_class=_worker_class(env, "PEREGRINE_WORKER_CLASS", default["worker_class"]),
            db_pool_size=_int(env, "PEREGRINE_DB_POOL_SIZE", default["db_pool_size"], 1, 1000),
            db_pool_timeout=_float(env, "PEREGRINE_DB_POOL_TIMEOUT", default["db_pool_timeout"],
                                   0.01, 60.0),
            database_replica_urls=_database_urls(env, "PEREGRINE_DATABASE_REPLICA_URLS"),
            replica_pool_size=_int(env, "PEREGRINE_REPLICA_POOL_SIZE",
                                   default["replica_pool_size"], 1, 1000),
            replica_max_lag=_float(env, "PEREGRINE_REPLICA_MAX_LAG", default["replica_max_lag"],
                                   0.1, 3600.0),
            statsd_addr=_optional_addr(env, "PEREGRINE_STATSD_ADDR"),
            rate_limit_per_minute=_int(env, "PEREGRINE_RATE_LIMIT_PER_MINUTE",
                                       default["rate_limit_per_minute"], 0, 10**9),
            log_level=_choice(env, "PEREGRINE_LOG_LEVEL", default["log_level"], LOG_LEVELS),
            cache_epoch_poll=_float(env, "PEREGRINE_CACHE_EPOCH_POLL",
                                    default["cache_epoch_poll"], 0.01, 0.5),
            near_cache_ttl=_float(env, "PEREGRINE_NEAR_CACHE_TTL", default["near_cache_ttl"],
                                  0.0, 0.5),
            near_cache_listened_ttl=_float(env, "PEREGRINE_NEAR_CACHE_LISTENED_TTL",
                                           default["near_cache_listened_ttl"], 0.0, 60.0),
            cors_origins=_origins(env, "PEREGRINE_CORS_ORIGINS"),
            webhooks=_webhook_settings(env),
            mail=_mail_settings(env),
            data_key=_data_key(env, "PEREGRINE_DATA_KEY"),
        )


def _defaults() -> dict:
    """Each optional field's default, as :class:`Config` declares it."""
    found = {}
    for item in fields(Config):
        if item.default is not MISSING:
            found[item.name] = item.default
        elif item.default_factory is not MISSING:
            found[item.name] = item.default_factory()
    return found


def _required(env, name: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise ConfigError(
            name,
            "is not set; for local development run "
            '`eval "$(python -m app services up)"` first',
        )
    return value


def _text(env, name: str, default: str) -> str:
    return env.get(name, "").strip() or default


def _int(env, name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(name, f"must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise ConfigError(name, f"must be between {low} and {high}, got {value}")
    return value


def _float(env, name: str, default: float, low: float, high: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(name, f"must be a number of seconds, got {raw!r}") from None
    if not low <= value <= high:
        raise ConfigError(name, f"must be between {low} and {high}, got {value}")
    return value


def _choice(env, name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env.get(name, "").strip().lower() or default
    if value not in choices:
        raise ConfigError(name, f"must be one of {', '.join(choices)}, got {value!r}")
    return value


def _addr(name: str, raw: str) -> tuple[str, int]:
    host, sep, port = raw.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(name, f"expected host:port, got {raw!r}")
    return host, int(port)


def _servers(env, name: str) -> tuple[tuple[str, int], ...]:
    raw = _required(env, name)
    if "://" in raw:
        # pymemcache takes bare host:port; "memcache://h:p" would otherwise
        # parse as a host named "memcache://h" and never connect.
        raise ConfigError(name, f"expected host:port[,host:port...] without a scheme, got {raw!r}")
    servers = tuple(_addr(name, part) for part in raw.split(",") if part.strip())
    if not servers:
        raise ConfigError(name, "lists no host:port")
    return servers


def _origins(env, name: str) -> tuple[str, ...]:
    """Exact origins (``scheme://host[:port]``, as browsers send them), comma-separated."""
    found = []
    for part in env.get(name, "").split(","):
        origin = part.strip()
        if not origin:
            continue
        parts = urlsplit(origin)
        try:
            port_ok = parts.port is None or parts.port > 0
        except ValueError:
            port_ok = False
        if (parts.scheme not in ("http", "https") or not parts.hostname or not port_ok
                or parts.username is not None or origin != f"{parts.scheme}://{parts.netloc}"
                or origin != origin.lower() or "*" in origin):
            raise ConfigError(name, "expected exact origins such as https://shop.example.com "
                                    "or http://localhost:3000 (lower case, no path, no "
                                    f"trailing slash, no wildcard), got {origin!r}")
        found.append(origin)
    return tuple(dict.fromkeys(found))


def _optional_addr(env, name: str) -> tuple[str, int] | None:
    raw = env.get(name, "").strip()
    return _addr(name, raw) if raw else None


def _database_url(env, name: str) -> str:
    url = _required(env, name)
    if url.startswith(("postgresql://", "postgres://")):
        parts = urlsplit(url)
        if not parts.hostname and "host=" not in (parts.query or ""):
            raise ConfigError(name, "names no host")
        return url
    if "=" in url:  # libpq key=value form
        return url
    raise ConfigError(name, "must be a postgresql:// URL or a libpq key=value string")


def _database_urls(env, name: str) -> tuple[str, ...]:
    """Comma-separated postgresql:// URLs; unset or empty means none."""
    parts = [part.strip() for part in env.get(name, "").split(",")]
    if not any(parts):
        return ()
    if not all(parts):
        raise ConfigError(name, "has an empty entry (a stray comma?)")
    for part in parts:
        if not part.startswith(("postgresql://", "postgres://")):
            raise ConfigError(name, f"each entry must be a postgresql:// URL, got {part!r}")
        if not urlsplit(part).hostname:
            raise ConfigError(name, f"names no host: {part!r}")
    if len(set(parts)) != len(parts):
        raise ConfigError(name, "lists a replica twice")
    return tuple(parts)


def _jwt_secret(env, name: str) -> bytes:
    secret = _required(env, name).encode()
    if len(secret) < MIN_JWT_SECRET_BYTES:
        raise ConfigError(
            name,
            f"must be at least {MIN_JWT_SECRET_BYTES} bytes (got {len(secret)}); "
            "generate one with `python -c 'import secrets; print(secrets.token_urlsafe(48))'`",
        )
    return secret


def _worker_class(env, name: str, default: str) -> str:
    value = env.get(name, "").strip() or default
    value = WORKER_CLASSES.get(value, value)
    problem = _worker_class_problem(value)
    if problem:
        raise ConfigError(name, problem)
    return value


def _worker_class_problem(value: str) -> str | None:
    """Why gunicorn could not load ``value``, found without importing it.

    This runs in the gunicorn master, which must not import gevent (see
    gunicorn_conf.py), so the module is located, not executed, and a class
    name is looked for in its source when there is one.
    """
    import ast
    import importlib.util

    if value.startswith("egg:"):
        return None
    if "." not in value:
        from gunicorn.workers import SUPPORTED_WORKERS

        if value in SUPPORTED_WORKERS:
            return None
        known = ", ".join(sorted({*WORKER_CLASSES, *SUPPORTED_WORKERS}))
        return f"unknown worker class {value!r}; use one of {known} or a module.Class path"
    module, _, cls = value.rpartition(".")
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        return f"cannot import {module!r} (from {value!r})"
    if spec.origin and spec.origin.endswith(".py"):
        with open(spec.origin, encoding="utf-8") as source:
            tree = ast.parse(source.read())
        names = {node.name for node in tree.body if isinstance(node, ast.ClassDef)}
        names |= {target.id for node in tree.body if isinstance(node, ast.Assign)
                  for target in node.targets if isinstance(target, ast.Name)}
        names |= {alias.asname or alias.name for node in tree.body
                  if isinstance(node, ast.ImportFrom) for alias in node.names}
        if cls not in names:
            return f"{module!r} defines no {cls!r} (from {value!r})"
    return None


def _bind(env, name: str, default: str) -> str:
    """host:port, [v6]:port, unix:/path or fd://N, as gunicorn takes them."""
    value = _text(env, name, default)
    if value.startswith("unix:"):
        if not value[len("unix:"):].startswith("/"):
            raise ConfigError(name, f"a unix socket needs an absolute path, got {value!r}")
        return value
    if value.startswith("fd://"):
        if not value[len("fd://"):].isdigit():
            raise ConfigError(name, f"expected fd://N, got {value!r}")
        return value
    host, sep, port = value.rpartition(":")
    if not sep or not host or host.endswith(":") or (host.count(":") and not host.startswith("[")):
        raise ConfigError(name, f"expected host:port or unix:/path (a port is required), "
                                f"got {value!r}")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(name, f"the port must be 1-65535, got {value!r}")
    return value


@dataclass(frozen=True)
class WebhookSettings:
    """Where webhooks may go and how the delivery worker paces itself."""

    # Targets: https only, and public addresses only (SSRF), unless allowed.
    allow_http: bool = False
    allow_private: bool = False
    # One attempt, DNS to last byte read; the contract fixes 15 s.
    timeout: float = 15.0
    # A claimed delivery is another worker's to retry once this runs out, so
    # it must outlast an attempt: a killed worker's deliveries are redone.
    lease: float = 60.0
    # NOTIFY wakes the worker at once; this poll is what bounds the delay
    # when a notification is lost.
    poll_interval: float = 5.0
    concurrency: int = 10
    # Backoff: full jitter over base * 2**(attempt - 1), capped; retries go on
    # for retry_for seconds (the contract: at least 24 h), then the delivery is dead.
    retry_base: float = 10.0
    retry_max_delay: float = 3600.0
    retry_for: float = 86400.0


def _flag(env, name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(name, f"must be 1 or 0, got {raw!r}")


def _webhook_settings(env) -> WebhookSettings:
    settings = WebhookSettings(
        allow_http=_flag(env, "PEREGRINE_WEBHOOK_ALLOW_HTTP", False),
        allow_private=_flag(env, "PEREGRINE_WEBHOOK_ALLOW_PRIVATE", False),
        timeout=_float(env, "PEREGRINE_WEBHOOK_TIMEOUT", 15.0, 0.1, 60.0),
        lease=_float(env, "PEREGRINE_WEBHOOK_LEASE", 60.0, 0.2, 3600.0),
        poll_interval=_float(env, "PEREGRINE_WEBHOOK_POLL_INTERVAL", 5.0, 0.05, 300.0),
        concurrency=_int(env, "PEREGRINE_WEBHOOK_CONCURRENCY", 10, 1, 500),
        retry_base=_float(env, "PEREGRINE_WEBHOOK_RETRY_BASE", 10.0, 0.01, 3600.0),
        retry_max_delay=_float(env, "PEREGRINE_WEBHOOK_RETRY_MAX_DELAY", 3600.0, 0.01, 86400.0),
        retry_for=_float(env, "PEREGRINE_WEBHOOK_RETRY_FOR", 86400.0, 1.0, 30 * 86400.0),
    )
    if settings.lease < 2 * settings.timeout:
        raise ConfigError("PEREGRINE_WEBHOOK_LEASE",
                          f"must be at least twice PEREGRINE_WEBHOOK_TIMEOUT "
                          f"({2 * settings.timeout:g} s), got {settings.lease:g}")
    if settings.retry_max_delay < settings.retry_base:
        raise ConfigError("PEREGRINE_WEBHOOK_RETRY_MAX_DELAY",
                          f"must be at least PEREGRINE_WEBHOOK_RETRY_BASE "
                          f"({settings.retry_base:g} s), got {settings.retry_max_delay:g}")
    return settings


@dataclass(frozen=True)
class MailSettings:
    """Where mail goes (None: it queues until an SMTP server is configured)."""

    smtp_url: str | None = field(default=None, repr=False)  # may hold a password
    sender: str = "Peregrine <no-reply@localhost>"
    # The links in mails: <link_base>/verify-email?token=..., /reset-password?token=...
    link_base: str = "http://localhost:8000"
    timeout: float = 15.0


def _mail_settings(env) -> MailSettings:
    from app.mail import smtp_url

    url = env.get("PEREGRINE_SMTP_URL", "").strip() or None
    if url is not None:
        try:
            smtp_url.parse(url)
        except ValueError as ex:
            raise ConfigError("PEREGRINE_SMTP_URL", str(ex)) from None
    sender = _text(env, "PEREGRINE_MAIL_FROM", MailSettings.sender)
    if "@" not in sender or any(ch in sender for ch in "\r\n"):
        raise ConfigError("PEREGRINE_MAIL_FROM", f"must be an address, got {sender!r}")
    link_base = _text(env, "PEREGRINE_PUBLIC_URL", MailSettings.link_base).rstrip("/")
    parts = urlsplit(link_base)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError("PEREGRINE_PUBLIC_URL", f"must be an http(s) URL, got {link_base!r}")
    return MailSettings(smtp_url=url, sender=sender, link_base=link_base,
                        timeout=_float(env, "PEREGRINE_SMTP_TIMEOUT", 15.0, 0.1, 120.0))


def _data_key(env, name: str) -> bytes | None:
    import base64
    import binascii

    raw = env.get(name, "").strip()
    if not raw:
        return None
    try:
        decoded = base64.urlsafe_b64decode(raw.encode("ascii"))
    except (binascii.Error, UnicodeEncodeError, ValueError):
        decoded = b""
    if len(decoded) != 32:
        # The value is a secret: the message never repeats it.
        raise ConfigError(name, "must be 32 random bytes in URL-safe base64 (a Fernet key)")
    return raw.encode("ascii")
