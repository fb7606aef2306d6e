"""PEREGRINE_SMTP_URL, PEREGRINE_DATA_KEY and the mail templates, checked at start."""

from __future__ import annotations

import base64

import pytest

from app.config import Config, ConfigError
from app.mail import smtp_url, templates

BASE = {"PEREGRINE_DATABASE_URL": "postgresql://peregrine@127.0.0.1:5432/peregrine",
        "PEREGRINE_MEMCACHED_SERVERS": "127.0.0.1:11211",
        "PEREGRINE_JWT_SECRET": "s" * 40}


@pytest.mark.parametrize(("url", "expected"), [
    ("smtp://mail.example.com", smtp_url.SmtpTarget("mail.example.com", 25)),
    ("smtp://mail.example.com:587?starttls=1",
     smtp_url.SmtpTarget("mail.example.com", 587, starttls=True)),
    ("smtps://u%40x:p%3Aw@mail.example.com",
     smtp_url.SmtpTarget("mail.example.com", 465, tls=True, username="u@x", password="p:w")),
])
def test_smtp_urls_name_host_port_tls_and_credentials(url, expected):
    assert smtp_url.parse(url) == expected


@pytest.mark.parametrize("url", ["http://mail.example.com", "smtp://", "smtp://h:99999",
                                 "smtp://h/path", "smtp://h?starttls=maybe", "smtp://h?tls=1",
                                 "smtps://h?starttls=1"])
def test_a_malformed_smtp_url_stops_the_start(url):
    with pytest.raises(ConfigError, match="PEREGRINE_SMTP_URL"):
        Config.from_env({**BASE, "PEREGRINE_SMTP_URL": url})


def test_the_smtp_password_is_in_no_message_or_repr():
    with pytest.raises(ConfigError) as caught:
        Config.from_env({**BASE, "PEREGRINE_SMTP_URL": "smtp://u:hunter22@h/x"})
    assert "hunter22" not in str(caught.value)
    config = Config.from_env({**BASE, "PEREGRINE_SMTP_URL": "smtp://u:hunter22@h"})
    assert "hunter22" not in repr(config)
    assert "hunter22" not in repr(smtp_url.parse("smtp://u:hunter22@h"))


def test_the_data_key_must_be_a_fernet_key():
    key = base64.urlsafe_b64encode(b"k" * 32).decode()
    assert Config.from_env({**BASE, "PEREGRINE_DATA_KEY": key}).data_key == key.encode()
    assert Config.from_env(BASE).data_key is None
    for bad in ("short", base64.urlsafe_b64encode(b"k" * 31).decode(), "!" * 44):
        with pytest.raises(ConfigError, match="PEREGRINE_DATA_KEY") as caught:
            Config.from_env({**BASE, "PEREGRINE_DATA_KEY": bad})
        assert bad not in str(caught.value)
    assert key not in repr(Config.from_env({**BASE, "PEREGRINE_DATA_KEY": key}))


def test_every_template_renders_text_and_html_with_escaped_values():
    for name in templates.NAMES:
        message = templates.render(name, {"name": "<Ada>", "link": "https://x.test/?token=T"},
                                   sender="Peregrine <no-reply@x.test>", recipient="a@x.test")
        text = message.get_body(("plain",)).get_content()
        html = message.get_body(("html",)).get_content()
        assert "<Ada>" in text and "https://x.test/?token=T" in text
        assert "&lt;Ada&gt;" in html and "<Ada>" not in html
        assert message["Subject"]
