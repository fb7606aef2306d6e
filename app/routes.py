"""Every route of the API, in one table.

The factory mounts these; the OpenAPI document and the route x role test
are generated from them.
"""

from __future__ import annotations

from typing import NamedTuple

from app.resources.auth import LoginResource, LogoutResource, RefreshResource, RegisterResource
from app.resources.catalog import CategoriesResource, ProductResource, ProductsResource
from app.resources.docs import DocsAssetResource, DocsResource, OpenAPIResource
from app.resources.health import HealthResource, ReadyResource
from app.resources.lifecycle import (
    ResetRequestResource,
    ResetResource,
    VerifyRequestResource,
    VerifyResource,
)
from app.resources.mfa import MfaLoginResource, TotpConfirmResource, TotpResource
from app.resources.orders import OrderCancelResource, OrderResource, OrdersResource
from app.resources.users import ExportResource, MeResource, UserResource, UsersResource
from app.resources.webhooks import (
    WebhookDeliveriesResource,
    WebhookDeliveryRetryResource,
    WebhookResource,
    WebhookSecretResource,
    WebhooksResource,
)


class Route(NamedTuple):
    template: str
    resource: type


ROUTES: tuple[Route, ...] = (
    # Operations
    Route("/healthz", HealthResource),
    Route("/readyz", ReadyResource),
    Route("/openapi.json", OpenAPIResource),
    Route("/docs", DocsResource),
    Route("/docs/assets/{name}", DocsAssetResource),
    # Auth
    Route("/v1/auth/register", RegisterResource),
    Route("/v1/auth/login", LoginResource),
    Route("/v1/auth/refresh", RefreshResource),
    Route("/v1/auth/logout", LogoutResource),
    Route("/v1/auth/email/verify-request", VerifyRequestResource),
    Route("/v1/auth/email/verify", VerifyResource),
    Route("/v1/auth/password/reset-request", ResetRequestResource),
    Route("/v1/auth/password/reset", ResetResource),
    Route("/v1/auth/login/mfa", MfaLoginResource),
    # Users
    Route("/v1/users/me", MeResource),
    Route("/v1/users/me/export", ExportResource),
    Route("/v1/users/me/mfa/totp", TotpResource),
    Route("/v1/users/me/mfa/totp/confirm", TotpConfirmResource),
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
    # Webhooks
    Route("/v1/webhooks", WebhooksResource),
    Route("/v1/webhooks/{webhook_id}", WebhookResource),
    Route("/v1/webhooks/{webhook_id}/rotate-secret", WebhookSecretResource),
    Route("/v1/webhooks/{webhook_id}/deliveries", WebhookDeliveriesResource),
    Route("/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/retry",
          WebhookDeliveryRetryResource),
)
