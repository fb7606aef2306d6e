"""One email normalisation for uniqueness, lookups and rate limits, whatever the locale.

Run against the harness database (C locale: Postgres' lower() folds ASCII
only) and against a database with a UTF-8 locale, as Debian's packaged
Postgres creates by default.
"""

from __future__ import annotations

import falcon.testing
import psycopg2
import pytest

from app.config import Config
from app.factory import create_app
from app.manage.migrate import migrate
from tests.support.api import PASSWORD
from tests.support.databases import scratch_database

UTF8_DB = "peregrine_utf8"


@pytest.fixture(scope="module")
def utf8_dsn(postgres):
    with scratch_database(postgres, UTF8_DB, options="TEMPLATE template0 ENCODING 'UTF8'"
                          " LC_COLLATE 'C.utf8' LC_CTYPE 'C.utf8'") as dsn:
        migrate(dsn, log=lambda message: None)
        yield dsn


@pytest.fixture(params=["c-locale", "utf8-locale"])
def locale_client(request, base_env, db, cache_flushed):
    env = dict(base_env)
    if request.param == "utf8-locale":
        dsn = request.getfixturevalue("utf8_dsn")
        conn = psycopg2.connect(dsn)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("TRUNCATE users CASCADE")
        conn.close()
        env["PEREGRINE_DATABASE_URL"] = dsn
    application = create_app(Config.from_env(env), configure_logging=False)
    yield falcon.testing.TestClient(application)
    application.deps.close()


def _register(client, email):
    return client.simulate_post("/v1/auth/register",
                                json={"email": email, "password": PASSWORD, "name": "E"})


def _login(client, email, password=PASSWORD, ip="203.0.113.50"):
    return client.simulate_post("/v1/auth/login", json={"email": email, "password": password},
                                headers={"X-Real-IP": ip})


def test_non_ascii_case_variants_are_one_account(locale_client):
    assert _register(locale_client, "Émile.Zoë@Example.test").status_code == 201
    taken = _register(locale_client, "émile.zoë@example.TEST")
    assert taken.status_code == 409 and taken.json["error"]["code"] == "conflict"
    assert _login(locale_client, "ÉMILE.ZOË@EXAMPLE.TEST").status_code == 200


def test_composed_and_decomposed_spellings_are_one_account(locale_client):
    assert _register(locale_client, "re\u0301my@example.test").status_code == 201  # e + ◌́
    assert _register(locale_client, "r\u00e9my@example.test").status_code == 409  # é
    assert _login(locale_client, "R\u00c9MY@example.test").status_code == 200


def test_login_limit_counts_every_spelling_of_one_address(locale_client):
    assert _register(locale_client, "Ångström@example.test").status_code == 201
    spellings = ["Ångström@example.test", "ångström@example.test", "ÅNGSTRÖM@EXAMPLE.TEST"]
    statuses = [_login(locale_client, spellings[n % 3], "wrong password", ip="203.0.113.77")
                .status_code for n in range(10)]
    assert statuses == [401] * 10
    limited = _login(locale_client, "ångStröm@example.test", ip="203.0.113.77")
    assert limited.status_code == 429 and limited.headers["Retry-After"]
