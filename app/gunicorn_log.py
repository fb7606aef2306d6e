"""gunicorn's own log lines (boot, worker start and exit, timeouts) in the app's JSON shape.

``logger_class`` in app/gunicorn_conf.py. Only the formatter of gunicorn's
error log changes: gunicorn's ``logconfig_dict`` would do that too, but it
also switches gunicorn's access log on, an access line built for every
request. Runs in the master: imports gunicorn and app.logs (no gevent).
"""

from __future__ import annotations

import logging

from gunicorn.glogging import Logger

from app.logs import JsonFormatter
from app.metrics import GunicornStatsd


class JsonErrorLog:
    """Mixed into a gunicorn Logger: its error log handlers format with JsonFormatter.

    ``setup`` runs at start and on every reload (HUP), after gunicorn has
    made its handlers anew.
    """

    error_log: logging.Logger

    def setup(self, cfg) -> None:
        super().setup(cfg)  # type: ignore[misc]
        formatter = JsonFormatter()
        for handler in self.error_log.handlers:
            handler.setFormatter(formatter)


class JsonLogger(JsonErrorLog, Logger):
    """gunicorn's default logger, in JSON."""


class JsonStatsdLogger(JsonErrorLog, GunicornStatsd):
    """app.metrics.GunicornStatsd (statsd on), in JSON."""
