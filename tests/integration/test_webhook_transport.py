"""One attempt over TLS: it connects to the checked address and verifies the URL's host name."""

from __future__ import annotations

import http.server
import ssl
import subprocess
import threading

import pytest
import urllib3.exceptions

from app.webhooks import targets, transport


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-keyout", str(key), "-out", str(cert), "-subj", "/CN=hooks.test",
                    "-addext", "subjectAltName=DNS:hooks.test"], check=True, capture_output=True)
    return cert, key


@pytest.fixture
def tls_sink(certificate):
    seen = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            seen.append((self.headers["Host"], body))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*map(str, certificate))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1], seen
    server.shutdown()
    server.server_close()


def test_the_certificate_is_checked_for_the_url_host_at_the_pinned_address(certificate, tls_sink):
    port, seen = tls_sink
    target = targets.parse(f"https://hooks.test:{port}/in", allow_http=False)
    answer = transport.post(target, "127.0.0.1", b"{}", {}, 5, ca_certs=str(certificate[0]))
    assert (answer.status, answer.excerpt) == (200, "ok")
    assert seen == [(f"hooks.test:{port}", b"{}")]


def test_a_certificate_for_another_name_is_refused(certificate, tls_sink):
    port, seen = tls_sink
    target = targets.parse(f"https://other.test:{port}/in", allow_http=False)
    with pytest.raises(urllib3.exceptions.SSLError):
        transport.post(target, "127.0.0.1", b"{}", {}, 5, ca_certs=str(certificate[0]))
    assert seen == []


def test_an_untrusted_certificate_is_refused(tls_sink):
    port, seen = tls_sink
    target = targets.parse(f"https://hooks.test:{port}/in", allow_http=False)
    with pytest.raises(urllib3.exceptions.SSLError):
        transport.post(target, "127.0.0.1", b"{}", {}, 5)  # the system's CAs only
    assert seen == []
