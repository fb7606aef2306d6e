"""Account shapes: users, credentials and token pairs."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from app.schemas.common import Input
from app.schemas.text import Text, worded

# One address character: anything but "@", control characters (C0, DEL,
# C1) and whitespace. Spelled out rather than "\s", which means different
# sets in Python (adds U+001C-U+001F, U+0085) and in the ECMA-262 regexes
# of the published schema (adds U+FEFF): the document and the validator
# must accept exactly the same addresses.
_EMAIL_CHAR = (r"[^@\x00-\x20\x7f-\x9f\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f"
               r"\u205f\u3000\ufeff]")
Email = Annotated[str, msgspec.Meta(
    min_length=3, max_length=254,
    pattern=worded(rf"{_EMAIL_CHAR}+@{_EMAIL_CHAR}+\.{_EMAIL_CHAR}+",
                   "must be a valid email address"),
    description="An email address; unique without regard to case.",
)]
Password = Text(min_length=8, max_length=128)
Name = Text(min_length=1, max_length=100)
Role = Literal["user", "admin"]
RefreshToken = Text(min_length=1, max_length=512)
# What a login or a password check compares: bounded, not syntax-checked.
PresentedEmail = Text(max_length=254)
PresentedPassword = Text(max_length=128)


class RegisterIn(Input, kw_only=True):
    email: Email
    password: Password
    name: Name


class LoginIn(Input, kw_only=True):
    email: PresentedEmail
    password: PresentedPassword


class RefreshIn(Input, kw_only=True):
    refresh_token: RefreshToken


class UpdateMeIn(Input, kw_only=True):
    current_password: PresentedPassword
    name: Name | None = None
    password: Password | None = None


class UpdateUserIn(Input, kw_only=True):
    role: Role | None = None
    name: Name | None = None


class UserOut(msgspec.Struct, kw_only=True):
    id: str
    email: str
    name: str
    role: Role
    created_at: datetime


class AccountOut(UserOut, kw_only=True):
    """A user as its own account-lifecycle answers show it."""

    # The address was confirmed with a link mailed to it (POST /v1/auth/email/verify).
    email_verified: bool


class UserPage(msgspec.Struct, kw_only=True):
    items: list[UserOut]
    next_cursor: str | None


class TokenPairOut(msgspec.Struct, kw_only=True):
    access_token: str
    refresh_token: str
    token_type: Literal["Bearer"] = "Bearer"
    expires_in: int

