"""Shapes of an account's export (GET /v1/users/me/export) and deletion."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from app.schemas.accounts import AccountOut, PresentedPassword
from app.schemas.common import Input
from app.schemas.orders import OrderOut


class SessionOut(msgspec.Struct, kw_only=True):
    """A login and its refresh-token rotations (a refresh family)."""

    id: str
    created_at: datetime
    revoked_at: datetime | None
    last_refreshed_at: datetime | None
    expires_at: datetime | None


class AuditEntryOut(msgspec.Struct, kw_only=True):
    happened_at: datetime
    action: str
    ip: str | None
    details: dict[str, Any]


class TwoFactorOut(msgspec.Struct, kw_only=True):
    totp: bool
    recovery_codes_left: int


class ExportOut(msgspec.Struct, kw_only=True):
    exported_at: datetime
    profile: AccountOut
    two_factor: TwoFactorOut
    orders: list[OrderOut]
    sessions: list[SessionOut]
    audit: list[AuditEntryOut]


class DeleteMeIn(Input, kw_only=True):
    current_password: PresentedPassword
