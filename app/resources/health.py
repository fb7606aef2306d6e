"""Liveness and readiness."""

from __future__ import annotations

from typing import Literal

import msgspec

from app.errors import DatabaseUnavailable
from app.media import write_json
from app.operations import PUBLIC, operation
from app.replicas import ReplicaStatus
from app.schemas.health import Health, Readiness

_HEALTHY = Health()


class ReplicatedReadiness(Readiness, omit_defaults=True):
    """Readiness plus each read replica; a degraded replica never fails the probe."""

    replicas: list[ReplicaStatus] = msgspec.field(default_factory=list)


class HealthResource:
    """Liveness: answers without touching any dependency."""

    __slots__ = ()

    def __init__(self, services):
        pass

    @operation(access=PUBLIC, summary="Liveness probe", response=Health,
               tag="operations", rate_limited=False)
    def on_get(self, req, resp):
        write_json(resp, _HEALTHY)


class ReadyResource:
    """Readiness: 200 while Postgres answers; memcached and replicas are reported, not required."""

    __slots__ = ("_services",)

    def __init__(self, services):
        self._services = services

    @operation(access=PUBLIC, summary="Readiness probe", response=ReplicatedReadiness,
               errors=(503,), tag="operations", rate_limited=False)
    def on_get(self, req, resp):
        cache: Literal["ok", "degraded"] = "ok" if self._services.cache.ping() else "degraded"
        if not self._services.database_ready():
            raise DatabaseUnavailable(
                "the database does not answer",
                details=[{"field": "database", "message": "unavailable"},
                         {"field": "cache", "message": cache}],
                retry_after=5,
            )
        write_json(resp, ReplicatedReadiness(status="ok", database="ok", cache=cache,
                                             replicas=self._services.catalog.replicas.statuses()))
