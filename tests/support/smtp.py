"""A real SMTP server (aiosmtpd) on a free loopback port, recording what it receives."""

from __future__ import annotations

import datetime
import email
import email.policy
import re
import ssl
import threading
import time
from email.message import EmailMessage
from pathlib import Path

from aiosmtpd.controller import Controller

from tests.support.processes import free_port
from tests.support.webhooks import FAST, DeliveryWorker


class _Recorder:
    def __init__(self, server: SmtpServer):
        self.server = server

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        if self.server.refuse_with is not None:
            return self.server.refuse_with
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        if self.server.fail_next > 0:
            self.server.fail_next -= 1
            return "451 try again later"
        message = email.message_from_bytes(envelope.original_content or envelope.content,
                                           policy=email.policy.default)
        with self.server.lock:
            self.server.messages.append((list(envelope.rcpt_tos), message, session.ssl))
        self.server.arrived.set()
        return "250 OK"


class SmtpServer:
    """Started in a thread; ``tls`` (a certificate and key) requires STARTTLS."""

    def __init__(self, tls: tuple[Path, Path] | None = None):
        self.port = free_port()
        self.messages: list[tuple[list[str], EmailMessage, object]] = []
        self.lock = threading.Lock()
        self.arrived = threading.Event()
        self.fail_next = 0  # answer 451 to this many messages first
        self.refuse_with: str | None = None  # e.g. "550 no such user"
        context = None
        if tls is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(str(tls[0]), str(tls[1]))
        self._controller = Controller(_Recorder(self), hostname="127.0.0.1", port=self.port,
                                      tls_context=context, require_starttls=tls is not None)

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def start(self) -> SmtpServer:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def wait_for(self, count: int, timeout: float = 15.0) -> list[tuple[list[str], EmailMessage,
                                                                        object]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.messages) >= count:
                    return list(self.messages)
            time.sleep(0.05)
        raise AssertionError(f"{count} mail(s) expected in {timeout}s, got {len(self.messages)}")


def self_signed(folder: Path, host: str = "127.0.0.1") -> tuple[Path, Path]:
    """A certificate for ``host`` and its key, as PEM files; the certificate is its own CA."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "smtp-cert.pem", folder / "smtp-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


# -- for the fixtures of the test modules that send mail ---------------------

_TOKEN = re.compile(r"token=([A-Za-z0-9_-]+)")


def running_smtp_server():
    """Yield a started SmtpServer, stopped afterwards (a fixture's body)."""
    server = SmtpServer().start()
    yield server
    server.stop()


def running_mail_worker(base_env: dict[str, str], server: SmtpServer, log_path: Path):
    """Yield a real ``python -m app deliver`` sending to ``server`` (a fixture's body)."""
    worker = DeliveryWorker({**base_env, **FAST, "PEREGRINE_SMTP_URL": server.url,
                             "PEREGRINE_SMTP_TIMEOUT": "2"}, log_path)
    worker.start()
    yield worker
    worker.stop()


def link_token(message: EmailMessage) -> str:
    """The token of the link in a mail, after checking both parts carry the same link."""
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    found_text, found_html = _TOKEN.search(text), _TOKEN.search(html)
    assert found_text and found_html, text
    assert found_text.group(1) == found_html.group(1)
    return found_text.group(1)
