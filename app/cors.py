"""The CORS policy: off unless ``PEREGRINE_CORS_ORIGINS`` lists the origins allowed.

falcon's :class:`~falcon.CORSMiddleware` does the protocol: it answers an
allowed origin with ``Access-Control-Allow-Origin`` (that origin, never
``*``), and completes a preflight ``OPTIONS`` from the route's ``Allow``
header. Credentials mode is not enabled: the API authenticates with a bearer
token the page sends itself, not with cookies. What this module adds:

* the headers a page may read beyond the CORS-safelisted ones;
* ``Vary: Origin`` on every answer, since whether it carries
  ``Access-Control-Allow-Origin`` depends on the request's Origin: a shared
  cache must not hand one origin's answer to another.

When no origin is listed the middleware is not mounted at all, so a
same-origin deployment pays nothing.
"""

from __future__ import annotations

import falcon

#: Response headers a browser lets the calling page read.
EXPOSED_HEADERS = ("ETag", "Location", "Retry-After", "RateLimit-Limit", "RateLimit-Remaining",
                   "RateLimit-Reset", "WWW-Authenticate", "X-Request-ID", "traceparent")


class CORS(falcon.CORSMiddleware):
    def __init__(self, origins: tuple[str, ...]):
        super().__init__(allow_origins=origins, expose_headers=EXPOSED_HEADERS)

    def process_response(self, req, resp, resource, req_succeeded):
        super().process_response(req, resp, resource, req_succeeded)
        resp.append_header("Vary", "Origin")


def middleware(origins: tuple[str, ...]) -> list:
    """The CORS middleware for ``origins``, or nothing when none is allowed."""
    return [CORS(origins)] if origins else []
