"""Every route of the API, in one table.

The factory mounts these; the OpenAPI document and the route x role test
are generated from them.
"""

from __future__ import annotations

from typing import NamedTuple

from app.resources.auth import LoginResource, LogoutResource, RefreshResource, RegisterResource
from app.resources.catalog import CategoriesResource, ProductResource, ProductsResource
from app.resources.docs import DocsResource, OpenAPIResource
from app.resources.health import HealthResource, ReadyResource
from app.resources.orders import OrderCancelResource, OrderResource, OrdersResource
from app.resources.users import MeResource, UserResource, UsersResource


class Route(NamedTuple):
    template: str
    resource: type


ROUTES: tuple[Route, ...] = (
    # Operations
    Route("/healthz", HealthResource),
    Route("/readyz", ReadyResource),
    Route("/openapi.json", OpenAPIResource),
    Route("/docs", DocsResource),
    # Auth
    Route("/v1/auth/register", RegisterResource),
    Route("/v1/auth/login", LoginResource),
    Route("/v1/auth/refresh", RefreshResource),
    Route("/v1/auth/logout", LogoutResource),
    # Users
    Route("/v1/users/me", MeResource),
    Route("/v1/users", UsersResource),
    Route("/v1/users/{user_id}", UserResource),
    # Catalog
    Route("/v1/categories", CategoriesResource),
    Route("/v1/products", ProductsResource),
    Route("/v1/products/{product_id}", ProductResource),
    # Orders
    Route("/v1/orders", OrdersResource),
    Route("/v1/orders/{order_id}", OrderResource),
    Route("/v1/orders/{order_id}/cancel", OrderCancelResource),
)
