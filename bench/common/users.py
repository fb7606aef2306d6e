"""Base user classes: one HTTP client each, a client address, optional sign-in."""

import locust  # noqa: F401  first: locust gevent-patches the standard library on import  # isort: skip

import random
import time

from locust import FastHttpUser
from locust.exception import StopUser

from common import settings
from common.data import client_address


def paced(rate):
    """A wait_time that starts a task every 1/rate s, like constant_throughput,
    but at a random phase per user.

    locust spawns users in batches (spawn-rate per second) and constant_pacing
    anchors each user's schedule to its creation, so a batch stays in step and
    its requests reach the server as one volley every period: measured here,
    100 users at 1/s all started their tasks within the same 50 ms and saw a
    45 ms median against an idle server, 2 ms with spread phases.
    """
    period = 1 / rate

    def wait(user):
        now = time.perf_counter()
        # After the first task: a random point of the next period. Later: one
        # period after the last scheduled start, or now if the task overran
        # (no catching up in bursts).
        last = getattr(user, "_paced_start", now - random.random() * period)
        user._paced_start = max(last + period, now)
        return user._paced_start - now

    return wait


class ApiUser(FastHttpUser):
    """An anonymous API client. Use ``self.api(...)`` as a with-block."""

    abstract = True
    # Open-ish load: each user starts a task every 1/BENCH_USER_RATE s however
    # long the last one took (until it takes longer), so a slow server does not
    # quietly lower the offered load (coordinated omission); users x rate is
    # the target, compare it with the achieved req/s.
    wait_time = paced(settings.USER_RATE)

    def on_start(self):
        self.headers = {"X-Real-IP": client_address()}

    def api(self, method, path, name, headers=None, **kwargs):
        """``self.rest()`` (catch_response=True, JSON parsed into ``r.js``) with our headers.

        Inside the with-block a failed ``assert`` marks the request failed with
        its message; so does a non-2xx/3xx status unless ``r.success()``.
        """
        return self.rest(method, path, name=name, headers={**self.headers, **(headers or {})},
                         **kwargs)


class SignedInUser(ApiUser):
    """A client signed in as one of the seeded accounts (user0..userN-1).

    It signs in once, in on_start, and from then on keeps its session the way
    a real client does: shortly before the access token expires it spends the
    refresh token on POST /v1/auth/refresh and gets a new pair (rotation), so
    a long run measures refreshes, not a login storm on the memory-hard KDF.
    """

    abstract = True
    _next_account = 0

    def credentials(self):
        """(email, password) to sign in with; round-robin over the seeded accounts."""
        email = f"user{SignedInUser._next_account % settings.SEEDED_USERS}@example.test"
        SignedInUser._next_account += 1
        return email, settings.PASSWORD

    def on_start(self):
        super().on_start()
        self.email, self.password = self.credentials()
        self.refresh_token = None
        self.login()
        if "Authorization" not in self.headers:
            raise StopUser()  # the failed login is in the statistics; nothing to do unsigned

    def login(self):
        self.token_renew_at = time.monotonic() + 30  # if this attempt fails, retry later
        body = {"email": self.email, "password": self.password}
        with self.rest("POST", "/v1/auth/login", name="/v1/auth/login", json=body,
                       headers={"X-Real-IP": self.headers["X-Real-IP"]}) as r:
            assert r.status_code == 200, f"login answered {r.status_code}"
            self._take(r.js)

    def refresh(self):
        """Rotate the pair; a refused refresh (family revoked) falls back to a login."""
        self.token_renew_at = time.monotonic() + 30
        body = {"refresh_token": self.refresh_token}
        with self.rest("POST", "/v1/auth/refresh", name="/v1/auth/refresh", json=body,
                       headers={"X-Real-IP": self.headers["X-Real-IP"]}) as r:
            assert r.status_code == 200, f"refresh answered {r.status_code}"
            assert r.js["refresh_token"] != self.refresh_token, "the refresh token was not rotated"
            self._take(r.js)
            return
        self.login()  # only reached when the refresh failed (the with-block swallows it)

    def _take(self, pair):
        assert pair["token_type"] == "Bearer", "token_type is not Bearer"
        self.headers["Authorization"] = f"Bearer {pair['access_token']}"
        self.refresh_token = pair["refresh_token"]
        # Renew a minute before the access token expires (long soaks), or
        # sooner when BENCH_REFRESH_S asks for refreshes under load.
        lifetime = max(pair["expires_in"] - 60, 30)
        if settings.REFRESH_S is not None:
            lifetime = min(lifetime, settings.REFRESH_S)
        self.token_renew_at = time.monotonic() + lifetime

    def api(self, method, path, name, headers=None, **kwargs):
        if time.monotonic() >= self.token_renew_at:
            if self.refresh_token:
                self.refresh()
            else:
                self.login()
        return super().api(method, path, name, headers, **kwargs)
