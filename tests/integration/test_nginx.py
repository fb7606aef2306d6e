"""The nginx site from deploy/ansible, run for real in front of the app.

The role's templates are rendered with jinja2 (the role's defaults plus a few
test values), pointed at temporary paths and free loopback ports, and served
by the machine's nginx. What is checked is what nginx answers by itself: its
own errors must be the contract's JSON envelope, never its HTML pages, and it
must not retry the app's deliberate 503s (or a POST) on another server.
"""

from __future__ import annotations

import http.client
import json
import re
import shutil
import socket
import socketserver
import threading
from pathlib import Path

import pytest

from tests.support.http import request
from tests.support.nginx import NGINX, self_signed_certificate
from tests.support.nginx import Nginx as RoleNginx
from tests.support.processes import free_port, wait_for_port

jinja2 = pytest.importorskip("jinja2", reason="Jinja2 renders the nginx templates")
pytestmark = pytest.mark.skipif(
    NGINX is None, reason="nginx is not installed (apt-get install nginx-light)")


class Nginx(RoleNginx):
    """The role's nginx, sized for a test's handful of connections."""

    def __init__(self, site_template: str, upstreams: list[str], **variables):
        super().__init__(site_template, upstreams, **{
            "nginx_worker_processes": 1, "nginx_worker_connections": 256,
            "nginx_limit_nofile": 1024, **variables})


@pytest.fixture
def nginx_factory():
    started = []

    def start(upstreams, site="peregrine-edge.conf.j2", **variables):
        server = Nginx(site, upstreams, **variables)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()


class StubUpstream(socketserver.ThreadingTCPServer):
    """An app server that counts requests and answers 503, or drops them once read."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, mode: str):
        self.mode = mode
        self.hits = 0
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _StubHandler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"


class _StubHandler(socketserver.StreamRequestHandler):
    def handle(self):
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            line = self.rfile.readline()
            if not line:
                return
            head += line
        length = re.search(rb"(?im)^content-length: *(\d+)", head)
        if length:
            self.rfile.read(int(length.group(1)))
        with self.server.lock:
            self.server.hits += 1
        if self.server.mode == "drop":
            return  # the request reached the app, which died before answering
        body = b'{"error":{"code":"unavailable","message":"pool exhausted"},"request_id":"app"}'
        self.wfile.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                         b"Retry-After: 1\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                         % (len(body), body))


@pytest.fixture
def stubs():
    servers = []

    def make(mode, count=2):
        made = [StubUpstream(mode) for _ in range(count)]
        servers.extend(made)
        return made

    yield make
    for server in servers:
        server.shutdown()
        server.server_close()


def assert_nginx_envelope(response, status, code):
    assert response.status == status, response.body[:300]
    assert response.headers["content-type"] == "application/json"
    body = response.json  # JSON, not nginx's HTML page
    assert set(body) == {"error", "request_id"}
    assert body["error"]["code"] == code and body["error"]["message"]
    assert body["request_id"] == response.headers["x-request-id"]
    return body


def test_proxied_answers_pass_through(live_server, nginx_factory):
    nginx = nginx_factory([f"127.0.0.1:{live_server.port}"])
    result = request(nginx.url + "/healthz")
    assert result.status == 200 and result.json == {"status": "ok"}
    # The app's own errors are its own envelope, untouched by nginx.
    missing = request(nginx.url + "/v1/nope", headers={"X-Request-ID": "trace-1"})
    assert missing.status == 404
    assert missing.json == {"error": {"code": "not_found", "message": "no such resource"},
                            "request_id": "trace-1",
                            "trace_id": missing.headers["traceparent"].split("-")[1]}


def test_body_over_the_limit_is_a_json_413(live_server, nginx_factory):
    nginx = nginx_factory([f"127.0.0.1:{live_server.port}"])
    big = b'{"name": "' + b"x" * (70 * 1024) + b'"}'
    result = request(nginx.url + "/v1/auth/register", "POST", big,
                     {"Content-Type": "application/json", "X-Request-ID": "big-upload.1"})
    body = assert_nginx_envelope(result, 413, "payload_too_large")
    assert body["request_id"] == "big-upload.1"


@pytest.mark.parametrize("hostile", ['x"},"error":{"code":"pwned', "a b", "x" * 129])
def test_an_unsafe_request_id_is_replaced_not_echoed(live_server, nginx_factory, hostile):
    nginx = nginx_factory([f"127.0.0.1:{live_server.port}"])
    result = request(nginx.url + "/v1/auth/register", "POST", b"x" * (70 * 1024),
                     {"Content-Type": "application/json", "X-Request-ID": hostile})
    body = assert_nginx_envelope(result, 413, "payload_too_large")
    assert body["request_id"] != hostile and re.fullmatch(r"[0-9a-f]{32}", body["request_id"])


def test_a_stopped_upstream_is_a_json_502_with_retry_after(live_server, nginx_factory):
    nginx = nginx_factory([f"127.0.0.1:{live_server.port}"])
    assert request(nginx.url + "/healthz").status == 200
    live_server.stop()
    result = request(nginx.url + "/v1/products")
    assert_nginx_envelope(result, 502, "unavailable")
    assert int(result.headers["retry-after"]) > 0


def test_an_upstream_that_does_not_answer_in_time_is_a_json_504(nginx_factory):
    # Accepts connections (the kernel's backlog) and never answers.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        nginx = nginx_factory([f"127.0.0.1:{silent.getsockname()[1]}"],
                              nginx_proxy_read_timeout="1s", nginx_proxy_send_timeout="1s")
        result = request(nginx.url + "/v1/products")
    assert_nginx_envelope(result, 504, "unavailable")
    assert int(result.headers["retry-after"]) > 0


def test_the_apps_503_is_passed_on_and_not_retried(nginx_factory, stubs):
    servers = stubs("503")
    nginx = nginx_factory([s.address for s in servers])
    result = request(nginx.url + "/v1/products")
    assert result.status == 503
    assert result.json["error"]["message"] == "pool exhausted"  # the app's body, as sent
    assert result.headers["retry-after"] == "1"
    assert sum(s.hits for s in servers) == 1, "a deliberate 503 was retried on another server"


def test_a_post_that_reached_a_failing_server_is_not_retried(nginx_factory, stubs):
    servers = stubs("drop")
    nginx = nginx_factory([s.address for s in servers])
    result = request(nginx.url + "/v1/orders", "POST", {"items": []},
                     {"Authorization": "Bearer x"})
    assert_nginx_envelope(result, 502, "unavailable")
    assert sum(s.hits for s in servers) == 1, "a POST was sent to a second server"
    # An idempotent GET is worth a second server (proxy_next_upstream_tries 2).
    result = request(nginx.url + "/v1/products")
    assert_nginx_envelope(result, 502, "unavailable")
    assert sum(s.hits for s in servers) == 3


def _self_signed(directory: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed for the lb site's certificate")
    self_signed_certificate(directory)


def test_lb_site_rate_limit_is_a_json_429_with_retry_after(live_server, nginx_factory,
                                                            tmp_path):
    import http.client
    import ssl

    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::", 0))
    except OSError:
        pytest.skip("the lb site also listens on [::], and this host has no IPv6")
    _self_signed(tmp_path)
    https_port = free_port()
    nginx = nginx_factory([f"127.0.0.1:{live_server.port}"], site="peregrine-lb.conf.j2",
                          nginx_https_port=https_port,
                          nginx_tls_dir=str(tmp_path), nginx_limit_req_per_ip=1,
                          nginx_limit_req_burst=1)
    wait_for_port(https_port, 10, nginx.proc)
    context = ssl._create_unverified_context()  # the test's own self-signed certificate
    statuses = []
    for _ in range(4):  # 1 r/s with a burst of 1: the third in a row is refused
        conn = http.client.HTTPSConnection("127.0.0.1", https_port, context=context, timeout=5)
        try:
            conn.request("GET", "/healthz")
            response = conn.getresponse()
            statuses.append(response.status)
            if response.status == 429:
                body = json.loads(response.read())
                assert response.getheader("Content-Type") == "application/json"
                assert body["error"]["code"] == "rate_limited"
                assert body["request_id"] == response.getheader("X-Request-ID")
                assert int(response.getheader("Retry-After")) > 0
        finally:
            conn.close()
    assert statuses[0] == 200 and 429 in statuses, statuses


@pytest.mark.parametrize("burst", [0, 5])
def test_lb_site_with_any_burst_is_a_config_nginx_accepts(tmp_path, burst):
    _self_signed(tmp_path)
    nginx = Nginx("peregrine-lb.conf.j2", ["127.0.0.1:9"], nginx_https_port=free_port(),
                  nginx_tls_dir=str(tmp_path), nginx_limit_req_per_ip=10,
                  nginx_limit_req_burst=burst)
    nginx.test_config()
    site = (nginx.root / "sites" / "peregrine.conf").read_text()
    assert ("burst=" in site) == (burst > 0)


def _edge_status(nginx, source: str, real_ip: str) -> int:
    """GET /healthz through the edge from local address ``source``, claiming ``real_ip``."""
    conn = http.client.HTTPConnection("127.0.0.1", nginx.port, timeout=10,
                                      source_address=(source, 0))
    try:
        conn.request("GET", "/healthz", headers={"X-Real-IP": real_ip})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def test_the_edge_admits_its_lb_peers_whatever_client_they_forward(live_server, nginx_factory):
    # The allow list is about the connection's peer (an lb host), not the client
    # address realip puts in its place: a client of the lb must get through, a
    # host not on the list must not, whatever X-Real-IP it claims.
    nginx = nginx_factory([f"127.0.0.1:{live_server.port}"], nginx_edge_allow=["127.0.0.3"])
    assert _edge_status(nginx, "127.0.0.3", "203.0.113.9") == 200
    assert _edge_status(nginx, "127.0.0.4", "127.0.0.3") == 403
    assert _edge_status(nginx, "127.0.0.4", "203.0.113.9") == 403
