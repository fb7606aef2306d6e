"""Pure webhook logic: signatures, backoff, Retry-After, target checks, settings."""

from __future__ import annotations

import base64
from datetime import datetime, timedelta, timezone

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from app.config import Config, ConfigError
from app.webhooks import schedule, signing, targets

GOOD = {
    "PEREGRINE_DATABASE_URL": "postgresql://peregrine@127.0.0.1:5432/peregrine",
    "PEREGRINE_MEMCACHED_SERVERS": "127.0.0.1:11211",
    "PEREGRINE_JWT_SECRET": "s" * 32,
}


def test_secrets_are_whsec_and_32_random_bytes():
    secret = signing.new_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    assert signing.new_secret() != secret


def test_signatures_verify_with_the_independent_implementation():
    current, previous = signing.new_secret(), signing.new_secret()
    body = b'{"id":"e1","type":"order.placed","data":{}}'
    headers = signing.headers([current, previous], "e1", body)
    assert headers["webhook-signature"].count("v1,") == 2
    assert Webhook(current).verify(body, headers)["id"] == "e1"
    assert Webhook(previous).verify(body, headers)["id"] == "e1"
    with pytest.raises(WebhookVerificationError):
        Webhook(signing.new_secret()).verify(body, headers)
    with pytest.raises(WebhookVerificationError):  # the body is what is signed
        Webhook(current).verify(body.replace(b"e1", b"e2"), headers)


def test_an_old_timestamp_is_refused_by_receivers():
    secret = signing.new_secret()
    body = b"{}"
    headers = signing.headers([secret], "e1", body, timestamp=1_000_000_000)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body, headers)


def test_backoff_is_full_jitter_under_a_doubling_capped_ceiling():
    assert schedule.backoff(1, 10, 3600, rng=lambda: 1.0) == 10
    assert schedule.backoff(4, 10, 3600, rng=lambda: 1.0) == 80
    assert schedule.backoff(30, 10, 3600, rng=lambda: 1.0) == 3600
    assert schedule.backoff(10_000, 10, 3600, rng=lambda: 0.5) == 1800
    assert schedule.backoff(3, 10, 3600, rng=lambda: 0.0) == 0
    samples = {schedule.backoff(5, 10, 3600) for _ in range(50)}
    assert len(samples) > 40 and all(0 <= s <= 160 for s in samples)


def test_retry_after_takes_seconds_or_a_date():
    now = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
    assert schedule.retry_after("120") == 120
    assert schedule.retry_after("Tue, 01 Dec 2026 12:01:30 GMT", now) == 90
    assert schedule.retry_after("Tue, 01 Dec 2026 11:00:00 GMT", now) == 0
    assert schedule.retry_after("soon") is None
    assert schedule.retry_after(None) is None
    assert schedule.next_delay(1, 7200, base=1, cap=2, longest=3600) == 3600
    assert schedule.next_delay(1, 30, base=1, cap=2, longest=3600) == 30


@pytest.mark.parametrize(("url", "allow_http", "problem"), [
    ("http://hooks.example.com/", False, "only https"),
    ("ftp://hooks.example.com/", True, "only http and https"),
    ("https://u:p@hooks.example.com/", False, "user info"),
    ("https:///x", False, "no host"),
    ("https://hooks.example.com/a b", False, "spaces"),
    ("https://hooks.example.com:99999/", False, "malformed"),
    ("https://" + "a" * 2050 + ".com/", False, "longer"),
])
def test_urls_that_cannot_be_targets(url, allow_http, problem):
    with pytest.raises(targets.TargetRefused, match=problem):
        targets.parse(url, allow_http=allow_http)


def test_a_target_keeps_its_host_port_and_path():
    target = targets.parse("https://Hooks.Example.com:8443/in?x=1", allow_http=False)
    assert (target.host, target.port, target.path) == ("hooks.example.com", 8443, "/in?x=1")
    assert target.host_header == "hooks.example.com:8443"
    assert targets.parse("http://[2001:db8::1]/", allow_http=True).host_header == "[2001:db8::1]"


@pytest.mark.parametrize("address", [
    "127.0.0.1", "10.0.0.1", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1",
    "0.0.0.0", "224.0.0.1", "::1", "fe80::1", "fc00::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1",
])
def test_non_public_addresses_are_refused(address):
    assert targets.refusal(address) is not None


@pytest.mark.parametrize("address", ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"])
def test_public_addresses_are_allowed(address):
    assert targets.refusal(address) is None


def test_a_name_resolving_to_loopback_is_refused_unless_allowed():
    target = targets.parse("https://localhost/in", allow_http=False)
    with pytest.raises(targets.TargetRefused, match="loopback"):
        targets.resolve(target, allow_private=False)
    assert targets.resolve(target, allow_private=True) in ("127.0.0.1", "::1")


def test_webhook_settings_are_validated_and_named():
    settings = Config.from_env({**GOOD, "PEREGRINE_WEBHOOK_ALLOW_HTTP": "1",
                                "PEREGRINE_WEBHOOK_TIMEOUT": "5",
                                "PEREGRINE_WEBHOOK_LEASE": "10"}).webhooks
    assert (settings.allow_http, settings.allow_private, settings.timeout, settings.lease) == (
        True, False, 5.0, 10.0)
    defaults = Config.from_env(GOOD).webhooks
    assert (defaults.timeout, defaults.retry_for) == (15.0, 86400.0)
    for name, value, problem in [
        ("PEREGRINE_WEBHOOK_ALLOW_HTTP", "maybe", "1 or 0"),
        ("PEREGRINE_WEBHOOK_LEASE", "20", "twice PEREGRINE_WEBHOOK_TIMEOUT"),
        ("PEREGRINE_WEBHOOK_CONCURRENCY", "0", "between"),
        ("PEREGRINE_WEBHOOK_RETRY_MAX_DELAY", "1", "PEREGRINE_WEBHOOK_RETRY_BASE"),
    ]:
        with pytest.raises(ConfigError, match=problem) as raised:
            Config.from_env({**GOOD, name: value})
        assert raised.value.name == name


def test_the_retry_period_defaults_to_a_day():
    assert timedelta(seconds=Config.from_env(GOOD).webhooks.retry_for) >= timedelta(hours=24)
