"""PEREGRINE_BIND, PEREGRINE_WORKER_CLASS and the memcached list are checked at start-up.

Each bad value is one ConfigError naming the variable, raised before gunicorn
starts (so no gunicorn traceback, no silent :8000, no cache that never
connects), and without importing a worker module in the master.
"""

import subprocess
import sys

import pytest

from app.config import Config, ConfigError

GOOD = {
    "PEREGRINE_DATABASE_URL": "postgresql://peregrine@127.0.0.1:5432/peregrine",
    "PEREGRINE_MEMCACHED_SERVERS": "127.0.0.1:11211",
    "PEREGRINE_JWT_SECRET": "s" * 32,
}


def config_with(**env) -> Config:
    return Config.from_env({**GOOD, **env})


@pytest.mark.parametrize("bind", [
    "127.0.0.1:8000", "0.0.0.0:80", "localhost:65535", "[::1]:8000",
    "unix:/run/peregrine/gunicorn.sock", "fd://3",
])
def test_binds_gunicorn_takes_are_kept_as_given(bind):
    assert config_with(PEREGRINE_BIND=bind).bind == bind


@pytest.mark.parametrize(("bind", "fragment"), [
    ("0.0.0.0", "a port is required"),
    ("localhost", "a port is required"),
    ("::1", "a port is required"),
    (":8000", "a port is required"),
    ("127.0.0.1:", "port must be 1-65535"),
    ("127.0.0.1:http", "port must be 1-65535"),
    ("127.0.0.1:70000", "port must be 1-65535"),
    ("unix:run/gunicorn.sock", "absolute path"),
    ("fd://three", "fd://N"),
])
def test_a_bind_without_a_usable_port_names_the_variable(bind, fragment):
    with pytest.raises(ConfigError) as raised:
        config_with(PEREGRINE_BIND=bind)
    assert raised.value.name == "PEREGRINE_BIND"
    assert str(raised.value).startswith("PEREGRINE_BIND: ")
    assert fragment in str(raised.value) and repr(bind) in str(raised.value)


def test_the_default_bind_is_loopback_8000():
    assert config_with().bind == "127.0.0.1:8000"


@pytest.mark.parametrize(("given", "resolved"), [
    ("", "hotpath.worker.GeventHTTPWorker"),
    ("peregrine", "hotpath.worker.GeventHTTPWorker"),
    ("gevent", "gevent"),
    ("sync", "sync"),
    ("gunicorn.workers.ggevent.GeventWorker", "gunicorn.workers.ggevent.GeventWorker"),
    ("hotpath.worker.GeventHTTPWorker", "hotpath.worker.GeventHTTPWorker"),
])
def test_worker_classes_that_import_are_accepted(given, resolved):
    assert config_with(PEREGRINE_WORKER_CLASS=given).worker_class == resolved


@pytest.mark.parametrize(("given", "fragment"), [
    ("geventt", "unknown worker class 'geventt'"),
    ("hotpth.worker.GeventHTTPWorker", "cannot import 'hotpth.worker'"),
    ("hotpath.worker.GeventHttpWorker", "defines no 'GeventHttpWorker'"),
    ("hotpath.nosuchmodule.Worker", "cannot import 'hotpath.nosuchmodule'"),
])
def test_a_worker_class_typo_is_one_line_naming_the_variable(given, fragment):
    with pytest.raises(ConfigError) as raised:
        config_with(PEREGRINE_WORKER_CLASS=given)
    message = str(raised.value)
    assert raised.value.name == "PEREGRINE_WORKER_CLASS"
    assert message.startswith("PEREGRINE_WORKER_CLASS: ") and fragment in message
    assert "\n" not in message


def test_checking_the_worker_class_imports_neither_gevent_nor_the_worker():
    # The gunicorn master reads the configuration; gevent must be imported
    # only in the workers, after the fork (app/gunicorn_conf.py).
    probe = (
        "import sys\n"
        "from app.config import Config\n"
        f"Config.from_env({GOOD!r})\n"
        "print(sorted(m for m in ('gevent', 'hotpath.worker', 'psycopg2') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            timeout=60, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("servers", [
    "memcache://127.0.0.1:11211",
    "memcached://cache-1:11211",
    "127.0.0.1:11211,memcache://10.0.0.2:11211",
])
def test_a_memcached_url_with_a_scheme_is_refused(servers):
    with pytest.raises(ConfigError) as raised:
        config_with(PEREGRINE_MEMCACHED_SERVERS=servers)
    assert raised.value.name == "PEREGRINE_MEMCACHED_SERVERS"
    assert "without a scheme" in str(raised.value) and repr(servers) in str(raised.value)


def test_memcached_host_port_lists_still_parse():
    config = config_with(PEREGRINE_MEMCACHED_SERVERS="127.0.0.1:11211, cache-2:11212")
    assert config.memcached_servers == (("127.0.0.1", 11211), ("cache-2", 11212))


def test_cors_is_off_unless_origins_are_listed():
    assert config_with().cors_origins == ()
    assert config_with(PEREGRINE_CORS_ORIGINS=" ").cors_origins == ()


def test_cors_origins_are_an_exact_allow_list():
    config = config_with(PEREGRINE_CORS_ORIGINS="https://shop.example.com, http://localhost:3000,"
                                                "https://shop.example.com")
    assert config.cors_origins == ("https://shop.example.com", "http://localhost:3000")


@pytest.mark.parametrize("origin", [
    "*", "null", "shop.example.com", "https://shop.example.com/", "https://shop.example.com/app",
    "https://Shop.example.com", "ftp://shop.example.com", "https://user@shop.example.com",
    "https://shop.example.com:99999", "https://*.example.com",
])
def test_a_cors_origin_that_is_not_exact_names_the_variable(origin):
    with pytest.raises(ConfigError) as info:
        config_with(PEREGRINE_CORS_ORIGINS=f"https://ok.example.com,{origin}")
    assert info.value.name == "PEREGRINE_CORS_ORIGINS"
    assert repr(origin) in str(info.value)
