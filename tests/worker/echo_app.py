"""A WSGI app that echoes what the server handed it, as JSON.

The differential tests boot gunicorn with this app under the stock gevent
worker and under ``hotpath.worker.GeventHTTPWorker`` and compare the echoes.
Paths starting with ``/sleep/<seconds>`` sleep first; ``/noread`` answers
without reading the body; ``/readline`` reads it line by line; ``/stream``
answers with a generator; ``/raise`` raises before starting a response.
Every response names the worker process in ``X-Pid``.
"""

import json
import os
import time

#: The environ keys whose values both workers must agree on.
ECHOED_KEYS = (
    "REQUEST_METHOD", "PATH_INFO", "QUERY_STRING", "RAW_URI", "SCRIPT_NAME",
    "SERVER_PROTOCOL", "CONTENT_TYPE", "CONTENT_LENGTH", "wsgi.url_scheme",
)


def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path.startswith("/sleep/"):
        time.sleep(float(path.rsplit("/", 1)[1]))  # patched: yields to the hub
    if path == "/raise":
        raise RuntimeError("the echo app was asked to fail")
    if path == "/noread":
        body = b""
    elif path == "/readline":
        body = b"|".join(iter(environ["wsgi.input"].readline, b""))
    else:
        body = environ["wsgi.input"].read()
    echo = {key: environ.get(key) for key in ECHOED_KEYS}
    echo["headers"] = {k: v for k, v in environ.items() if k.startswith("HTTP_")}
    echo["body"] = body.decode("latin-1")
    data = json.dumps(echo, sort_keys=True).encode()
    headers = [("Content-Type", "application/json"), ("X-Pid", str(os.getpid()))]
    if path == "/stream":
        start_response("200 OK", headers)
        return iter([data[:10], b"", data[10:]])
    start_response("200 OK", headers + [("Content-Length", str(len(data)))])
    return [data]
