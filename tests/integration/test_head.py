"""HEAD through a live worker: no body, and the keep-alive stream stays in step."""

from tests.support.http import raw_exchange


def test_head_on_a_live_worker_keeps_the_connection_in_step(live_server):
    reply = raw_exchange(live_server.port,
                         b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                         b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert reply.count(b"HTTP/1.1 200") == 2
    assert reply.endswith(b'{"status":"ok"}')
