"""Webhook subscriptions for the admin API: register, change, rotate, inspect, retry."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import gevent
from msgspec import UNSET

from app.config import WebhookSettings
from app.errors import Conflict, NotFound, ValidationFailed
from app.ids import is_uuid
from app.pagination import UUIDText, decode_cursor, page
from app.queries import webhooks as q
from app.schemas.webhooks import (
    DeliveryOut,
    DeliveryPage,
    WebhookCreated,
    WebhookDetail,
    WebhookIn,
    WebhookOut,
    WebhookPage,
    WebhookPatch,
    WebhookSecret,
)
from app.webhooks import signing, targets

#: After a rotation the previous secret signs too, for this long.
ROTATION_OVERLAP = timedelta(hours=24)
#: How long registration waits for DNS; a name that does not resolve yet is
#: accepted (every attempt checks it again).
_RESOLVE_TIMEOUT = 2.0
_RETRYABLE = ("failed", "dead")


class Webhooks:
    def __init__(self, pool, settings: WebhookSettings):
        self._pool = pool
        self._settings = settings

    def list(self, limit: int, cursor: str | None) -> WebhookPage:
        before = decode_cursor(cursor, tuple[datetime, UUIDText]) if cursor else None
        with self._pool.connection() as conn, conn.cursor() as cur:
            rows = q.subscription_page(cur, limit, before)
        items, next_cursor = page(rows, limit, lambda s: (s.created_at.isoformat(), s.id))
        return WebhookPage(items=items, next_cursor=next_cursor)

    def create(self, body: WebhookIn) -> WebhookCreated:
        self._check_url(body.url)
        secret = signing.new_secret()
        with self._pool.transaction() as conn, conn.cursor() as cur:
            created = q.insert_subscription(cur, body.url, _distinct(body.events),
                                            body.description, secret)
        return WebhookCreated(**_fields(created), secret=secret)

    def get(self, subscription_id: str) -> WebhookDetail:
        _check_id(subscription_id)
        with self._pool.connection() as conn, conn.cursor() as cur:
            found = q.subscription(cur, subscription_id)
            if found is None:
                raise NotFound("no such webhook")
            stats = q.delivery_stats(cur, subscription_id)
        return WebhookDetail(**_fields(found), stats=stats)

    def update(self, subscription_id: str, patch: WebhookPatch) -> WebhookOut:
        _check_id(subscription_id)
        changes = {f: v for f in patch.__struct_fields__
                   if (v := getattr(patch, f)) is not UNSET}
        if "url" in changes:
            self._check_url(changes["url"])
        if "events" in changes:
            changes["events"] = _distinct(changes["events"])
        with self._pool.transaction() as conn, conn.cursor() as cur:
            updated = q.update_subscription(cur, subscription_id, changes)
        if updated is None:
            raise NotFound("no such webhook")
        return updated

    def delete(self, subscription_id: str) -> None:
        _check_id(subscription_id)
        with self._pool.transaction() as conn, conn.cursor() as cur:
            if not q.delete_subscription(cur, subscription_id):
                raise NotFound("no such webhook")

    def rotate_secret(self, subscription_id: str) -> WebhookSecret:
        _check_id(subscription_id)
        secret = signing.new_secret()
        with self._pool.transaction() as conn, conn.cursor() as cur:
            expires = q.rotate_secret(cur, subscription_id, secret, ROTATION_OVERLAP)
        if expires is None:
            raise NotFound("no such webhook")
        return WebhookSecret(secret=secret, previous_expires_at=expires)

    def deliveries(self, subscription_id: str, status: str | None, limit: int,
                   cursor: str | None) -> DeliveryPage:
        _check_id(subscription_id)
        before = decode_cursor(cursor, tuple[datetime, UUIDText]) if cursor else None
        with self._pool.connection() as conn, conn.cursor() as cur:
            if q.subscription(cur, subscription_id) is None:
                raise NotFound("no such webhook")
            rows = q.delivery_page(cur, subscription_id, status, limit, before)
        items, next_cursor = page(rows, limit, lambda d: (d.created_at.isoformat(), d.id))
        return DeliveryPage(items=items, next_cursor=next_cursor)

    def retry(self, subscription_id: str, delivery_id: str) -> DeliveryOut:
        """Requeue a failed or dead delivery now, with a fresh retry period."""
        _check_id(subscription_id)
        if not is_uuid(delivery_id):
            raise NotFound("no such delivery")
        with self._pool.transaction() as conn, conn.cursor() as cur:
            found = q.delivery(cur, subscription_id, delivery_id, lock=True)
            if found is None:
                raise NotFound("no such delivery")
            if found.status not in _RETRYABLE:
                raise Conflict(f"only failed or dead deliveries can be retried "
                               f"(this one is {found.status})")
            q.requeue(cur, delivery_id)
            return q.delivery(cur, subscription_id, delivery_id)

    def _check_url(self, url: str) -> None:
        """Refuse a URL no attempt could be sent to (checked again at every attempt)."""
        try:
            target = targets.parse(url, allow_http=self._settings.allow_http)
            if not self._settings.allow_private:
                # False: a silent timeout (gevent's documented form; its stub lacks it).
                with gevent.Timeout(_RESOLVE_TIMEOUT, False):  # type: ignore[arg-type]
                    targets.resolve(target, allow_private=False)
        except targets.TargetRefused as ex:
            raise ValidationFailed(f"this URL may not receive webhooks: {ex}",
                                   details=[{"field": "$.url", "message": str(ex)}]) from None
        except OSError:
            pass  # does not resolve yet: every attempt resolves and checks again


def _check_id(subscription_id: str) -> None:
    if not is_uuid(subscription_id):
        raise NotFound("no such webhook")


def _distinct(events: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(events))


def _fields(subscription: WebhookOut) -> dict:
    return {f: getattr(subscription, f) for f in WebhookOut.__struct_fields__}
