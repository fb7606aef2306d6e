import os

import pytest

from app.config import Config, ConfigError

GOOD = {
    "PEREGRINE_DATABASE_URL": "postgresql://peregrine@127.0.0.1:5432/peregrine",
    "PEREGRINE_MEMCACHED_SERVERS": "127.0.0.1:11211, 10.0.0.2:11211",
    "PEREGRINE_JWT_SECRET": "s" * 32,
}


def test_valid_environment_is_parsed_with_defaults():
    config = Config.from_env(GOOD)
    assert config.memcached_servers == (("127.0.0.1", 11211), ("10.0.0.2", 11211))
    assert config.jwt_secret == b"s" * 32
    assert config.bind == "127.0.0.1:8000"
    assert config.db_pool_size == 10
    assert config.statsd_addr is None
    assert config.worker_class == "hotpath.worker.GeventHTTPWorker"


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("PEREGRINE_JWT_SECRET", "short", "at least 32 bytes"),
        ("PEREGRINE_JWT_SECRET", "", "is not set"),
        ("PEREGRINE_DATABASE_URL", "", "is not set"),
        ("PEREGRINE_DATABASE_URL", "mysql://x", "postgresql://"),
        ("PEREGRINE_MEMCACHED_SERVERS", "localhost", "host:port"),
        ("PEREGRINE_MEMCACHED_SERVERS", "localhost:99999", "host:port"),
        ("PEREGRINE_WORKERS", "many", "integer"),
        ("PEREGRINE_WORKERS", "0", "between"),
        ("PEREGRINE_DB_POOL_TIMEOUT", "soon", "seconds"),
        ("PEREGRINE_STATSD_ADDR", "nohost", "host:port"),
        ("PEREGRINE_RATE_LIMIT_PER_MINUTE", "-1", "between"),
        ("PEREGRINE_LOG_LEVEL", "loud", "one of"),
    ],
)
def test_bad_variable_is_named_in_the_error(name, value, fragment):
    with pytest.raises(ConfigError) as info:
        Config.from_env({**GOOD, name: value})
    assert info.value.name == name
    assert name in str(info.value) and fragment in str(info.value)


def test_worker_class_short_names_map_to_gunicorn_paths():
    assert Config.from_env({**GOOD, "PEREGRINE_WORKER_CLASS": "peregrine"}).worker_class == (
        "hotpath.worker.GeventHTTPWorker"
    )
    assert Config.from_env({**GOOD, "PEREGRINE_WORKER_CLASS": "gevent"}).worker_class == "gevent"


def test_rate_limit_zero_disables_the_general_limit():
    config = Config.from_env({**GOOD, "PEREGRINE_RATE_LIMIT_PER_MINUTE": "0"})
    assert config.rate_limit_per_minute == 0


def test_unset_variables_mean_the_declared_defaults():
    # One set of defaults: what the dataclass declares is what an unset variable gives.
    required = {"database_url": GOOD["PEREGRINE_DATABASE_URL"],
                "memcached_servers": (("127.0.0.1", 11211), ("10.0.0.2", 11211)),
                "jwt_secret": b"s" * 32}
    assert Config.from_env(GOOD) == Config(**required)


def test_workers_default_to_one_per_usable_core():
    assert Config.from_env(GOOD).workers == len(os.sched_getaffinity(0))
