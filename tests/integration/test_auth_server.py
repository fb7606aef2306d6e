"""Auth under a real gunicorn gevent worker: concurrency and a free event loop."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from tests.support.api import PASSWORD, unique_email
from tests.support.http import request


def register_and_login(url):
    email = unique_email()
    assert request(url + "/v1/auth/register", "POST",
                   {"email": email, "password": PASSWORD, "name": "N"}).status == 201
    result = request(url + "/v1/auth/login", "POST", {"email": email, "password": PASSWORD})
    assert result.status == 200
    return email, result.json


def test_concurrent_refreshes_of_one_token_give_exactly_one_success(live_server):
    _, pair = register_and_login(live_server.url)
    barrier = threading.Barrier(10)

    def refresh(_):
        barrier.wait()
        return request(live_server.url + "/v1/auth/refresh", "POST",
                       {"refresh_token": pair["refresh_token"]}).status

    with ThreadPoolExecutor(10) as pool:
        statuses = list(pool.map(refresh, range(10)))
    assert sorted(statuses) == [200] + [401] * 9


def test_healthz_answers_while_fifty_logins_hash(live_server):
    email, _ = register_and_login(live_server.url)

    def one_login(index):
        return request(live_server.url + "/v1/auth/login", "POST",
                       {"email": email, "password": PASSWORD},
                       headers={"X-Real-IP": f"10.9.{index // 250}.{index % 250 + 1}"},
                       timeout=60).status

    with ThreadPoolExecutor(50) as pool:
        logins = [pool.submit(one_login, i) for i in range(50)]
        time.sleep(0.3)  # hashing is now queued in the worker's thread pool
        latencies = []
        while not all(f.done() for f in logins) and len(latencies) < 20:
            started = time.monotonic()
            assert request(live_server.url + "/healthz").status == 200
            latencies.append(time.monotonic() - started)
            time.sleep(0.05)
        statuses = [f.result() for f in logins]
    assert statuses == [200] * 50
    assert len(latencies) >= 3, "the logins finished before /healthz could be measured"
    # 50 argon2 hashes take ~3 s of CPU; a blocked hub would hold /healthz for seconds.
    assert max(latencies) < 0.5, latencies
