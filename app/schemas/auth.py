"""Auth and user shapes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

Email = Annotated[str, msgspec.Meta(
    min_length=3, max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$",
    description="An email address; unique without regard to case.",
)]
Password = Annotated[str, msgspec.Meta(min_length=8, max_length=128)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
Role = Literal["user", "admin"]
RefreshToken = Annotated[str, msgspec.Meta(min_length=1, max_length=512)]


class _In(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Base of request bodies: unknown fields are a 422."""


class RegisterIn(_In):
    email: Email
    password: Password
    name: Name


class LoginIn(_In):
    email: Annotated[str, msgspec.Meta(max_length=254)]
    password: Annotated[str, msgspec.Meta(max_length=128)]


class RefreshIn(_In):
    refresh_token: RefreshToken


class UpdateMeIn(_In):
    current_password: Annotated[str, msgspec.Meta(max_length=128)]
    name: Name | None = None
    password: Password | None = None


class UpdateUserIn(_In):
    role: Role | None = None
    name: Name | None = None


class UserOut(msgspec.Struct, kw_only=True):
    id: str
    email: str
    name: str
    role: Role
    created_at: datetime


class UserPage(msgspec.Struct, kw_only=True):
    items: list[UserOut]
    next_cursor: str | None


class TokenPairOut(msgspec.Struct, kw_only=True):
    access_token: str
    refresh_token: str
    token_type: Literal["Bearer"] = "Bearer"
    expires_in: int


class PageQuery(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    limit: Annotated[int, msgspec.Meta(ge=1, le=100)] = 20
    cursor: Annotated[str, msgspec.Meta(max_length=512)] | None = None
