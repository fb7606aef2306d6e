"""Configuration, read only from ``PEREGRINE_*`` environment variables.

Everything is validated once, at start-up, and a bad value stops the process
with a message that names the variable. This module imports nothing heavy so
``gunicorn.conf.py`` (which runs in the master) can use it safely.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
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
    """Validated settings; build with :meth:`from_env`."""

    database_url: str
    memcached_servers: tuple[tuple[str, int], ...]
    jwt_secret: bytes
    bind: str = "127.0.0.1:8000"
    workers: int = 1
    worker_connections: int = 400
    worker_class: str = DEFAULT_WORKER_CLASS
    db_pool_size: int = 10
    db_pool_timeout: float = 1.0
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

    @classmethod
    def from_env(cls, env: os._Environ | dict | None = None) -> "Config":
        env = os.environ if env is None else env
        return cls(
            database_url=_database_url(env, "PEREGRINE_DATABASE_URL"),
            memcached_servers=_servers(env, "PEREGRINE_MEMCACHED_SERVERS"),
            jwt_secret=_jwt_secret(env, "PEREGRINE_JWT_SECRET"),
            bind=_text(env, "PEREGRINE_BIND", "127.0.0.1:8000"),
            workers=_int(env, "PEREGRINE_WORKERS", _cpu_count(), 1, 256),
            worker_connections=_int(env, "PEREGRINE_WORKER_CONNECTIONS", 400, 1, 100_000),
            worker_class=_worker_class(env, "PEREGRINE_WORKER_CLASS"),
            db_pool_size=_int(env, "PEREGRINE_DB_POOL_SIZE", 10, 1, 1000),
            db_pool_timeout=_float(env, "PEREGRINE_DB_POOL_TIMEOUT", 1.0, 0.01, 60.0),
            statsd_addr=_optional_addr(env, "PEREGRINE_STATSD_ADDR"),
            rate_limit_per_minute=_int(env, "PEREGRINE_RATE_LIMIT_PER_MINUTE", 600, 0, 10**9),
            log_level=_choice(env, "PEREGRINE_LOG_LEVEL", "info", LOG_LEVELS),
            cache_epoch_poll=_float(env, "PEREGRINE_CACHE_EPOCH_POLL", 0.25, 0.01, 0.5),
            near_cache_ttl=_float(env, "PEREGRINE_NEAR_CACHE_TTL", 0.5, 0.0, 0.5),
        )


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
    servers = tuple(_addr(name, part) for part in raw.split(",") if part.strip())
    if not servers:
        raise ConfigError(name, "lists no host:port")
    return servers


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


def _jwt_secret(env, name: str) -> bytes:
    secret = _required(env, name).encode()
    if len(secret) < MIN_JWT_SECRET_BYTES:
        raise ConfigError(
            name,
            f"must be at least {MIN_JWT_SECRET_BYTES} bytes (got {len(secret)}); "
            "generate one with `python -c 'import secrets; print(secrets.token_urlsafe(48))'`",
        )
    return secret


def _worker_class(env, name: str) -> str:
    value = env.get(name, "").strip() or DEFAULT_WORKER_CLASS
    return WORKER_CLASSES.get(value, value)
