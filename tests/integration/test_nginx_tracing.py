"""nginx as deployed hands a client's traceparent to the app and logs both ends of it."""

from __future__ import annotations

import signal
import time

import pytest

from tests.integration import test_nginx
from tests.integration.test_nginx import Nginx
from tests.support.http import request

pytestmark = test_nginx.pytestmark  # nginx installed, as there

CALLER = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.fixture
def nginx(live_server):
    """The role's edge site in front of a live app server."""
    server = Nginx("peregrine-edge.conf.j2", [f"127.0.0.1:{live_server.port}"]).start()
    yield server
    server.stop()


def access_log(nginx: Nginx, expected: str, timeout: float = 5.0) -> str:
    """The access log once it holds ``expected`` (nginx buffers it: USR1 writes it out)."""
    path = nginx.root / "access.log"
    deadline = time.monotonic() + timeout
    while True:
        nginx.proc.send_signal(signal.SIGUSR1)
        time.sleep(0.2)
        text = path.read_text() if path.exists() else ""
        if expected in text or time.monotonic() > deadline:
            return text


def test_the_traceparent_passes_through_nginx_and_is_logged(nginx):
    answer = request(nginx.url + "/v1/nope", headers={"traceparent": CALLER,
                                                      "X-Request-ID": "nginx-trace"})
    assert answer.status == 404
    ours = answer.headers["traceparent"]
    # The app saw the client's header: it continued that trace.
    assert answer.json["trace_id"] == CALLER.split("-")[1] == ours.split("-")[1]
    [line] = [line for line in access_log(nginx, "rid=nginx-trace").splitlines()
              if "rid=nginx-trace" in line]
    assert f'tp="{CALLER}"' in line and f'atp="{ours}"' in line


def test_without_a_traceparent_nginx_logs_the_one_the_app_started(nginx):
    answer = request(nginx.url + "/healthz", headers={"X-Request-ID": "nginx-new-trace"})
    assert answer.status == 200
    [line] = [line for line in access_log(nginx, "rid=nginx-new-trace").splitlines()
              if "rid=nginx-new-trace" in line]
    assert 'tp="-"' in line and f'atp="{answer.headers["traceparent"]}"' in line
