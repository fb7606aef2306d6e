"""Every route of the API, in one table.

The factory mounts these; the OpenAPI document and the route x role test
are generated from them.
"""

from __future__ import annotations

from typing import NamedTuple

from app.resources.docs import DocsResource, OpenAPIResource
from app.resources.health import HealthResource, ReadyResource


class Route(NamedTuple):
    template: str
    resource: type


ROUTES: tuple[Route, ...] = (
    # Operations
    Route("/healthz", HealthResource),
    Route("/readyz", ReadyResource),
    Route("/openapi.json", OpenAPIResource),
    Route("/docs", DocsResource),
)
